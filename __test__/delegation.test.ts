import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { createPrivateKey } from 'node:crypto'
import { ALL_PERMISSIONS, DEFAULT_PERMISSIONS, Vault } from '../lib'
import type { DelegationWebhookResult } from '../lib'
import { backends, cleanup, newKey, openOn, tempDir, vaultError } from './support/helpers'
import { sqlInChild, tamper } from './support/sql'
import { createdEvent, delivery, encryptField, fakeDelegatedShare, revokedEvent, rsaKeyPair, sign, webhookSecret } from './support/webhooks'

afterEach(cleanup)

const keys = rsaKeyPair(2048)
const secret = webhookSecret()

async function withKey(vault: Vault): Promise<Vault> {
  await vault.importDelegationKey(keys.privatePem)
  return vault
}

function deliver(vault: Vault, body: unknown, s = secret): Promise<DelegationWebhookResult> {
  return vault.receiveDelegationWebhook({ ...delivery(body, s), secret: s })
}

/** The DER of the test's private key, and slices of it, to look for in files. */
function derSlices(pem: string): Buffer[] {
  const der = createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' })
  const mid = Math.floor(der.length / 2)
  return [der.subarray(0, 64), der.subarray(mid, mid + 64), der.subarray(der.length - 64)]
}

function filesHolding(path: string, needles: Buffer[]): string[] {
  return [path, `${path}-wal`, `${path}-shm`].filter((f) => existsSync(f) && needles.some((n) => readFileSync(f).includes(n)))
}

