import { Client } from 'pg'
import { Vault } from '../lib'
import { fromNative } from '../lib/errors'
import type { NativeVault } from '../index'
import { backupInfoWithExternal, fakeCreatedWallet, fakeShares } from '../lib/testing'
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
    // The same state again (a retried recovery): already written, so success, and nothing changes.
    await vault.recoverSealed(sealed)
    expect(await hydrateGeneration(vault, address)).toBe(base + 1)
    await vault.close()
  })

  it('is refused when the wallet changed since, when altered, from another environment, or when it is not one', async () => {
    const { database, key, vault, created, address } = await setUp()
    const sealed = await native(vault).sealUnpersisted(JSON.stringify(created.walletMetadata), 1, fakeShares('EVM', 1), JSON.stringify(backupInfoWithExternal()), undefined)
    // Every byte of the blob is covered: the header fields (environment, wallet, address, chain,
    // generation, backup info, scheme, key reference, wrapped key, nonce) by the AAD or the key
    // unwrap, the shares by the tag. Each byte of the header is flipped, and bytes across the
    // ciphertext; none is accepted, and the wallet is untouched afterwards.
    const raw = Buffer.from(sealed, 'base64')
    const positions = [...Array(Math.min(raw.length, 700)).keys(), ...Array.from({ length: 40 }, (_, k) => Math.floor(((raw.length - 1) * (k + 1)) / 40))]
    for (const i of new Set(positions)) {
      const bad = Buffer.from(raw)
      bad[i] ^= 1
      const e = await vaultError(vault.recoverSealed(bad.toString('base64')))
      expect([i, ['ERR_TAMPERED', 'ERR_INVALID_INPUT', 'ERR_ENVIRONMENT_MISMATCH', 'ERR_KMS_DENIED']]).toEqual([i, expect.arrayContaining([e.code])])
    }
    expect(await hydrateGeneration(vault, address)).toBe(1)
    expect(await vaultError(vault.recoverSealed('bm90IGEgc2VhbGVkIHN0YXRl'))).toMatchObject({ code: 'ERR_INVALID_INPUT', path: 'sealed' })
    expect(await vaultError(vault.recoverSealed('%%%'))).toMatchObject({ code: 'ERR_INVALID_INPUT', path: 'sealed' })
    // Another environment's vault on the same database (with a key of its own).
    const other = await Vault.open({ database, environment: 'staging', kms: { provider: 'local', key: newKey() } })
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

  it('recovers a new wallet only over nothing or over the same wallet with the same shares', async () => {
    const { vault } = await setUp()
    const fresh = fakeCreatedWallet('EVM')
    const sealed = await native(vault).sealUnpersisted(JSON.stringify(fresh.walletMetadata), 0, fresh.externalServerKeyShares, undefined, undefined)
    // Another wallet stored at that address meanwhile: refused.
    const impostor = fakeCreatedWallet('EVM')
    impostor.walletMetadata.accountAddress = fresh.walletMetadata.accountAddress
    await vault.storeWallet(impostor)
    expect((await vaultError(vault.recoverSealed(sealed))).code).toBe('ERR_CONFLICT')
    // The same wallet with other shares: refused.
    const other = fakeCreatedWallet('SVM')
    const sealedOther = await native(vault).sealUnpersisted(JSON.stringify(other.walletMetadata), 0, other.externalServerKeyShares, undefined, undefined)
    await vault.storeWallet({ walletMetadata: other.walletMetadata, externalServerKeyShares: fakeShares('SVM', 1) })
    expect((await vaultError(vault.recoverSealed(sealedOther))).code).toBe('ERR_CONFLICT')
    await vault.close()
  })

  it('writes new shares derived from a generation once: a retry of a committed write succeeds, other shares are refused', async () => {
    const { vault, created, address } = await setUp()
    const shares = fakeShares('EVM', 1)
    const backup = JSON.stringify(backupInfoWithExternal())
    const walletId = created.walletMetadata.walletId
    await native(vault).replaceShares(address, shares, backup, undefined, undefined, walletId, 1)
    // The same write again (its first answer lost): success, nothing changes.
    await native(vault).replaceShares(address, shares, backup, undefined, undefined, walletId, 1)
    expect(await hydrateGeneration(vault, address)).toBe(2)
    // Other shares from the same base (a stale retry after a later refresh): refused, no rollback.
    const e = await native(vault).replaceShares(address, fakeShares('EVM', 1), backup, undefined, undefined, walletId, 1).catch((x: unknown) => fromNative(x))
    expect((e as { code: string }).code).toBe('ERR_CONFLICT')
    // Another wallet's id: refused.
    const f = await native(vault).replaceShares(address, shares, backup, undefined, undefined, 'another-wallet', 2).catch((x: unknown) => fromNative(x))
    expect((f as { code: string }).code).toBe('ERR_TAMPERED')
    expect(await vault.withWallet(address, (w) => w.externalServerKeyShares[0].secretShare)).toBe(shares[0].secretShare)
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
