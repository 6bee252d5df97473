import { Client } from 'pg'
import { Vault } from '../lib'
import { DEFAULT_PERMISSIONS } from '../lib'
import type { OpenOptions, Permission, ServerKeyShare, WalletMetadata } from '../lib'
import { UnpersistedSharesError, vaulted } from '../lib/dynamic'
import type { Chain } from '../lib/testing'
import { backends, newKey, openFile, vaultError } from './support/helpers'
import { FakeEvmWalletClient, FakeWalletClient, fakeClients, SdkError } from '../lib/testing'

const CHAINS: Chain[] = ['EVM', 'SVM', 'BTC', 'TON']

async function openVault(extra: Partial<OpenOptions> = {}): Promise<Vault> {
  return Vault.open({ database: ':memory:', environment: 'test', kms: { provider: 'local', key: newKey() }, ...extra })
}

/** The state the vault holds for a wallet, read directly (to call the raw client with). */
async function stored(vault: Vault, address: string): Promise<{ walletMetadata: WalletMetadata; externalServerKeyShares: ServerKeyShare[] }> {
  return vault.withWallet(address, (w) => ({ walletMetadata: w.walletMetadata, externalServerKeyShares: w.externalServerKeyShares }), { purpose: 'test' })
}

function createArgs(chain: Chain) {
  return { thresholdSignatureScheme: 'TWO_OF_TWO' as const, ...(chain === 'BTC' ? { addressType: 'taproot' as const } : {}) }
}

