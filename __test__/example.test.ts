import { readFileSync } from 'node:fs'
import { inspect } from 'node:util'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import type { Server } from 'node:http'
import { Client } from 'pg'
import type { Vault } from '../lib'
import type { TestVault } from '../lib/testing'
import type { DelegatedAuth } from '../lib/dynamic'
import { backends, cleanup, newKey, tempDir } from './support/helpers'
import { createdEvent, delivery, revokedEvent, rsaKeyPair, webhookSecret } from './support/webhooks'

// The example service (examples/wallet-service), end to end over HTTP, on its fake path, tested
// as a user would test their own service: with sharevault/testing (a test vault, the SDK contract
// fake, the matchers). It uses the package as a user does (require('sharevault'), the built
// dist/), so the test does too: one VaultError class on both sides.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Vault: BuiltVault } = require('sharevault') as { Vault: typeof import('../lib').Vault }
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { vaulted, delegated } = require('sharevault/dynamic') as typeof import('../lib/dynamic')
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createService } = require('../examples/wallet-service/server') as { createService: (evm: unknown, vault: Vault, opts?: { unpersistedFile?: string; webhookSecret?: string; agent?: unknown }) => Server }
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { FakeEvmWalletClient, openTestVault, hydrationsOf, fakeDelegatedSdk } = require('sharevault/testing') as typeof import('../lib/testing')
// eslint-disable-next-line @typescript-eslint/no-require-imports
require('sharevault/testing/jest')

afterAll(cleanup)

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

describe('the example wallet service', () => {
  let vault: TestVault
  let server: Server
  let base: string
  let sdk: InstanceType<typeof FakeEvmWalletClient>
  beforeAll(async () => {
    vault = await openTestVault()
    sdk = new FakeEvmWalletClient()
    server = createService(vaulted(sdk, vault, { actor: 'wallet-service' }), vault)
    base = await listen(server)
  })
  afterAll(async () => {
    await new Promise((r) => server.close(r))
    await vault.close()
  })

  it('creates a wallet, shows its metadata without a share, and signs with it', async () => {
    const created = await fetch(`${base}/wallets`, { method: 'POST', body: JSON.stringify({ thresholdSignatureScheme: 'TWO_OF_THREE' }) })
    expect(created.status).toBe(201)
    const { accountAddress, walletId } = (await created.json()) as { accountAddress: string; walletId: string }
    expect(accountAddress).toMatch(/^0x[0-9a-f]{40}$/i)

    const shown = await fetch(`${base}/wallets/${accountAddress}`)
    expect(shown.status).toBe(200)
    const text = await shown.text()
    expect(JSON.parse(text)).toMatchObject({ walletId, accountAddress, thresholdSignatureScheme: 'TWO_OF_THREE' })
    expect(text).not.toContain('secretShare')
    expect(text).not.toContainShareOf(vault, sdk)

    const signed = await fetch(`${base}/wallets/${accountAddress}/sign`, { method: 'POST', body: JSON.stringify({ message: 'hello' }) })
    expect(signed.status).toBe(200)
    const { signature } = (await signed.json()) as { signature: string }
    expect(signature).toMatch(/^[0-9a-f]{64}$/)
    // The same message again gives the same signature: the stored shares are the ones in use.
    const again = (await (await fetch(`${base}/wallets/${accountAddress}/sign`, { method: 'POST', body: JSON.stringify({ message: 'hello' }) })).json()) as { signature: string }
    expect(again.signature).toBe(signature)
    const audit = await vault.auditLog({ address: accountAddress })
    expect(audit.map((r) => r.action)).toEqual(['store', 'hydrate', 'hydrate'])
    expect((await hydrationsOf(vault, { address: accountAddress })).byPurpose).toEqual({ sign: 2 })
    await expect(vault).toHaveAudited({ address: accountAddress, action: 'hydrate', purpose: 'sign', actor: 'wallet-service', times: 2 })
  })

  it('keeps a new wallet sealed (503) while the database refuses writes, and it is recovered after', async () => {
    const file = join(tempDir(), 'unpersisted.jsonl')
    const server2 = createService(vaulted(sdk, vault, { persistDeadlineMs: 50 }), vault, { unpersistedFile: file })
    const url = await listen(server2)
    const restore = vault.failWrites()
    const r = await fetch(`${url}/wallets`, { method: 'POST' })
    restore()
    expect(r.status).toBe(503)
    const kept = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { accountAddress: string; sealed: string })
    expect(kept).toHaveLength(1)
    expect(kept).not.toContainShareOf(vault, sdk)
    expect((await fetch(`${url}/wallets/${kept[0].accountAddress}`)).status).toBe(404)
    await vault.recoverSealed(kept[0].sealed)
    const signed = await fetch(`${url}/wallets/${kept[0].accountAddress}/sign`, { method: 'POST', body: '{"message":"x"}' })
    expect(signed.status).toBe(200)
    await new Promise((res) => server2.close(res))
  })

  it('answers an unknown wallet with 404, bad input with 400, too much with 413, and an unknown route with 404', async () => {
    expect((await fetch(`${base}/wallets/0x${'00'.repeat(20)}`)).status).toBe(404)
    expect((await fetch(`${base}/wallets/0x${'00'.repeat(20)}/sign`, { method: 'POST', body: '{"message":"x"}' })).status).toBe(404)
    expect((await fetch(`${base}/wallets/0xabc/sign`, { method: 'POST', body: 'not json' })).status).toBe(400)
    expect((await fetch(`${base}/wallets/0xabc/sign`, { method: 'POST', body: 'null' })).status).toBe(400)
    expect((await fetch(`${base}/wallets/0xabc/sign`, { method: 'POST', body: '{"message":1}' })).status).toBe(400)
    expect((await fetch(`${base}/wallets`, { method: 'POST', body: '{"thresholdSignatureScheme":"FOO"}' })).status).toBe(400)
    expect((await fetch(`${base}/wallets/%E0%A4%A/sign`, { method: 'POST', body: '{}' })).status).toBe(400)
    expect((await fetch(`${base}/nothing`)).status).toBe(404)
    const big = await fetch(`${base}/wallets`, { method: 'POST', body: 'x'.repeat(200_000) }).then((r) => r.status, () => 413)
    expect(big).toBe(413)
  })

  it('answers 502 with a generic message when the SDK call fails', async () => {
    const { accountAddress } = (await (await fetch(`${base}/wallets`, { method: 'POST' })).json()) as { accountAddress: string }
    sdk.failNext('signMessage', new Error('provider detail that should stay in the log'))
    const errSpy = jest.spyOn(console, 'error').mockImplementation(() => undefined)
    const r = await fetch(`${base}/wallets/${accountAddress}/sign`, { method: 'POST', body: '{"message":"x"}' })
    expect(errSpy.mock.calls).not.toContainShareOf(vault, sdk)
    errSpy.mockRestore()
    expect(r.status).toBe(502)
    expect(await r.text()).not.toContain('provider detail')
  })
})

