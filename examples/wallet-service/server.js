// An example wallet service: a small HTTP API over a vaulted Dynamic EVM client.
//   POST /wallets                  {"thresholdSignatureScheme"?}      -> 201 {"accountAddress", "walletId"}
//   GET  /wallets/:address                                            -> 200 the wallet's metadata (never a share)
//   POST /wallets/:address/sign    {"message"}                        -> 200 {"signature"}
//   POST /webhooks/dynamic         Dynamic's delegation webhook (raw)  -> 200 / 400 / 401 (from the vault's result)
//   POST /delegations/:walletId/sign {"message"}                      -> 200 {"signature"} (delegated signing)
// Delegated access needs DYNAMIC_WEBHOOK_SECRET and the RSA key registered with Dynamic, in
// SHAREVAULT_DELEGATION_KEY_FILE (PEM, PKCS#8) or imported once with vault.importDelegationKey().
// With DYNAMIC_ENVIRONMENT_ID and DYNAMIC_AUTH_TOKEN set it uses Dynamic's real client
// (npm install @dynamic-labs-wallet/node-evm); without them, the contract fake from sharevault/testing.
// The vault: SHAREVAULT_DATABASE with its development key SHAREVAULT_LOCAL_KEY (base64, 32 bytes),
// or, without them, an in-memory database and a generated key (gone when the service stops). In
// production: PostgreSQL and kms: { provider: 'aws', keyId } (see the README).
//   npm run example          (then: curl -X POST localhost:3000/wallets)
'use strict'
const http = require('node:http')
const { appendFileSync, closeSync, fsyncSync, openSync } = require('node:fs')
const { randomBytes } = require('node:crypto')
const { Vault, VaultError } = require('sharevault')
const { vaulted, delegated, UnpersistedSharesError } = require('sharevault/dynamic')

const STATUS = { ERR_NOT_FOUND: 404, ERR_INVALID_INPUT: 400, ERR_CONFLICT: 409, ERR_FORBIDDEN: 403, ERR_DB_UNAVAILABLE: 503, ERR_KMS_UNAVAILABLE: 503 }
const SCHEMES = ['TWO_OF_TWO', 'TWO_OF_THREE', 'THREE_OF_FIVE']
const MAX_BODY = 64 * 1024
/** A webhook carries an encrypted share: larger than an API call's body. */
const MAX_WEBHOOK_BODY = 1024 * 1024

function badRequest(message) {
  return Object.assign(new Error(message), { status: 400 })
}

/**
 * New shares the vault could not write are the only copy there is (the SDK already replaced the
 * old ones): keep the sealed value (safe to store: sealed under the vault's KMS, never plaintext)
 * durably, for `vault.recoverSealed()` once the database is back. A real service would use a
 * queue or a second store; a local append-only file, fsynced, is this example's.
 */
