import { Client } from 'pg'
import { Vault } from '../lib'
import { fromNative } from '../lib/errors'
import type { NativeVault } from '../index'
import { backupInfoWithExternal, fakeCreatedWallet, fakeShares } from '../lib/fixtures'
import { backends, cleanup, newKey, vaultError } from './support/helpers'

afterEach(cleanup)

// The sealing half is the SDK wrapper's (after a refresh whose new shares cannot be written);
// until it lands, the tests reach it through the binding.
function native(v: Vault): NativeVault {
  return (v as unknown as { native: NativeVault }).native
}

async function hydrateGeneration(v: Vault, address: string): Promise<number> {
  return (await native(v).hydrate(address, 'test', undefined)).generation
}

describe.each(backends())('a sealed, unpersisted state on $name', (backend) => {
  async function setUp() {
    const database = await backend.database()
    const key = newKey()
    const vault = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key } })
    const created = fakeCreatedWallet('EVM', { scheme: 'TWO_OF_TWO' })
    await vault.storeWallet(created)
    return { database, key, vault, created, address: created.walletMetadata.accountAddress }
  }

  it('is written back by recoverSealed: new shares, backup info and scheme, as one new generation', async () => {
    const { vault, created, address } = await setUp()
    const base = await hydrateGeneration(vault, address)
    const shares = fakeShares('EVM', 2)
    const backupInfo = backupInfoWithExternal()
    const sealed = await native(vault).sealUnpersisted(JSON.stringify(created.walletMetadata), base, shares, JSON.stringify(backupInfo), 'TWO_OF_THREE')
    // Sealed: no share text in it.
    const raw = Buffer.from(sealed, 'base64')
    for (const s of shares) expect(raw.includes(Buffer.from(s.secretShare))).toBe(false)
    const meta = await vault.recoverSealed(sealed, { actor: 'recovery' })
    expect(meta.thresholdSignatureScheme).toBe('TWO_OF_THREE')
    expect(meta.externalServerKeySharesBackupInfo).toEqual(backupInfo)
    const back = await vault.withWallet(address, (w) => w.externalServerKeyShares.map((s) => s.secretShare), { purpose: 'check' })
    expect(back).toEqual(shares.map((s) => s.secretShare))
    expect(await hydrateGeneration(vault, address)).toBe(base + 1)
    const audit = await vault.auditLog({ address })
    expect(audit.some((r) => r.action === 'replace_shares' && r.actor === 'recovery')).toBe(true)
    // The same state again is stale now, and changes nothing.
    const again = await vaultError(vault.recoverSealed(sealed))
    expect(again.code).toBe('ERR_CONFLICT')
    expect(await hydrateGeneration(vault, address)).toBe(base + 1)
    await vault.close()
  })

  it('is refused when the wallet changed since, when altered, from another environment, or when it is not one', async () => {
    const { database, key, vault, created, address } = await setUp()
    const sealed = await native(vault).sealUnpersisted(JSON.stringify(created.walletMetadata), 1, fakeShares('EVM', 1), JSON.stringify(backupInfoWithExternal()), undefined)
    // Every byte of the blob is covered: the header fields by the AAD, the rest by the tag.
    const raw = Buffer.from(sealed, 'base64')
    for (const i of [6, 20, raw.length - 40, raw.length - 1]) {
      const bad = Buffer.from(raw)
      bad[i] ^= 1
      const e = await vaultError(vault.recoverSealed(bad.toString('base64')))
      expect(['ERR_TAMPERED', 'ERR_INVALID_INPUT', 'ERR_ENVIRONMENT_MISMATCH', 'ERR_NOT_FOUND', 'ERR_KMS_DENIED']).toContain(e.code)
    }
    expect(await vaultError(vault.recoverSealed('bm90IGEgc2VhbGVkIHN0YXRl'))).toMatchObject({ code: 'ERR_INVALID_INPUT', path: 'sealed' })
    expect(await vaultError(vault.recoverSealed('%%%'))).toMatchObject({ code: 'ERR_INVALID_INPUT', path: 'sealed' })
    // Another environment's vault on the same database and key.
    const other = await Vault.open({ database, environment: 'staging', kms: { provider: 'local', key } })
    expect((await vaultError(other.recoverSealed(sealed))).code).toBe('ERR_ENVIRONMENT_MISMATCH')
    await other.close()
    // The wallet changed (a replace) after the state was sealed: stale.
    await vault.replaceShares(address, { externalServerKeyShares: fakeShares('EVM', 1), backupInfo: backupInfoWithExternal() })
    expect((await vaultError(vault.recoverSealed(sealed))).code).toBe('ERR_CONFLICT')
    // Shares that do not fit the scheme are refused when sealing, as when replacing.
    const e = await vaultError(native(vault).sealUnpersisted(JSON.stringify(created.walletMetadata), 2, fakeShares('EVM', 3), JSON.stringify(backupInfoWithExternal()), undefined).catch((x: unknown) => { throw fromNative(x) }))
    expect(e.code).toBe('ERR_INVALID_INPUT')
    await vault.close()
  })

  if (backend.name === 'postgres') {
    it('can be sealed while the database is gone (it needs the KMS only), and recovered once it is back', async () => {
      const { database, vault, created, address } = await setUp()
      const name = new URL(database).pathname.slice(1)
      const admin = new Client({ connectionString: process.env.SHAREVAULT_PG_ADMIN_URL })
      await admin.connect()
      // The database goes away under the vault: renamed, connections cut.
      await admin.query(`ALTER DATABASE ${name} RENAME TO ${name}_away`).catch(async () => {
        await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [name])
        await admin.query(`ALTER DATABASE ${name} RENAME TO ${name}_away`)
      })
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [`${name}_away`])
      const down = await vaultError(vault.replaceShares(address, { externalServerKeyShares: fakeShares('EVM', 1), backupInfo: backupInfoWithExternal() }))
      expect(['ERR_DB_UNAVAILABLE', 'ERR_STORAGE']).toContain(down.code)
      const shares = fakeShares('EVM', 1)
      const sealed = await native(vault).sealUnpersisted(JSON.stringify(created.walletMetadata), 1, shares, JSON.stringify(backupInfoWithExternal()), undefined)
      await admin.query(`ALTER DATABASE ${name}_away RENAME TO ${name}`)
      await admin.end()
      await vault.recoverSealed(sealed)
      expect(await vault.withWallet(address, (w) => w.externalServerKeyShares[0].secretShare)).toBe(shares[0].secretShare)
      await vault.close()
    })
  }
})
