// What someone with write access to the SQLite file (and no key) could do unnoticed before
// rows and the audit head were authenticated: the assurance issue's attacks, replayed with
// better-sqlite3 in a child process while the vault runs, and the checkpoint API. The same
// attacks on both backends, down to each column, are in crates/core/tests/tamper.rs.
import { Vault, ALL_PERMISSIONS, DEFAULT_PERMISSIONS } from '../lib'
import type { AuditCheckpoint } from '../lib'
import { fakeCreatedWallet } from '../lib/testing'
import { cleanup, openFile, vaultError } from './support/helpers'
import { sqlInChild } from './support/sql'

afterEach(cleanup)

/** The same file opened again with the same key, by an operator's handle. */
async function reopen(path: string): Promise<{ vault: Vault }> {
  const key = keys.get(path)
  if (!key) throw new Error('no key for that file')
  return { vault: await Vault.open({ database: `sqlite://${path}`, environment: 'test', kms: { provider: 'local', key }, allow: ALL_PERMISSIONS }) }
}
const keys = new Map<string, Buffer>()

const DROP_TRIGGERS = 'DROP TRIGGER audit_append_only_update; DROP TRIGGER audit_append_only_delete;'

async function withHydrates(n: number) {
  const opened = await openFile()
  keys.set(opened.path, opened.key)
  const a = fakeCreatedWallet('EVM')
  const b = fakeCreatedWallet('EVM')
  await opened.vault.storeWallet(a)
  await opened.vault.storeWallet(b)
  for (let i = 0; i < n; i++) {
    await opened.vault.withWallet(a.walletMetadata.accountAddress, () => 1, { purpose: 'sign', actor: 'batch-job' })
  }
  return { ...opened, a: a.walletMetadata.accountAddress.toLowerCase(), b: b.walletMetadata.accountAddress.toLowerCase() }
}

describe('the audit log cannot be cut or rewritten unnoticed', () => {
  it('reports the last rows deleted, with the first missing row', async () => {
    const { vault, path } = await withHydrates(6) // rows 1..8
    sqlInChild(path, `db.exec(${JSON.stringify(`${DROP_TRIGGERS} DELETE FROM audit WHERE seq > 5`)})`)
    const check = await vault.verifyAuditChain()
    expect(check).toMatchObject({ rows: 5, brokenAt: 6 })
    expect(check.reason).toMatch(/deleted/)
    await vault.close()
  })

  it('reports every row deleted', async () => {
    const { vault, path } = await withHydrates(2)
    sqlInChild(path, `db.exec(${JSON.stringify(`${DROP_TRIGGERS} DELETE FROM audit`)})`)
    expect(await vault.verifyAuditChain()).toMatchObject({ rows: 0, brokenAt: 1 })
    await vault.close()
  })

  it('reports a row edited and every hash after it recomputed', async () => {
    const { vault, path } = await withHydrates(4)
    // Row 5, batch-job's hydrate, made into mallory's export; the chain rehashed from there with
    // plain SHA-256, as the audit format is public (the row MAC is what the attacker cannot make).
    const rows = await vault.auditLog()
    expect(rows[4]).toMatchObject({ seq: 5, actor: 'batch-job', purpose: 'sign' })
    sqlInChild(path, `
      const { createHash } = require('node:crypto')
      db.exec(${JSON.stringify(DROP_TRIGGERS)})
      const rows = db.prepare('SELECT * FROM audit WHERE seq >= 4 ORDER BY seq').all()
      let prev = rows[0].hash
      const put = (h, s) => {
        if (s == null) return h.update(Buffer.from([0]))
        const b = Buffer.from(s, 'utf8'); const len = Buffer.alloc(8); len.writeBigUInt64BE(BigInt(b.length))
        h.update(Buffer.from([1])); h.update(len); h.update(b)
      }
      for (const r of rows.slice(1)) {
        if (r.seq === 5) { r.actor = 'mallory'; r.purpose = 'export' }
        const h = createHash('sha256')
        h.update('sharevault/audit/v1'); h.update(prev)
        const n = Buffer.alloc(16); n.writeBigInt64BE(BigInt(r.seq)); n.writeBigInt64BE(BigInt(r.at), 8); h.update(n)
        for (const s of [r.environment, r.actor, r.action, r.address, r.wallet_id, r.purpose, r.outcome]) put(h, s)
        if (r.wallet_mac != null) {
          const len = Buffer.alloc(8); len.writeBigUInt64BE(BigInt(r.wallet_mac.length))
          h.update(Buffer.from([2])); h.update(len); h.update(r.wallet_mac)
        }
        const hash = h.digest()
        db.prepare('UPDATE audit SET actor = ?, purpose = ?, prev_hash = ?, hash = ? WHERE seq = ?').run(r.actor, r.purpose, prev, hash, r.seq)
        prev = hash
      }`)
    // The rehash itself is right (every link holds)...
    const forged = await vault.auditLog()
    expect(forged[4]).toMatchObject({ seq: 5, actor: 'mallory', purpose: 'export' })
    // ...and still row 5 is named: its MAC does not verify.
    const check = await vault.verifyAuditChain()
    expect(check).toMatchObject({ brokenAt: 5 })
    expect(check.reason).toMatch(/MAC/)
    await vault.close()
  })
})