for (const backend of backends()) {
  describe(`delegated access on ${backend.name}`, () => {
    it('stores a created event whose hydrated share and API key equal what Dynamic encrypted', async () => {
      const vault = await withKey(await openOn(backend))
      const ev = createdEvent(keys.publicKey, { shareSetId: 'set-1' })
      const r = await deliver(vault, ev.body)
      expect(r).toEqual({ status: 200, outcome: 'stored', eventId: ev.eventId, eventName: 'wallet.delegation.created', walletId: ev.walletId, replay: false })
      const got = await vault.withDelegation(ev.walletId, (d) => d, { purpose: 'sign' })
      expect(got.keyShare).toEqual(ev.share)
      expect(got.walletApiKey).toBe(ev.apiKey)
      expect(got.walletId).toBe(ev.walletId)
      expect(got.chain).toBe('EVM')
      const info = await vault.getDelegation(ev.walletId)
      expect(info).toMatchObject({ walletId: ev.walletId, chain: 'EVM', shareSetId: 'set-1', eventId: ev.eventId, generation: 1 })
      expect(info.delegatedAt).toBeInstanceOf(Date)
      expect((await vault.listDelegations()).map((d) => d.walletId)).toEqual([ev.walletId])
      // A delegation is no wallet: wallets are listed and counted without it.
      expect(await vault.listWallets()).toEqual([])
      expect((await vault.summary()).wallets).toBe(0)
      const audit = (await vault.auditLog({})).map((a) => [a.action, a.outcome])
      expect(audit).toEqual(expect.arrayContaining([['delegation_created', 'ok'], ['hydrate_delegation', 'ok']]))
      await vault.close()
    })

    it('reads both field spellings and 12- or 16-byte IVs', async () => {
      const vault = await withKey(await openOn(backend))
      for (const o of [{ ivBytes: 12 }, { keyShareSpelling: true }, { ivBytes: 12, keyShareSpelling: true }]) {
        const ev = createdEvent(keys.publicKey, o)
        expect((await deliver(vault, ev.body)).outcome).toBe('stored')
        expect(await vault.withDelegation(ev.walletId, (d) => d.keyShare)).toEqual(ev.share)
      }
      await vault.close()
    })

    it('refuses a wrong, missing or truncated signature and a body changed by one byte, storing nothing and auditing the refusal', async () => {
      const vault = await withKey(await openOn(backend))
      const ev = createdEvent(keys.publicKey)
      const { rawBody, headers } = delivery(ev.body, secret)
      const sig = headers['x-dynamic-signature-256']
      const changed = Buffer.from(rawBody)
      changed[changed.indexOf('"eventName"')] = 0x20
      const attempts = [
        { rawBody, headers: { 'x-dynamic-signature-256': sign(rawBody, 'not-the-secret') } },
        { rawBody, headers: {} },
        { rawBody, headers: { 'x-dynamic-signature-256': sig.slice(0, 40) } },
        { rawBody: changed, headers },
      ]
      for (const a of attempts) {
        const r = await vault.receiveDelegationWebhook({ ...a, secret })
        expect(r).toMatchObject({ status: 401, outcome: 'refused', code: 'ERR_WEBHOOK_SIGNATURE', replay: false })
      }
      // `sha256=<hex>` (Dynamic's validation example) and a Fetch Headers object are accepted.
      const ok = await vault.receiveDelegationWebhook({ rawBody, headers: new Headers({ 'X-Dynamic-Signature-256': `sha256=${sig}` }), secret })
      expect(ok.outcome).toBe('stored')
      const refusals = (await vault.auditLog({})).filter((a) => a.action === 'webhook')
      expect(refusals.map((a) => a.outcome)).toEqual(Array(4).fill('ERR_WEBHOOK_SIGNATURE'))
      await vault.close()
    })

    it('refuses an unknown alg, a tampered ek, iv, ct or tag and a share that is not a share, with a path, storing nothing', async () => {
      const vault = await withKey(await openOn(backend))
      const flip = (b64: string): string => {
        const b = Buffer.from(b64, 'base64url')
        b[b.length - 1] ^= 1
        return b.toString('base64url')
      }
      const cases: [string, (data: Record<string, any>) => void, string][] = [
        ['alg', (d) => (d.encryptedDelegatedShare.alg = 'RSA-OAEP'), 'data.encryptedDelegatedShare.alg'],
        ['ek', (d) => (d.encryptedDelegatedShare.ek = flip(d.encryptedDelegatedShare.ek)), 'data.encryptedDelegatedShare.ek'],
        ['iv', (d) => (d.encryptedDelegatedShare.iv = flip(d.encryptedDelegatedShare.iv)), 'data.encryptedDelegatedShare'],
        ['ct', (d) => (d.encryptedDelegatedShare.ct = flip(d.encryptedDelegatedShare.ct)), 'data.encryptedDelegatedShare'],
        ['tag', (d) => (d.encryptedDelegatedShare.tag = flip(d.encryptedDelegatedShare.tag)), 'data.encryptedDelegatedShare'],
        ['api key tag', (d) => (d.encryptedWalletApiKey.tag = flip(d.encryptedWalletApiKey.tag)), 'data.encryptedWalletApiKey'],
        ['share', (d) => (d.encryptedDelegatedShare = encryptField(keys.publicKey, JSON.stringify({ pubkey: 1 }))), 'data.encryptedDelegatedShare.secretShare'],
        ['share JSON', (d) => (d.encryptedDelegatedShare = encryptField(keys.publicKey, 'not json')), 'data.encryptedDelegatedShare'],
        ['missing share', (d) => delete d.encryptedDelegatedShare, 'data.encryptedDelegatedShare'],
      ]
      for (const [what, change, path] of cases) {
        const ev = createdEvent(keys.publicKey)
        change(ev.body.data as Record<string, any>)
        const r = await deliver(vault, ev.body)
        // A field encrypted to another key is, for a correctly signed event, our key being wrong or
        // just replaced: 503, so Dynamic retries once it is fixed. Everything else: 400.
        const [status, outcome] = path.endsWith('.ek') ? [503, 'failed'] : [400, 'refused']
        expect({ what, ...r }).toMatchObject({ what, status, outcome, code: 'ERR_INVALID_INPUT', path })
        expect(r.message ?? '').not.toContain(ev.apiKey)
      }
      expect(await vault.listDelegations()).toEqual([])
      await vault.close()
    })

    it('stores exactly one record for the same eventId twice and for 50 concurrent deliveries of one event', async () => {
      const vault = await withKey(await openOn(backend))
      const ev = createdEvent(keys.publicKey)
      const first = await deliver(vault, ev.body)
      const again = await deliver(vault, ev.body)
      expect(again).toEqual({ ...first, replay: true })
      const burst = createdEvent(keys.publicKey)
      const results = await Promise.all(Array.from({ length: 50 }, () => deliver(vault, burst.body)))
      expect(results.every((r) => r.status === 200 && r.outcome === 'stored')).toBe(true)
      expect(results.filter((r) => !r.replay)).toHaveLength(1)
      expect((await vault.getDelegation(burst.walletId)).generation).toBe(1)
      const created = (await vault.auditLog({})).filter((a) => a.action === 'delegation_created')
      expect(created).toHaveLength(2)
      await vault.close()
    })

    it('replaces a delegation on a re-delegation, keeps it on an older event, and shreds it on revocation', async () => {
      const vault = await withKey(await openOn(backend))
      const t0 = Date.now()
      const ev = createdEvent(keys.publicKey, { timestamp: new Date(t0 - 60_000).toISOString() })
      await deliver(vault, ev.body)
      const again = createdEvent(keys.publicKey, { walletId: ev.walletId, userId: (ev.body.data as { userId: string }).userId })
      expect((await deliver(vault, again.body)).outcome).toBe('replaced')
      expect(await vault.withDelegation(ev.walletId, (d) => d.walletApiKey)).toBe(again.apiKey)
      expect((await vault.getDelegation(ev.walletId)).generation).toBe(2)
      // A delayed retry of an older event does not put the older share back.
      const old = createdEvent(keys.publicKey, { walletId: ev.walletId, timestamp: new Date(t0 - 120_000).toISOString() })
      expect((await deliver(vault, old.body)).outcome).toBe('stale')
      expect(await vault.withDelegation(ev.walletId, (d) => d.walletApiKey)).toBe(again.apiKey)
      const revoked = await deliver(vault, revokedEvent(ev.walletId))
      expect(revoked).toMatchObject({ status: 200, outcome: 'revoked', walletId: ev.walletId })
      expect((await vaultError(vault.getDelegation(ev.walletId))).code).toBe('ERR_NOT_FOUND')
      expect((await vaultError(vault.withDelegation(ev.walletId, () => 1))).code).toBe('ERR_NOT_FOUND')
      expect((await deliver(vault, revokedEvent(ev.walletId))).outcome).toBe('not_found')
      expect((await vault.auditLog({})).filter((a) => a.action === 'delegation_revoked')).toHaveLength(2)
      // A created event older than the revocation (a delayed retry) never brings it back.
      const retry = createdEvent(keys.publicKey, { walletId: ev.walletId, timestamp: new Date(t0 - 30_000).toISOString() })
      expect((await deliver(vault, retry.body)).outcome).toBe('stale')
      expect((await vaultError(vault.getDelegation(ev.walletId))).code).toBe('ERR_NOT_FOUND')
      // A delegation after the revocation is a new one.
      const later = createdEvent(keys.publicKey, { walletId: ev.walletId })
      expect((await deliver(vault, later.body)).outcome).toBe('stored')
      expect(await vault.withDelegation(ev.walletId, (d) => d.walletApiKey)).toBe(later.apiKey)
      await vault.close()
    })

    it('refuses a created event older than the allowed age or without a timestamp, never a revocation, and acknowledges a ping', async () => {
      const vault = await withKey(await openOn(backend))
      const ev = createdEvent(keys.publicKey, { timestamp: new Date(Date.now() - 2 * 86_400_000).toISOString() })
      expect(await deliver(vault, ev.body)).toMatchObject({ status: 400, code: 'ERR_WEBHOOK_EXPIRED' })
      const undated = createdEvent(keys.publicKey)
      delete undated.body.timestamp
      expect(await deliver(vault, undated.body)).toMatchObject({ status: 400, code: 'ERR_INVALID_INPUT', path: 'timestamp' })
      // Ahead of this host's clock: a clock to fix, so Dynamic is asked to retry.
      const ahead = createdEvent(keys.publicKey, { timestamp: new Date(Date.now() + 3_600_000).toISOString() })
      expect(await deliver(vault, ahead.body)).toMatchObject({ status: 503, code: 'ERR_WEBHOOK_EXPIRED' })
      const live = createdEvent(keys.publicKey)
      await deliver(vault, live.body)
      const oldRevoke = { ...revokedEvent(live.walletId), timestamp: new Date(Date.now() - 3 * 86_400_000 + 1).toISOString() }
      // Older than the delegation itself: stale (a revoke of an earlier delegation); a current one revokes.
      expect((await deliver(vault, oldRevoke)).outcome).toBe('stale')
      expect((await deliver(vault, revokedEvent(live.walletId))).outcome).toBe('revoked')
      const allowed = await vault.receiveDelegationWebhook({ ...delivery(ev.body, secret), secret, maxAgeMs: 0 })
      expect(allowed.outcome).toBe('stored')
      // Another Dynamic environment's event, where the vault says which one it serves.
      const other = createdEvent(keys.publicKey)
      const mine = { ...delivery(other.body, secret), secret, environmentId: 'not-this-one' }
      expect(await vault.receiveDelegationWebhook(mine)).toMatchObject({ status: 400, path: 'environmentId' })
      const theirs = { ...delivery(other.body, secret), secret, environmentId: other.body.environmentId as string }
      expect((await vault.receiveDelegationWebhook(theirs)).outcome).toBe('stored')
      const ping = { eventId: 'p-1', eventName: 'ping', timestamp: new Date().toISOString(), data: {} }
      expect(await deliver(vault, ping)).toMatchObject({ status: 200, outcome: 'pong' })
      await vault.close()
    })

    it('answers 5xx, so Dynamic retries, while no delegation key is there, and takes the key from a file at open', async () => {
      const vault = await openOn(backend)
      const ev = createdEvent(keys.publicKey)
      expect(await deliver(vault, ev.body)).toMatchObject({ status: 500, outcome: 'failed', code: 'ERR_NOT_FOUND' })
      expect(await vault.delegationKey()).toBeNull()
      await vault.close()
      const file = join(tempDir(), 'delegation.pem')
      writeFileSync(file, keys.privatePem, { mode: 0o600 })
      const fromFile = await openOn(backend, { delegation: { privateKeyFile: file } })
      expect((await fromFile.delegationKey())?.source).toBe('options')
      expect((await deliver(fromFile, ev.body)).outcome).toBe('stored')
      await fromFile.close()
      writeFileSync(file, 'not a key')
      const e = await vaultError(openOn(backend, { delegation: { privateKeyFile: file } }))
      expect([e.code, e.path]).toEqual(['ERR_INVALID_INPUT', 'delegation.privateKeyFile'])
    })

    it('stores one record for one event delivered 50 times at once to two vault handles on one database', async () => {
      const database = await backend.database()
      const key = newKey()
      const open = () => Vault.open({ database, environment: 'test', kms: { provider: 'local', key }, allow: ALL_PERMISSIONS })
      const first = await withKey(await open())
      const second = await open()
      const ev = createdEvent(keys.publicKey)
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => deliver(i % 2 ? first : second, ev.body)))
      expect(results.map((r) => r.status)).toEqual(Array(50).fill(200))
      expect(results.filter((r) => !r.replay)).toHaveLength(1)
      expect((await first.getDelegation(ev.walletId)).generation).toBe(1)
      expect((await second.auditLog({ address: `sharevault:delegation:${ev.walletId}` })).filter((a) => a.action === 'delegation_created')).toHaveLength(1)
      await first.close()
      await second.close()
    })

    it('gates withDelegation on hydrate:delegated, which the default handle does not have', async () => {
      const database = await backend.database()
      const key = newKey()
      const admin = await withKey(await Vault.open({ database, environment: 'test', kms: { provider: 'local', key }, allow: ALL_PERMISSIONS }))
      const ev = createdEvent(keys.publicKey)
      await deliver(admin, ev.body)
      await admin.close()
      expect(DEFAULT_PERMISSIONS).toContain('delegation:write')
      expect(DEFAULT_PERMISSIONS).not.toContain('hydrate:delegated')
      const plain = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key } })
      expect((await vaultError(plain.withDelegation(ev.walletId, () => 1))).code).toBe('ERR_FORBIDDEN')
      expect((await vaultError(plain.importDelegationKey(keys.privatePem))).code).toBe('ERR_FORBIDDEN')
      // A local revoke is a shred: it needs `delete`, as deleteWallet does.
      expect((await vaultError(plain.revokeDelegation(ev.walletId))).code).toBe('ERR_FORBIDDEN')
      // Receiving and revoking are ordinary: a webhook route needs no more than the default.
      expect((await deliver(plain, revokedEvent(ev.walletId))).outcome).toBe('revoked')
      await plain.close()
    })
  })
}