describe.each(CHAINS)('vaulted(%s client)', (chain) => {
  let raw: FakeWalletClient
  let vault: Vault
  beforeEach(async () => {
    raw = fakeClients()[chain]
    vault = await openVault()
  })
  afterEach(async () => {
    await vault.close()
  })

  it('createWalletAccount: backUpToDynamic false by default, both halves stored, no share returned', async () => {
    const client = vaulted(raw, vault, { actor: 'api' })
    const created = await client.createWalletAccount(createArgs(chain))
    expect(Object.keys(created).sort()).toEqual(chain === 'EVM' ? ['publicKeyHex', 'rawPublicKey', 'walletMetadata'] : ['rawPublicKey', 'walletMetadata'])
    expect(created.walletMetadata.externalServerKeySharesBackupInfo?.backups.external).toEqual([])
    expect(JSON.stringify(created)).not.toContain('secretShare')
    const { walletMetadata, externalServerKeyShares } = await stored(vault, created.walletMetadata.accountAddress)
    expect(walletMetadata).toEqual(created.walletMetadata)
    expect(externalServerKeyShares).toHaveLength(1)
    const audit = await vault.auditLog({ address: created.walletMetadata.accountAddress })
    expect(audit[0]).toMatchObject({ action: 'store', actor: 'api' })
    const imported = await client.importPrivateKey({ ...createArgs(chain), privateKey: 'generated-in-test', chainName: chain })
    expect(Object.keys(imported)).not.toContain('externalServerKeyShares')
    expect((await stored(vault, imported.walletMetadata.accountAddress)).externalServerKeyShares).toHaveLength(1)
  })

  it('signs, verifies and answers password questions with the stored state; results are the SDK\'s, unchanged', async () => {
    const client = vaulted(raw, vault)
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount(createArgs(chain))
    const state = await stored(vault, accountAddress)
    expect(await client.signMessage({ accountAddress, message: 'hi' })).toBe(await raw.signMessage({ accountAddress, message: 'hi', ...state }))
    expect(await client.signTransaction({ accountAddress, transaction: { to: 'x', value: 1 } })).toBe(await raw.signTransaction({ accountAddress, transaction: { to: 'x', value: 1 }, ...state }))
    // The password questions need the metadata only: nothing is decrypted for them.
    const hydrationsBefore = vault.stats().hydrations
    await expect(client.verifyPassword({ accountAddress, password: '' })).resolves.toBeUndefined()
    expect(await client.isPasswordEncrypted({ accountAddress })).toBe(false)
    expect(await client.requiresPasswordForOperation({ accountAddress })).toBe(false)
    expect(await client.getWalletExternalServerKeyShareBackupInfo({ accountAddress })).toEqual(state.walletMetadata.externalServerKeySharesBackupInfo)
    expect(vault.stats().hydrations).toBe(hydrationsBefore)
    expect(raw.calls.filter((c) => c.method === 'verifyPassword' || c.method === 'isPasswordEncrypted').every((c) => !c.withShares)).toBe(true)
    const purposes = (await vault.auditLog({ address: accountAddress })).map((r) => r.purpose)
    expect(purposes).toContain('sign')
    // A wallet the vault does not hold is the vault's ERR_NOT_FOUND, and the SDK is not called.
    const calls = raw.calls.length
    await expect(client.signMessage({ accountAddress: 'not-stored', message: 'hi' })).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' })
    expect(raw.calls.length).toBe(calls)
    // The SDK's own errors reach the caller unchanged.
    await expect(client.signMessage({ accountAddress, message: 'hi', password: 'not-set' })).resolves.toEqual(expect.any(String))
  })

  it('refuses the calls that return plaintext shares; the SDK is never called', async () => {
    const client = vaulted(raw, vault)
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount(createArgs(chain))
    raw.calls.length = 0
    const refused = client as unknown as Record<string, (a: unknown) => Promise<unknown>>
    for (const m of ['getExternalServerKeyShares', 'exportExternalServerKeyShares']) {
      expect((await vaultError(refused[m]({ accountAddress, password: 'p' }))).code).toBe('ERR_FORBIDDEN')
    }
    expect(raw.calls).toEqual([])
  })

  it('sends backUpToDynamic: false unless told otherwise', async () => {
    const client = vaulted(raw, vault)
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount(createArgs(chain))
    await client.storeEncryptedBackupByWallet({ accountAddress })
    await client.refreshWalletAccountShares({ accountAddress })
    await client.storeEncryptedBackupByWallet({ accountAddress, backUpToDynamic: true })
    const seen = raw.calls.filter((c) => ['createWalletAccount', 'storeEncryptedBackupByWallet', 'refreshWalletAccountShares'].includes(c.method)).map((c) => [c.method, c.backUpToDynamic])
    expect(seen).toEqual([
      ['createWalletAccount', false],
      ['storeEncryptedBackupByWallet', false],
      ['refreshWalletAccountShares', false],
      ['storeEncryptedBackupByWallet', true],
    ])
  })

  it('exportKey needs a vault opened with hydrate:export; without it the SDK is never called', async () => {
    const client = vaulted(raw, vault)
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount(createArgs(chain))
    raw.calls.length = 0
    expect((await vaultError(client.exportKey({ accountAddress }))).code).toBe('ERR_FORBIDDEN')
    expect(raw.calls).toEqual([])
    const exporting = await openVault({ allow: [...DEFAULT_PERMISSIONS, 'hydrate:export'] })
    try {
      const c2 = vaulted(raw, exporting)
      const again = await c2.createWalletAccount(createArgs(chain))
      expect(await c2.exportKey({ accountAddress: again.walletMetadata.accountAddress })).toHaveProperty('derivedPrivateKey')
      const audit = await exporting.auditLog({ address: again.walletMetadata.accountAddress })
      expect(audit.some((r) => r.purpose === 'export' && r.outcome === 'ok')).toBe(true)
    } finally {
      await exporting.close()
    }
  })

  it('a result the vault cannot store as it is (a Date in a share) is sealed losslessly, never lost, and read back only by an operator', async () => {
    const { vault: admin, path, key } = await openFile()
    const client = vaulted(raw, admin)
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount(createArgs(chain))
    const refresh = raw.refreshWalletAccountShares.bind(raw)
    let returned: unknown
    raw.refreshWalletAccountShares = async (args) => {
      const out = await refresh(args)
      ;(out.externalServerKeyShares[0] as unknown as Record<string, unknown>).createdAt = new Date(1_700_000_000_000)
      returned = structuredClone(out)
      return out
    }
    const e = (await client.refreshWalletAccountShares({ accountAddress }).catch((x: unknown) => x)) as UnpersistedSharesError
    expect(e).toBeInstanceOf(UnpersistedSharesError)
    expect(typeof e.sealed).toBe('string')
    expect(e.message).not.toMatch(/lost/)
    // recoverSealed cannot store it, and says what to do; nothing is written.
    const refused = await vaultError(admin.recoverSealed(e.sealed as string))
    expect(refused.code).toBe('ERR_INVALID_INPUT')
    expect(refused.message).toMatch(/openSealed/)
    // A handle without hydrate:export may not read it back, and touches no key.
    const signer = await Vault.open({ database: `sqlite://${path}`, environment: 'test', kms: { provider: 'local', key } })
    expect((await vaultError(signer.openSealed(e.sealed as string))).code).toBe('ERR_FORBIDDEN')
    await signer.close()
    // The operator gets exactly what the SDK returned, Date included; the read is audited.
    const opened = (await admin.openSealed(e.sealed as string, { actor: 'ops' })) as Record<string, unknown>
    const sdk = returned as Record<string, unknown>
    expect(opened.externalServerKeyShares).toEqual(sdk.externalServerKeyShares)
    // (v8.deserialize builds the Date in Node's own realm, not jest's: compared by its tag and time.)
    const createdAt = (opened.externalServerKeyShares as Record<string, unknown>[])[0].createdAt as Date
    expect([Object.prototype.toString.call(createdAt), createdAt.getTime()]).toEqual(['[object Date]', 1_700_000_000_000])
    expect(opened.backupInfo).toEqual(sdk.backupInfo)
    expect((await admin.auditLog({ address: accountAddress })).some((r) => r.action === 'open_sealed' && r.actor === 'ops')).toBe(true)
    await admin.close()
  })

  it('never makes an SDK call it cannot undo on a handle that may not keep its result', async () => {
    const { vault: admin, path, key } = await openFile()
    const { walletMetadata: { accountAddress } } = await vaulted(raw, admin).createWalletAccount(createArgs(chain))
    const handle = (allow: Permission[]) => Vault.open({ database: `sqlite://${path}`, environment: 'test', kms: { provider: 'local', key }, allow })
    const cases: [Permission[], (c: ReturnType<typeof vaulted<FakeWalletClient>>) => Promise<unknown>, string][] = [
      [['hydrate:sign', 'replace', 'backup'], (c) => c.createWalletAccount(createArgs(chain)), 'createWalletAccount'],
      // A password change hydrates for signing but writes backup info: both are needed.
      [['hydrate:sign', 'store', 'replace'], (c) => c.updatePassword({ accountAddress, existingPassword: '', newPassword: 'n' }), 'updatePassword'],
      [['store', 'backup'], (c) => c.updatePassword({ accountAddress, existingPassword: '', newPassword: 'n' }), 'updatePassword'],
      [['hydrate:sign', 'store', 'backup'], (c) => c.refreshWalletAccountShares({ accountAddress }), 'refreshWalletAccountShares'],
      [['hydrate:sign', 'store', 'backup'], (c) => c.reshare({ accountAddress, oldThresholdSignatureScheme: 'TWO_OF_TWO', newThresholdSignatureScheme: 'TWO_OF_THREE' }), 'reshare'],
    ]
    for (const [allow, run, method] of cases) {
      const v = await handle(allow)
      raw.calls.length = 0
      const e = await vaultError(run(vaulted(raw, v)))
      expect([method, e.code]).toEqual([method, 'ERR_FORBIDDEN'])
      expect(raw.calls).toEqual([])
      await v.close()
    }
    const denied = (await admin.auditLog()).filter((r) => r.outcome === 'denied')
    expect(denied.map((r) => r.purpose)).toEqual(cases.map((c) => c[2]))
    await admin.close()
  })

  it('storeEncryptedBackupByWallet and updatePassword merge the returned backup info', async () => {
    const client = vaulted(raw, vault)
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount(createArgs(chain))
    const backed = await client.storeEncryptedBackupByWallet({ accountAddress, backUpToDynamic: false })
    expect(Object.keys(backed).sort()).toEqual(['backupInfo', 'walletMetadata'])
    expect(backed.walletMetadata.externalServerKeySharesBackupInfo).toEqual(backed.backupInfo)
    expect((await vault.getMetadata(accountAddress)).externalServerKeySharesBackupInfo).toEqual(backed.backupInfo)
    const changed = await client.updatePassword({ accountAddress, existingPassword: undefined, newPassword: 'correct horse', backUpToDynamic: false })
    expect(changed.backupInfo.passwordEncrypted).toBe(true)
    expect((await vault.getMetadata(accountAddress)).externalServerKeySharesBackupInfo?.passwordEncrypted).toBe(true)
    // The password now guards the wallet, through the wrapper as on the SDK.
    await expect(client.signMessage({ accountAddress, message: 'm' })).rejects.toBeInstanceOf(SdkError)
    expect(typeof (await client.signMessage({ accountAddress, message: 'm', password: 'correct horse' }))).toBe('string')
  })

  it('refreshWalletAccountShares replaces the shares atomically: the old ones stop signing, the wrapper signs with the new', async () => {
    const client = vaulted(raw, vault)
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount(createArgs(chain))
    const before = await stored(vault, accountAddress)
    const refreshed = await client.refreshWalletAccountShares({ accountAddress })
    expect(Object.keys(refreshed)).toEqual(['walletMetadata'])
    await expect(raw.signMessage({ accountAddress, message: 'x', ...before })).rejects.toThrow(/not current/)
    expect(typeof (await client.signMessage({ accountAddress, message: 'x' }))).toBe('string')
    expect(refreshed.walletMetadata.externalServerKeySharesBackupInfo).toEqual((await vault.getMetadata(accountAddress)).externalServerKeySharesBackupInfo)
  })

  it('reshare writes the new shares, backup info and scheme together', async () => {
    const client = vaulted(raw, vault)
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount(createArgs(chain))
    const out = await client.reshare({ accountAddress, oldThresholdSignatureScheme: 'TWO_OF_TWO', newThresholdSignatureScheme: 'TWO_OF_THREE' })
    expect(out.walletMetadata.thresholdSignatureScheme).toBe('TWO_OF_THREE')
    expect((await stored(vault, accountAddress)).externalServerKeyShares).toHaveLength(2)
    expect(typeof (await client.signMessage({ accountAddress, message: 'x' }))).toBe('string')
    const actions = (await vault.auditLog({ address: accountAddress })).map((r) => `${r.action}:${r.purpose ?? ''}`)
    expect(actions).toEqual(expect.arrayContaining(['hydrate:reshare', 'replace_shares:']))
  })

  it('passes methods it does not manage through to the client, bound to it', async () => {
    const client = vaulted(raw, vault)
    expect(await client.fetchWalletMetadata('0xabc')).toEqual({ accountAddress: '0xabc', chainName: chain })
    expect(client.chainName).toBe(chain)
    // The same function on every read, and `this` is the client (a detached call works).
    expect(client.fetchWalletMetadata).toBe(client.fetchWalletMetadata)
    const detached = client.fetchWalletMetadata
    expect(await detached('0xdef')).toMatchObject({ chainName: chain })
  })
})