describe('a cut log is never healed by the next write', () => {
  it('refuses every write until an operator acknowledges the break, which stays on record', async () => {
    const { vault, path, key, a } = await withHydrates(3) // rows 1..6: the keyring's registration, 2 stores, 3 hydrates
    sqlInChild(path, `db.exec(${JSON.stringify(`${DROP_TRIGGERS} DELETE FROM audit WHERE seq > 3`)})`)
    for (let i = 0; i < 2; i++) {
      const e = await vaultError(vault.withWallet(a, () => 'must not run', { purpose: 'sign' }))
      expect(e.code).toBe('ERR_TAMPERED')
      expect(e.message).toMatch(/acknowledgeAuditBreak/)
      expect(await vault.verifyAuditChain()).toMatchObject({ brokenAt: 4 })
    }
    // A default handle may not acknowledge it.
    const service = await Vault.open({ database: `sqlite://${path}`, environment: 'test', kms: { provider: 'local', key } })
    expect((await vaultError(service.acknowledgeAuditBreak('no'))).code).toBe('ERR_FORBIDDEN')
    await service.close()
    expect(await vault.acknowledgeAuditBreak('INC-1: restored from the 02:00 backup', { actor: 'ops' })).toBe(4)
    expect(await vault.withWallet(a, () => 'signed', { purpose: 'sign' })).toBe('signed')
    expect(await vault.verifyAuditChain()).toEqual({ rows: 5, acknowledged: [4] })
    expect((await vault.auditLog())[3]).toMatchObject({ seq: 4, action: 'audit_break_acknowledged', actor: 'ops' })
    expect((await vaultError(vault.acknowledgeAuditBreak('again'))).code).toBe('ERR_CONFLICT')
    await vault.close()
  })

  it('authenticates rows without a MAC only on an explicit, audited operator step', async () => {
    const { vault, path, a } = await withHydrates(0)
    await vault.close()
    // The rows stripped of their MACs and the environment's head and history deleted: nothing
    // authenticates them again by itself.
    sqlInChild(path, `db.exec(${JSON.stringify(`${DROP_TRIGGERS} DELETE FROM audit; DELETE FROM audit_heads; UPDATE wallets SET mac = NULL`)})`)
    const { vault: again } = await reopen(path)
    const e = await vaultError(again.getMetadata(a))
    expect(e.code).toBe('ERR_TAMPERED')
    expect(e.message).toMatch(/authenticateExistingRows/)
    expect(await again.authenticateExistingRows({ actor: 'ops' })).toEqual({ authenticated: 2, refused: 0 })
    expect((await again.getMetadata(a)).accountAddress.toLowerCase()).toBe(a)
    // The two rows, and the keyring's entry of the key (its history was deleted too).
    expect((await again.auditLog()).map((r) => r.action)).toEqual(['integrity_enabled', 'authenticate', 'authenticate', 'authenticate'])
    expect((await vaultError(again.authenticateExistingRows())).code).toBe('ERR_CONFLICT')
    await again.close()
  })
})