const pg = backends().find((b) => b.name === 'postgres')
;(pg ? describe : describe.skip)('the example wallet service when the database goes away (PostgreSQL)', () => {
  it('keeps a new wallet sealed (503) and it is recovered once the database is back', async () => {
    const database = await pg!.database()
    const vault = await BuiltVault.open({ database, environment: 'example', kms: { provider: 'local', key: newKey() } })
    const file = join(tempDir(), 'unpersisted.jsonl')
    const server = createService(vaulted(new FakeEvmWalletClient(), vault, { persistDeadlineMs: 300 }), vault, { unpersistedFile: file })
    const url = await listen(server)
    const name = new URL(database).pathname.slice(1)
    const admin = new Client({ connectionString: process.env.SHAREVAULT_PG_ADMIN_URL })
    await admin.connect()
    await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [name])
    await admin.query(`ALTER DATABASE ${name} RENAME TO ${name}_away`)
    const r = await fetch(`${url}/wallets`, { method: 'POST' })
    expect(r.status).toBe(503)
    expect(await r.text()).not.toContain('secretShare')
    await admin.query(`ALTER DATABASE ${name}_away RENAME TO ${name}`)
    await admin.end()
    const kept = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { accountAddress: string; sealed: string })
    expect(kept).toHaveLength(1)
    await vault.recoverSealed(kept[0].sealed)
    expect((await fetch(`${url}/wallets/${kept[0].accountAddress}`)).status).toBe(200)
    const signed = await fetch(`${url}/wallets/${kept[0].accountAddress}/sign`, { method: 'POST', body: '{"message":"x"}' })
    expect(signed.status).toBe(200)
    await new Promise((res) => server.close(res))
    await vault.close()
  })
})