describe('a delegation someone with write access to the database changed', () => {
  it('is refused as ERR_TAMPERED: a record moved to another wallet, edited facts, a deleted row; never wrong secrets', async () => {
    const key = newKey()
    const path = join(tempDir(), 'vault.db')
    const database = `sqlite://${path}`
    const open = () => Vault.open({ database, environment: 'test', kms: { provider: 'local', key }, allow: ALL_PERMISSIONS })
    const vault = await withKey(await open())
    const [a, b, c] = [createdEvent(keys.publicKey), createdEvent(keys.publicKey), createdEvent(keys.publicKey)]
    for (const ev of [a, b, c]) await deliver(vault, ev.body)
    await vault.close()
    const at = (w: string) => `sharevault:delegation:${w}`
    // a's sealed record copied over b's.
    sqlInChild(path, 'const r = db.prepare("SELECT wrapped_dek, nonce, ciphertext, sealed_digest FROM wallets WHERE address_key = ?").get(args[0]); db.prepare("UPDATE wallets SET wrapped_dek = ?, nonce = ?, ciphertext = ?, sealed_digest = ? WHERE address_key = ?").run(r.wrapped_dek, r.nonce, r.ciphertext, r.sealed_digest, args[1])', at(a.walletId), at(b.walletId))
    // c's user changed in its facts.
    sqlInChild(path, 'const r = db.prepare("SELECT metadata FROM wallets WHERE address_key = ?").get(args[0]); const m = JSON.parse(r.metadata); m.userId = "attacker"; db.prepare("UPDATE wallets SET metadata = ? WHERE address_key = ?").run(JSON.stringify(m), args[0])', at(c.walletId))
    const after = await open()
    expect((await vaultError(after.withDelegation(b.walletId, () => 1))).code).toBe('ERR_TAMPERED')
    expect((await vaultError(after.getDelegation(c.walletId))).code).toBe('ERR_TAMPERED')
    expect((await vaultError(after.listDelegations())).code).toBe('ERR_TAMPERED')
    expect(await after.withDelegation(a.walletId, (d) => d.walletApiKey)).toBe(a.apiKey)
    await after.close()
    // a's row deleted outside sharevault: the history says it is there.
    tamper(path, 'DELETE FROM wallets WHERE address_key = ?', at(a.walletId))
    const cut = await open()
    expect((await vaultError(cut.withDelegation(a.walletId, () => 1))).code).toBe('ERR_TAMPERED')
    // An event record written without the key (to make a revocation look handled): refused.
    const forged = revokedEvent(c.walletId)
    tamper(path, "INSERT INTO webhook_events (environment, event_id, outcome, received_at, mac) VALUES ('test', ?, ?, 0, x'00')", forged.eventId, JSON.stringify({ status: 200, outcome: 'revoked', replay: false }))
    expect(await deliver(cut, forged)).toMatchObject({ status: 500, code: 'ERR_TAMPERED' })
    // The webhook key's record swapped for another: refused, never used.
    tamper(path, "UPDATE wallets SET ciphertext = (SELECT ciphertext FROM wallets WHERE address_key = ?) WHERE address_key = 'sharevault:delegation-key'", at(c.walletId))
    const next = createdEvent(keys.publicKey)
    expect(await deliver(cut, next.body)).toMatchObject({ status: 500, code: 'ERR_TAMPERED' })
    await cut.close()
  })
})