describe('a wallet row cannot be changed or rolled back unnoticed', () => {
  it('refuses the superseded shares put back after a refresh, at the next hydrate', async () => {
    const { vault, path, a } = await withHydrates(0)
    sqlInChild(path, `db.exec("CREATE TABLE saved AS SELECT * FROM wallets WHERE address_key = '${a}'")`)
    const next = fakeCreatedWallet('EVM')
    await vault.replaceShares(a, { externalServerKeyShares: next.externalServerKeyShares, backupInfo: next.walletMetadata.externalServerKeySharesBackupInfo! })
    sqlInChild(path, `db.exec("DELETE FROM wallets WHERE address_key = '${a}'; INSERT INTO wallets SELECT * FROM saved")`)
    const e = await vaultError(vault.withWallet(a, () => 'should not run', { purpose: 'sign' }))
    expect(e.code).toBe('ERR_TAMPERED')
    expect(e.message).toMatch(/older copy/)
    await vault.close()
  })

  it.each([
    ['the scheme inside the metadata', "UPDATE wallets SET metadata = replace(metadata, 'TWO_OF_TWO', 'TWO_OF_THREE') WHERE address_key = ?"],
    ["the display address, pointed at another wallet's", 'UPDATE wallets SET address = (SELECT address FROM wallets WHERE address_key != ? LIMIT 1) WHERE address_key = ?'],
  ])('refuses %s on every read, and audits nothing under the wrong address', async (_what, sql) => {
    const { vault, path, a, b } = await withHydrates(0)
    sqlInChild(path, `db.prepare(${JSON.stringify(sql)}).run(...args)`, ...Array((sql.match(/\?/g) ?? []).length).fill(a))
    for (const call of [
      () => vault.getMetadata(a),
      () => vault.withWallet(a, () => 'should not run', { purpose: 'sign' }),
      () => vault.listWallets(),
    ]) {
      expect((await vaultError(call())).code).toBe('ERR_TAMPERED')
    }
    const underB = (await vault.auditLog({ address: b })).filter((r) => r.action === 'hydrate')
    expect(underB).toEqual([])
    await vault.close()
  })
})

describe('checkpoints', () => {
  it('survive JSON, verify while the log extends them, and catch the log rolled back before them', async () => {
    const { vault, path } = await withHydrates(2)
    const early: AuditCheckpoint = JSON.parse(JSON.stringify(await vault.checkpoint()))
    expect(early).toEqual({ environment: 'test', seq: 5, hash: expect.stringMatching(/^[0-9a-f]{64}$/), mac: expect.stringMatching(/^[0-9a-f]{64}$/) })
    sqlInChild(path, 'db.exec("CREATE TABLE saved_head AS SELECT * FROM audit_heads")')
    await withWalletOnce(vault)
    const late = await vault.checkpoint()
    expect(late.seq).toBe(6)
    expect(await vault.verifyAuditChain({ since: early })).toEqual({ rows: 6 })
    // The log and head as they were at `early`: consistent, so only the checkpoint can tell.
    sqlInChild(path, `db.exec(${JSON.stringify(`${DROP_TRIGGERS} DELETE FROM audit WHERE seq > 5; DELETE FROM audit_heads; INSERT INTO audit_heads SELECT * FROM saved_head`)})`)
    expect(await vault.verifyAuditChain()).toEqual({ rows: 5 })
    const check = await vault.verifyAuditChain({ since: late })
    expect(check).toMatchObject({ brokenAt: 6 })
    expect(check.reason).toMatch(/rolled back/)
    await vault.close()
  })

  it('refuses a forged or malformed checkpoint with a stable code', async () => {
    const { vault } = await withHydrates(0)
    const cp = await vault.checkpoint()
    expect((await vaultError(vault.verifyAuditChain({ since: { ...cp, seq: cp.seq - 1 } }))).code).toBe('ERR_TAMPERED')
    for (const [since, path] of [
      [{ ...cp, hash: 'zz' }, 'since.hash'],
      [{ ...cp, mac: undefined }, 'since.mac'],
      [{ ...cp, seq: -1 }, 'since.seq'],
      ['checkpoint', 'since'],
    ] as const) {
      const e = await vaultError(vault.verifyAuditChain({ since: since as unknown as AuditCheckpoint }))
      expect([e.code, e.path]).toEqual(['ERR_INVALID_INPUT', path])
    }
    await vault.close()
  })

  it('need audit:read', async () => {
    const { vault, path, key } = await withHydrates(0)
    await vault.close()
    const signer = await Vault.open({ database: `sqlite://${path}`, environment: 'test', kms: { provider: 'local', key }, allow: DEFAULT_PERMISSIONS.filter((p) => p !== 'audit:read') })
    expect((await vaultError(signer.checkpoint())).code).toBe('ERR_FORBIDDEN')
    await signer.close()
  })
})

async function withWalletOnce(vault: Vault): Promise<void> {
  const [first] = await vault.listWallets({ limit: 1 })
  await vault.withWallet(first.accountAddress, () => 1, { purpose: 'sign' })
}