describe('the example wallet service, delegated access', () => {
  const keys = rsaKeyPair()
  const secret = webhookSecret()
  let vault: TestVault
  let server: Server
  let base: string
  let fake: ReturnType<typeof fakeDelegatedSdk>
  beforeAll(async () => {
    vault = await openTestVault()
    await vault.importDelegationKey(keys.privatePem)
    fake = fakeDelegatedSdk()
    const agent = delegated(fake.client, vault, fake)
    server = createService(vaulted(new FakeEvmWalletClient(), vault), vault, { webhookSecret: secret, agent })
    base = await listen(server)
  })
  afterAll(async () => {
    await new Promise((r) => server.close(r))
    await vault.close()
  })

  const post = (body: unknown, s = secret) => {
    const { rawBody, headers } = delivery(body, s)
    return fetch(`${base}/webhooks/dynamic`, { method: 'POST', headers, body: rawBody })
  }

  it('stores a delegation from a webhook, signs with it, and shreds it on revocation', async () => {
    const ev = createdEvent(keys.publicKey)
    fake.delegate(ev.walletId, ev.apiKey)
    const r = await post(ev.body)
    expect(r.status).toBe(200)
    expect(await r.json()).toEqual({ outcome: 'stored', eventId: ev.eventId, replay: false })
    const again = await post(ev.body)
    expect(await again.json()).toMatchObject({ outcome: 'stored', replay: true })

    const signed = await fetch(`${base}/delegations/${ev.walletId}/sign`, { method: 'POST', body: JSON.stringify({ message: 'pay 5' }) })
    expect(signed.status).toBe(200)
    const { signature } = (await signed.json()) as { signature: string }
    expect(signature).toMatch(/^[0-9a-f]{64}$/)
    const audit = await vault.auditLog({ address: `sharevault:delegation:${ev.walletId}` })
    expect(audit.map((a) => [a.action, a.purpose ?? null])).toEqual([['delegation_created', `webhook:${ev.eventId}`], ['hydrate_delegation', 'sign']])

    expect((await post(revokedEvent(ev.walletId))).status).toBe(200)
    const after = await fetch(`${base}/delegations/${ev.walletId}/sign`, { method: 'POST', body: JSON.stringify({ message: 'pay 5' }) })
    expect(after.status).toBe(404)
  })

  it('answers 401 to a bad signature and 400 to a bad event, and stores nothing', async () => {
    const ev = createdEvent(keys.publicKey)
    const forged = await post(ev.body, 'not-the-secret')
    expect(forged.status).toBe(401)
    expect(await forged.json()).toMatchObject({ outcome: 'refused', error: 'ERR_WEBHOOK_SIGNATURE' })
    const bad = createdEvent(keys.publicKey)
    ;(bad.body.data as Record<string, { alg: string }>).encryptedWalletApiKey.alg = 'AES-CBC'
    const refused = await post(bad.body)
    expect(refused.status).toBe(400)
    expect(await refused.json()).toMatchObject({ error: 'ERR_INVALID_INPUT' })
    expect((await vault.listDelegations()).map((d) => d.walletId)).not.toContain(ev.walletId)
  })
})

describe('the delegated() wrapper', () => {
  it('hydrates the delegation for the SDK call only, returns its result, and revokes at Dynamic before shredding', async () => {
    const keys = rsaKeyPair()
    const secret = webhookSecret()
    const vault = await openTestVault()
    await vault.importDelegationKey(keys.privatePem)
    const ev = createdEvent(keys.publicKey, { chain: 'SVM' })
    await vault.receiveDelegationWebhook({ ...delivery(ev.body, secret), secret })
    const fake = fakeDelegatedSdk()
    fake.delegate(ev.walletId, ev.apiKey)
    const seen: unknown[] = []
    // What an SDK that logs its arguments would print.
    const shown: string[] = []
    const agent = delegated(fake.client, vault, {
      ...fake,
      delegatedSignTypedData: async (c, a: { typedData: unknown } & DelegatedAuth) => {
        seen.push({ chainName: a.chainName, typedData: a.typedData, apiKey: a.walletApiKey === ev.apiKey })
        shown.push(inspect(a, { depth: 5 }))
        return fake.delegatedSignTypedData(c, a)
      },
    })
    const viaWrapper = await agent.signMessage({ walletId: ev.walletId, message: 'hi' })
    const direct = await fake.delegatedSignMessage(fake.client, { walletId: ev.walletId, walletApiKey: ev.apiKey, keyShare: ev.share as { secretShare: string }, chainName: 'SVM', message: 'hi' })
    expect(viaWrapper).toBe(direct)
    await agent.signTypedData({ walletId: ev.walletId, typedData: { a: 1 }, purpose: 'permit' })
    expect(seen).toEqual([{ chainName: 'SVM', typedData: { a: 1 }, apiKey: true }])
    expect(shown).toHaveLength(1)
    expect(shown[0]).not.toContain(ev.apiKey)
    expect(shown[0]).not.toContain((ev.share as { secretShare: string }).secretShare)
    expect(shown[0]).toContain('[REDACTED]')
    expect((await hydrationsOf(vault, { address: `sharevault:delegation:${ev.walletId}` })).total).toBe(0)
    const audit = (await vault.auditLog({ address: `sharevault:delegation:${ev.walletId}` })).filter((a) => a.action === 'hydrate_delegation')
    expect(audit.map((a) => a.purpose)).toEqual(['sign', 'permit'])
    await agent.revoke({ walletId: ev.walletId })
    expect(fake.isRevoked(ev.walletId)).toBe(true)
    expect((await vault.listDelegations()).length).toBe(0)
    await vault.close()
  })
})