describe('vaulted: a client with private state and getters', () => {
  it('reads getters and #private fields with the client as the receiver', async () => {
    class PrivateClient {
      #secretless = 'env-123'
      get environmentId(): string {
        return this.#secretless
      }
      ping(): string {
        return this.#secretless
      }
    }
    const vault = await openVault()
    const client = vaulted(new PrivateClient(), vault)
    expect(client.environmentId).toBe('env-123')
    expect(client.ping()).toBe('env-123')
    await vault.close()
  })
})

describe('vaulted(EVM client): the EVM-only methods', () => {
  it('signTypedData, getWalletClient and exportPrivateKey get the stored state', async () => {
    const raw = new FakeEvmWalletClient()
    const vault = await openVault({ allow: [...DEFAULT_PERMISSIONS, 'hydrate:export'] })
    const client = vaulted(raw, vault)
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' })
    const state = await stored(vault, accountAddress)
    expect(await client.signTypedData({ accountAddress, typedData: { a: 1 } })).toBe(await raw.signTypedData({ accountAddress, typedData: { a: 1 }, ...state }))
    const wc = await client.getWalletClient({ accountAddress })
    expect(await wc.signMessage({ message: 'hi' })).toBe(await raw.signMessage({ accountAddress, message: 'hi', ...state }))
    expect((await client.exportPrivateKey({ accountAddress })).derivedPrivateKey).toMatch(/^0x/)
    await vault.close()
  })

  it('vault.close() waits for a refresh in flight, so its new shares are written, not stranded', async () => {
    const raw = new FakeEvmWalletClient()
    const vault = await openVault()
    const client = vaulted(raw, vault)
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' })
    const refresh = raw.refreshWalletAccountShares.bind(raw)
    let returned = false
    raw.refreshWalletAccountShares = async (args) => {
      const out = await refresh(args)
      await new Promise((r) => setTimeout(r, 200))
      returned = true
      return out
    }
    const refreshing = client.refreshWalletAccountShares({ accountAddress })
    await new Promise((r) => setTimeout(r, 20))
    await vault.close()
    expect(returned).toBe(true)
    await expect(refreshing).resolves.toHaveProperty('walletMetadata')
  })

  it('refuses a wrapper call that starts while the vault is closing, before the SDK is called', async () => {
    const raw = new FakeEvmWalletClient()
    const vault = await openVault()
    const client = vaulted(raw, vault)
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' })
    const closing = vault.close()
    raw.calls.length = 0
    expect((await vaultError(client.refreshWalletAccountShares({ accountAddress }))).code).toBe('ERR_CLOSED')
    expect(raw.calls).toEqual([])
    await closing
  })

  it('BTC without addressType is the SDK\'s error, and nothing is stored', async () => {
    const { BTC } = fakeClients()
    const vault = await openVault()
    const client = vaulted(BTC, vault)
    await expect(client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' })).rejects.toThrow(/addressType/)
    expect(await vault.listWallets()).toEqual([])
    await vault.close()
  })

  it('types: the state parameters are the wrapper\'s, everything else is the client\'s own', async () => {
    const vault = await openVault()
    const client = vaulted(new FakeEvmWalletClient(), vault)
    const check = async (accountAddress: string, walletMetadata: WalletMetadata) => {
      // @ts-expect-error walletMetadata is supplied by the wrapper
      await client.signMessage({ accountAddress, message: 'x', walletMetadata })
      // @ts-expect-error message is required, as on the client
      await client.signMessage({ accountAddress })
      // @ts-expect-error a misspelt field is an error
      await client.signMessage({ accountAddress, mesage: 'x' })
    }
    expect(typeof check).toBe('function')
    await vault.close()
  })
})

const pg = backends().find((b) => b.name === 'postgres')
;(pg ? describe : describe.skip)('vaulted: when the database is gone after the SDK returned new state (PostgreSQL)', () => {
  /** Renames the vault's database away (its connections cut), and back. */
  async function outage(database: string) {
    const name = new URL(database).pathname.slice(1)
    const admin = new Client({ connectionString: process.env.SHAREVAULT_PG_ADMIN_URL })
    await admin.connect()
    await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [name])
    await admin.query(`ALTER DATABASE ${name} RENAME TO ${name}_away`)
    return async () => {
      await admin.query(`ALTER DATABASE ${name}_away RENAME TO ${name}`)
      await admin.end()
    }
  }

  it('a refresh throws ERR_UNPERSISTED_SHARES with the new shares sealed, and recoverSealed writes them once it is back', async () => {
    const database = await pg!.database()
    const vault = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key: newKey() } })
    const raw = new FakeEvmWalletClient()
    const client = vaulted(raw, vault, { persistDeadlineMs: 500 })
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' })
    // The hydrate happens, then the database goes away while the SDK refreshes.
    const refresh = raw.refreshWalletAccountShares.bind(raw)
    let back: (() => Promise<void>) | undefined
    raw.refreshWalletAccountShares = async (args) => {
      const out = await refresh(args)
      back = await outage(database)
      return out
    }
    const e = await client.refreshWalletAccountShares({ accountAddress }).catch((x: unknown) => x)
    expect(e).toBeInstanceOf(UnpersistedSharesError)
    const err = e as UnpersistedSharesError
    expect(err.code).toBe('ERR_UNPERSISTED_SHARES')
    expect(typeof err.sealed).toBe('string')
    expect(err.message).not.toMatch(/secretShare/)
    await back!()
    raw.refreshWalletAccountShares = refresh
    // The stored shares are the old ones, which no longer sign; recovery writes the new ones.
    await expect(client.signMessage({ accountAddress, message: 'x' })).rejects.toThrow(/not current/)
    await vault.recoverSealed(err.sealed as string)
    expect(typeof (await client.signMessage({ accountAddress, message: 'x' }))).toBe('string')
    await vault.close()
  })

  it('a new wallet whose store fails is sealed too, and recovered as a new wallet', async () => {
    const database = await pg!.database()
    const vault = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key: newKey() } })
    await vault.listWallets()
    const raw = new FakeEvmWalletClient()
    const client = vaulted(raw, vault, { persistDeadlineMs: 300 })
    const back = await outage(database)
    const e = (await client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' }).catch((x: unknown) => x)) as UnpersistedSharesError
    expect(e).toBeInstanceOf(UnpersistedSharesError)
    await back()
    const meta = await vault.recoverSealed(e.sealed as string)
    expect(meta.accountAddress).toBe(e.accountAddress)
    expect(typeof (await client.signMessage({ accountAddress: e.accountAddress, message: 'x' }))).toBe('string')
    // Recovering twice is harmless for a new wallet: the same wallet with the same shares.
    await expect(vault.recoverSealed(e.sealed as string)).resolves.toMatchObject({ walletId: meta.walletId })
    await vault.close()
  })
})