function keepSealed(file, err) {
  const fd = openSync(file, 'a', 0o600)
  try {
    appendFileSync(fd, JSON.stringify({ at: new Date().toISOString(), accountAddress: err.accountAddress, sealed: err.sealed }) + '\n')
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

/** The request body, byte for byte (a webhook's signature covers exactly these bytes). */
function readRaw(req, limit) {
  return new Promise((resolve, reject) => {
    let size = 0
    const chunks = []
    req.on('data', (c) => {
      size += c.length
      if (size > limit) {
        reject(Object.assign(new Error('request body too large'), { status: 413 }))
        req.destroy()
      } else chunks.push(c)
    })
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

async function readJson(req) {
  const raw = await readRaw(req, MAX_BODY)
  if (raw.length === 0) return {}
  let body
  try {
    body = JSON.parse(raw.toString('utf8'))
  } catch {
    throw badRequest('the body is not JSON')
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw badRequest('the body must be a JSON object')
  return body
}

function pathParts(url) {
  try {
    return new URL(url, 'http://localhost').pathname.split('/').filter(Boolean).map(decodeURIComponent)
  } catch {
    throw badRequest('malformed path')
  }
}

/**
 * The service over a vaulted client and its vault. `unpersistedFile`: where the sealed state of
 * new shares that could not be written is kept (see keepSealed). `webhookSecret` and `agent`
 * (a `delegated()` client): delegated access; without them those routes answer 404.
 */
function createService(evm, vault, { unpersistedFile = './wallet-service-unpersisted.jsonl', webhookSecret, agent } = {}) {
  return http.createServer(async (req, res) => {
    try {
      const parts = pathParts(req.url)
      if (req.method === 'POST' && parts.length === 1 && parts[0] === 'wallets') {
        const body = await readJson(req)
        const scheme = body.thresholdSignatureScheme === undefined ? 'TWO_OF_TWO' : body.thresholdSignatureScheme
        if (!SCHEMES.includes(scheme)) throw badRequest(`thresholdSignatureScheme must be one of ${SCHEMES.join(', ')}`)
        const { walletMetadata } = await evm.createWalletAccount({ thresholdSignatureScheme: scheme })
        return send(res, 201, { accountAddress: walletMetadata.accountAddress, walletId: walletMetadata.walletId })
      }
      if (req.method === 'GET' && parts.length === 2 && parts[0] === 'wallets') {
        return send(res, 200, await vault.getMetadata(parts[1]))
      }
      if (req.method === 'POST' && parts.length === 3 && parts[0] === 'wallets' && parts[2] === 'sign') {
        const body = await readJson(req)
        if (typeof body.message !== 'string') return send(res, 400, { error: 'message must be a string' })
        const signature = await evm.signMessage({ accountAddress: parts[1], message: body.message })
        return send(res, 200, { signature })
      }
      if (req.method === 'POST' && parts.length === 2 && parts[0] === 'webhooks' && parts[1] === 'dynamic' && webhookSecret) {
        // Raw bytes, never parsed first: the vault checks the signature over exactly these.
        const rawBody = await readRaw(req, MAX_WEBHOOK_BODY)
        const r = await vault.receiveDelegationWebhook({ rawBody, headers: req.headers, secret: webhookSecret })
        if (r.status >= 500) console.error(`wallet service: webhook ${r.eventId || '?'} failed: ${r.code} ${r.message}`)
        return send(res, r.status, { outcome: r.outcome, eventId: r.eventId, replay: r.replay, ...(r.code ? { error: r.code } : {}) })
      }
      if (req.method === 'POST' && parts.length === 3 && parts[0] === 'delegations' && parts[2] === 'sign' && agent) {
        const body = await readJson(req)
        if (typeof body.message !== 'string') return send(res, 400, { error: 'message must be a string' })
        const signature = await agent.signMessage({ walletId: parts[1], message: body.message })
        return send(res, 200, { signature })
      }
      return send(res, 404, { error: 'no such route' })
    } catch (e) {
      if (e instanceof UnpersistedSharesError) {
        if (e.sealed) keepSealed(unpersistedFile, e)
        return send(res, 503, { error: e.code, message: e.sealed ? 'the wallet could not be stored now; it is kept sealed for recovery' : 'the wallet could not be stored' })
      }
      if (e instanceof VaultError) return send(res, STATUS[e.code] || 500, { error: e.code, message: e.message })
      if (e.status) return send(res, e.status, { error: e.message })
      // Anything else (the SDK's own errors): logged here, a generic answer to the client.
      console.error('wallet service: the SDK call failed:', e instanceof Error ? e.message : e)
      return send(res, 502, { error: 'the wallet provider call failed' })
    }
  })
}

async function main() {
  // A stored wallet opens only with the key that sealed it: a database needs its key kept too.
  if (process.env.SHAREVAULT_DATABASE && !process.env.SHAREVAULT_LOCAL_KEY) {
    throw new Error('SHAREVAULT_DATABASE needs SHAREVAULT_LOCAL_KEY (base64, 32 bytes), or wallets stored today will not open tomorrow')
  }
  const keyFile = process.env.SHAREVAULT_DELEGATION_KEY_FILE
  const vault = await Vault.open({
    database: process.env.SHAREVAULT_DATABASE || ':memory:',
    environment: process.env.DYNAMIC_ENVIRONMENT_ID || 'example',
    kms: { provider: 'local', key: process.env.SHAREVAULT_LOCAL_KEY || randomBytes(32) },
    actor: 'wallet-service',
    ...(keyFile ? { delegation: { privateKeyFile: keyFile } } : {}),
    // Delegated signing hydrates delegations; this service signs with them.
    allow: ['store', 'hydrate:sign', 'backup', 'replace', 'audit:read', 'delegation:write', 'hydrate:delegated'],
  })
  let client
  let agent
  if (process.env.DYNAMIC_ENVIRONMENT_ID && process.env.DYNAMIC_AUTH_TOKEN) {
    const { DynamicEvmWalletClient } = require('@dynamic-labs-wallet/node-evm')
    client = new DynamicEvmWalletClient({ environmentId: process.env.DYNAMIC_ENVIRONMENT_ID })
    await client.authenticateApiToken(process.env.DYNAMIC_AUTH_TOKEN)
    const sdk = require('@dynamic-labs-wallet/node')
    const delegatedClient = sdk.createDelegatedWalletClient({ environmentId: process.env.DYNAMIC_ENVIRONMENT_ID, apiKey: process.env.DYNAMIC_AUTH_TOKEN })
    agent = delegated(delegatedClient, vault)
  } else {
    const { FakeEvmWalletClient, fakeDelegatedSdk } = require('sharevault/testing')
    client = new FakeEvmWalletClient()
    const fake = fakeDelegatedSdk()
    agent = delegated(fake.client, vault, fake)
    console.log('no DYNAMIC_ENVIRONMENT_ID / DYNAMIC_AUTH_TOKEN: using the contract fakes of Dynamic from sharevault/testing')
  }
  const webhookSecret = process.env.DYNAMIC_WEBHOOK_SECRET
  const server = createService(vaulted(client, vault, { actor: 'wallet-service' }), vault, { webhookSecret, agent })
  const port = Number(process.env.PORT || 3000)
  // Loopback only: this example has no authentication of its own, and POST /delegations/:walletId/sign
  // signs with users' delegated wallets. Put it behind your API's authentication before exposing it
  // (HOST=0.0.0.0 only behind such a gateway); only POST /webhooks/dynamic is meant for Dynamic.
  const host = process.env.HOST || '127.0.0.1'
  server.listen(port, host, () => console.log(`wallet service on http://${host}:${port}`))
  const stop = () =>
    server.close(() =>
      vault.close().then(
        () => process.exit(0),
        (e) => {
          console.error('closing the vault failed:', e.message)
          process.exit(1)
        },
      ),
    )
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}

module.exports = { createService }
if (require.main === module) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e)
    process.exitCode = 1
  })
}