describe('a delegation row put back from an older copy', () => {
  for (const change of ['re-delegated', 'revoked']) {
    it(`is refused as ERR_TAMPERED once the delegation was ${change}: the audited state says which row is current`, async () => {
      const key = newKey()
      const path = join(tempDir(), 'vault.db')
      const open = () => Vault.open({ database: `sqlite://${path}`, environment: 'test', kms: { provider: 'local', key }, allow: ALL_PERMISSIONS })
      const vault = await withKey(await open())
      const ev = createdEvent(keys.publicKey, { timestamp: new Date(Date.now() - 60_000).toISOString() })
      await deliver(vault, ev.body)
      const at = `sharevault:delegation:${ev.walletId}`
      const columns = 'metadata, version, generation, wrapped_dek, nonce, ciphertext, mac, sealed_digest, wrapped_at, sealed_at'
      const saved = sqlInChild<Record<string, unknown>>(path, `const r = db.prepare("SELECT ${columns} FROM wallets WHERE address_key = ?").get(args[0]); for (const k of Object.keys(r)) if (Buffer.isBuffer(r[k])) r[k] = { hex: r[k].toString('hex') }; return r`, at)
      const next = change === 're-delegated' ? createdEvent(keys.publicKey, { walletId: ev.walletId }).body : revokedEvent(ev.walletId)
      expect((await deliver(vault, next)).status).toBe(200)
      await vault.close()
      sqlInChild(path, `const r = args[1]; for (const k of Object.keys(r)) if (r[k] && r[k].hex !== undefined) r[k] = Buffer.from(r[k].hex, 'hex'); db.prepare("UPDATE wallets SET ${columns.split(', ').map((c) => `${c} = @${c}`).join(', ')} WHERE address_key = @k").run({ ...r, k: args[0] })`, at, saved)
      const after = await open()
      expect((await vaultError(after.withDelegation(ev.walletId, () => 1))).code).toBe('ERR_TAMPERED')
      await after.close()
    })
  }
})

