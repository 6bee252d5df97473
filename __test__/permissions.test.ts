import { Vault } from '../lib'
import type { OpenOptions } from '../lib'
import { fakeCreatedWallet } from '../demo/fixtures'
import { cleanup, newKey, vaultError } from './support/helpers'

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
    const denied = (await vault.auditLog({ address })).filter((r) => r.outcome === 'ERR_FORBIDDEN')
    expect(denied).toHaveLength(3)
    expect(denied[0]).toMatchObject({ action: 'hydrate', actor: 'ops' })
    expect(vault.stats().hydrations).toBe(0)
    // Other purposes are ordinary.
    expect(await vault.withWallet(address, (w) => w.externalServerKeyShares.length, { purpose: 'sign' })).toBeGreaterThan(0)
    await vault.close()
  })

  it('goes ahead when the vault was opened with allow: [\'hydrate:export\']', async () => {
    const vault = await Vault.open(options({ allow: ['hydrate:export'] }))
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
