import { ALL_PERMISSIONS, DEFAULT_PERMISSIONS, Vault } from '../lib'
import type { OpenOptions } from '../lib'
import { backupInfoWithExternal, fakeCreatedWallet, fakeShares } from '../lib/testing'
import { cleanup, newKey, tempDir, vaultError } from './support/helpers'

afterEach(cleanup)

function options(extra: Partial<OpenOptions> = {}): OpenOptions {
  return { database: ':memory:', environment: 'test', kms: { provider: 'local', key: newKey() }, ...extra }
}

describe('hydrating for export', () => {
  it('is refused without the hydrate:export grant: nothing decrypted, the callback never runs, the attempt audited', async () => {
    const vault = await Vault.open(options())
    const created = fakeCreatedWallet('EVM')
    const address = created.walletMetadata.accountAddress
    await vault.storeWallet(created)
    for (const purpose of ['export', 'EXPORT', ' Export ']) {
      let ran = false
      const e = await vaultError(vault.withWallet(address, () => { ran = true }, { purpose, actor: 'ops' }))
      expect(e.code).toBe('ERR_FORBIDDEN')
      expect(e.message).toContain('hydrate:export')
      expect(ran).toBe(false)
    }
    const denied = (await vault.auditLog({ address })).filter((r) => r.outcome === 'denied')
    expect(denied).toHaveLength(3)
    expect(denied[0]).toMatchObject({ action: 'hydrate', actor: 'ops', purpose: 'export' })
    expect(vault.stats().hydrations).toBe(0)
    // Other purposes are ordinary.
    expect(await vault.withWallet(address, (w) => w.externalServerKeyShares.length, { purpose: 'sign' })).toBeGreaterThan(0)
    await vault.close()
  })

  it('goes ahead when the vault was opened with hydrate:export allowed', async () => {
    const vault = await Vault.open(options({ allow: [...DEFAULT_PERMISSIONS, 'hydrate:export'] }))
    const created = fakeCreatedWallet('SVM')
    await vault.storeWallet(created)
    const n = await vault.withWallet(created.walletMetadata.accountAddress, (w) => w.externalServerKeyShares.length, { purpose: 'export' })
    expect(n).toBe(created.externalServerKeyShares.length)
    await vault.close()
  })

  it('refuses an unknown or malformed grant with its path, and never takes one from Object.prototype', async () => {
    expect(await vaultError(Vault.open(options({ allow: ['hydrate:exprot'] as unknown as OpenOptions['allow'] })))).toMatchObject({ code: 'ERR_INVALID_INPUT', path: 'allow[0]' })
    expect(await vaultError(Vault.open(options({ allow: 'hydrate:export' as unknown as OpenOptions['allow'] })))).toMatchObject({ code: 'ERR_INVALID_INPUT', path: 'allow' })
    expect(await vaultError(Vault.open(options({ allow: [7] as unknown as OpenOptions['allow'] })))).toMatchObject({ code: 'ERR_INVALID_INPUT', path: 'allow[0]' })
    const proto = Object.prototype as Record<string, unknown>
    Object.defineProperty(proto, 'allow', { value: ['hydrate:export'], configurable: true, writable: true, enumerable: false })
    try {
      const vault = await Vault.open(options())
      const created = fakeCreatedWallet('EVM')
      await vault.storeWallet(created)
      expect((await vaultError(vault.withWallet(created.walletMetadata.accountAddress, () => 1, { purpose: 'export' }))).code).toBe('ERR_FORBIDDEN')
      await vault.close()
    } finally {
      delete proto.allow
    }
  })
})

describe('least-privilege handles', () => {
  it('grant exactly what allow lists; everything else is ERR_FORBIDDEN, audited as denied, and touches nothing', async () => {
    const database = `sqlite://${require('node:path').join(tempDir(), 'v.db')}`
    const key = newKey()
    const admin = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key }, allow: ALL_PERMISSIONS })
    const created = fakeCreatedWallet('EVM')
    const address = created.walletMetadata.accountAddress
    await admin.storeWallet(created)
    // A signer: hydrate for signing, nothing else.
    const signer = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key }, allow: ['hydrate:sign'], actor: 'signer' })
    expect(await signer.withWallet(address, (w) => w.externalServerKeyShares.length, { purpose: 'sign' })).toBe(1)
    const keyCalls = () => signer.stats().kmsCalls.decrypt + signer.stats().kmsCalls.generateDataKey
    const before = keyCalls()
    const refused = [
      signer.storeWallet(fakeCreatedWallet('EVM')),
      signer.withWallet(address, () => 1, { purpose: 'export' }),
      signer.withWallet(address, () => 1, { purpose: 'backup' }),
      signer.withWallet(address, () => 1, { purpose: 'refresh' }),
      signer.mergeBackupInfo(address, backupInfoWithExternal()),
      signer.replaceShares(address, { externalServerKeyShares: fakeShares('EVM', 1), backupInfo: backupInfoWithExternal() }),
      signer.deleteWallet(address),
      signer.auditLog(),
      signer.verifyAuditChain(),
    ]
    for (const p of refused) expect((await vaultError(p)).code).toBe('ERR_FORBIDDEN')
    // Metadata is not secret: readable by any handle.
    expect((await signer.getMetadata(address)).walletId).toBe(created.walletMetadata.walletId)
    expect(keyCalls()).toBe(before)
    await signer.close()
    // The wallet is as it was, and every refusal is in the log.
    const rows = await admin.auditLog({ limit: 1000 })
    expect(rows.filter((r) => r.outcome === 'denied' && r.actor === 'signer')).toHaveLength(refused.length)
    expect(rows.filter((r) => r.action === 'replace_shares' && r.outcome === 'ok')).toHaveLength(0)
    // The default handle may not delete.
    const plain = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key } })
    expect((await vaultError(plain.deleteWallet(address))).code).toBe('ERR_FORBIDDEN')
    await plain.close()
    await admin.deleteWallet(address)
    await admin.close()
  })
})

describe('the audit log', () => {
  it('is read per environment: a vault never sees another environment\'s rows', async () => {
    const database = `sqlite://${require('node:path').join(tempDir(), 'envs.db')}`
    const prod = await Vault.open({ database, environment: 'production', kms: { provider: 'local', key: newKey(), allowInProduction: true } })
    const staging = await Vault.open({ database, environment: 'staging', kms: { provider: 'local', key: newKey() } })
    const p = fakeCreatedWallet('EVM')
    const s = fakeCreatedWallet('SVM')
    await prod.storeWallet(p)
    await staging.storeWallet(s)
    await prod.withWallet(p.walletMetadata.accountAddress, () => 1, { purpose: 'sign' })
    const prodRows = await prod.auditLog({ limit: 1000 })
    const stagingRows = await staging.auditLog({ limit: 1000 })
    // Each: its key's registration, then its own writes.
    expect(prodRows.map((r) => r.environment)).toEqual(['production', 'production', 'production'])
    expect(stagingRows.map((r) => r.environment)).toEqual(['staging', 'staging'])
    expect(await staging.auditLog({ address: p.walletMetadata.accountAddress })).toEqual([])
    // One chain for the database, which both can verify.
    expect((await prod.verifyAuditChain()).brokenAt).toBeUndefined()
    await prod.close()
    await staging.close()
  })
})