describe('delegations over a key rotation', () => {
  it('re-wraps the webhook key and every delegation with the wallets, so both work under the new key alone', async () => {
    const database = `sqlite://${join(tempDir(), 'vault.db')}`
    const [a, b] = [newKey(), newKey()]
    const old = await withKey(await Vault.open({ database, environment: 'test', kms: { provider: 'local', key: a }, allow: ALL_PERMISSIONS }))
    const ev = createdEvent(keys.publicKey)
    await deliver(old, ev.body)
    await old.close()
    const vault = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key: b, previous: [{ provider: 'local', key: a }] }, allow: ALL_PERMISSIONS })
    // The webhook key's record and the delegation: two records behind, no wallet.
    expect((await vault.keyStatus()).behind).toBe(2)
    const report = await vault.rotate()
    expect(report).toMatchObject({ done: 2, failed: 0, remaining: 0 })
    await vault.retireKey({ provider: report.before[0].provider, keyId: report.before[0].keyId })
    await vault.close()
    const only = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key: b }, allow: ALL_PERMISSIONS })
    expect(await only.withDelegation(ev.walletId, (d) => d.walletApiKey)).toBe(ev.apiKey)
    const next = createdEvent(keys.publicKey)
    expect((await deliver(only, next.body)).outcome).toBe('stored')
    await only.close()
  })
})

describe('delegated secrets on disk and in output', () => {
  it('never writes the RSA key or either plaintext to a database file, and leaves no byte of a revoked record', async () => {
    const dir = tempDir()
    const path = join(dir, 'vault.db')
    const vault = await Vault.open({ database: `sqlite://${path}`, environment: 'test', kms: { provider: 'local', key: newKey() }, allow: ALL_PERMISSIONS })
    const info = await vault.importDelegationKey(Buffer.from(keys.privatePem))
    expect(info).toMatchObject({ bits: 2048, source: 'vault' })
    expect(info.fingerprint).toMatch(/^[0-9a-f]{64}$/)
    const share = fakeDelegatedShare()
    const ev = createdEvent(keys.publicKey, { share })
    await deliver(vault, ev.body)
    const plain = [Buffer.from(share.secretShare), Buffer.from(ev.apiKey), ...derSlices(keys.privatePem)]
    expect(filesHolding(path, plain)).toEqual([])
    const sealed = sqlInChild<{ c: string; w: string }>(
      path,
      'return db.prepare("SELECT hex(ciphertext) AS c, hex(wrapped_dek) AS w FROM wallets WHERE address_key = ?").get(args[0])',
      `sharevault:delegation:${ev.walletId}`,
    )
    const c = Buffer.from(sealed.c, 'hex')
    const record = [Buffer.from(sealed.w, 'hex'), c.subarray(0, 48), c.subarray(c.length - 48)]
    expect(filesHolding(path, record).length).toBeGreaterThan(0)
    const shown = await vault.withDelegation(ev.walletId, (d) => inspect(d, { depth: 5 }))
    expect(shown).not.toContain(ev.apiKey)
    expect(shown).not.toContain(share.secretShare)
    expect(shown).toContain('[REDACTED]')
    await vault.revokeDelegation(ev.walletId)
    expect(filesHolding(path, record)).toEqual([])
    expect(filesHolding(path, plain)).toEqual([])
    const log = JSON.stringify(await vault.auditLog({}))
    for (const s of [share.secretShare, ev.apiKey]) expect(log).not.toContain(s)
    await vault.close()
  })
})
