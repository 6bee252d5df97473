import { createHook } from 'node:async_hooks'
import { existsSync } from 'node:fs'
import { dirname } from 'node:path'
import { runInNewContext } from 'node:vm'
import { Vault, VaultError } from '../lib'
import type { ServerKeyShare, WalletMetadata } from '../lib'
import { UnpersistedSharesError, vaulted } from '../lib/dynamic'
import {
  auditOf,
  containsShareOf,
  FakeBtcWalletClient,
  FakeEvmWalletClient,
  fakeClients,
  fakeCreatedWallet,
  findShares,
  hydrationsOf,
  MIN_FRAGMENT,
  openTestVault,
  SdkError,
  ShareFingerprints,
  sharevaultMatchers,
  TestVault,
} from '../lib/testing'
import '../lib/testing/jest'
import { newKey, vaultError } from './support/helpers'
import { instrument } from '../lib/testing/vault'
import { nativeOf } from '../lib/vault'

/** The stored state, read as a test would to call the raw client. */
async function stateOf(vault: Vault, accountAddress: string): Promise<{ walletMetadata: WalletMetadata; externalServerKeyShares: ServerKeyShare[] }> {
  return vault.withWallet(accountAddress, (w) => ({ walletMetadata: w.walletMetadata, externalServerKeyShares: w.externalServerKeyShares }), { purpose: 'test' })
}

/** A share's plaintext, for building leaks (the redacting inspect aside, the field is readable). */
function secretOf(share: ServerKeyShare): string {
  return share.secretShare
}

// The binding's own async resource (the threadsafe function that settles its promises) is
// released once no vault is open on the thread: jest --detectOpenHandles reports any resource
// not destroyed. Watched from the start of the file.
const created = new Set<number>()
const live = new Set<number>()
createHook({
  init(id, type) {
    if (type !== 'sharevault') return
    created.add(id)
    live.add(id)
  },
  destroy(id) {
    live.delete(id)
  },
}).enable()

describe('openTestVault', () => {
  it('is a real vault with every permission, in an environment named for tests', async () => {
    const vault = await openTestVault()
    expect(vault).toBeInstanceOf(Vault)
    expect(vault).toBeInstanceOf(TestVault)
    expect(vault.environment).toMatch(/^test-[0-9a-f]{8}$/)
    expect(vault.database).toBe(':memory:')
    const { walletMetadata } = fakeCreatedWallet('EVM')
    const created = fakeCreatedWallet('EVM')
    await vault.storeWallet(created)
    // Permissions Vault.open leaves out by default: export, delete, the audit and key admin.
    await vault.withWallet(created.walletMetadata.accountAddress, () => undefined, { purpose: 'export' })
    expect((await vault.verifyAuditChain()).brokenAt).toBeUndefined()
    await vault.deleteWallet(created.walletMetadata.accountAddress)
    // The same rules as a real vault: a bad input is refused with its code.
    expect((await vaultError(vault.storeWallet({ walletMetadata: { ...walletMetadata, accountAddress: '' }, externalServerKeyShares: [] }))).code).toBe('ERR_INVALID_INPUT')
    await vault.close()
    await vault.close()
    expect((await vaultError(vault.getMetadata(created.walletMetadata.accountAddress))).code).toBe('ERR_CLOSED')
  })

  it('takes allow, actor and cache as Vault.open does', async () => {
    const vault = await openTestVault({ allow: ['store', 'hydrate:sign', 'audit:read'], actor: 'svc' })
    const created = fakeCreatedWallet('SVM')
    await vault.storeWallet(created)
    expect((await vaultError(vault.deleteWallet(created.walletMetadata.accountAddress))).code).toBe('ERR_FORBIDDEN')
    expect((await auditOf(vault, { action: 'store' }))[0].actor).toBe('svc')
    await vault.close()
  })

  it.each(['prod', 'production', 'eu-prod', 'Live', 'prd_2', 'payments-production-1', 'production2', 'myprod'])('refuses the production-like environment %p', async (environment) => {
    const e = await vaultError(openTestVault({ environment }))
    expect(e.code).toBe('ERR_INVALID_INPUT')
    expect(e.path).toBe('environment')
  })

  it('refuses to open under NODE_ENV=production', async () => {
    const saved = process.env.NODE_ENV
    process.env.NODE_ENV = 'production'
    try {
      const e = await vaultError(openTestVault())
      expect([e.code, e.path]).toEqual(['ERR_INVALID_INPUT', 'NODE_ENV'])
    } finally {
      process.env.NODE_ENV = saved
    }
  })

  it('accepts a test environment name, and refuses options that would point it elsewhere', async () => {
    const vault = await openTestVault({ environment: 'ci-staging' })
    expect(vault.environment).toBe('ci-staging')
    await vault.close()
    for (const bad of [{ database: 'postgres://app@db/prod' }, { kms: { provider: 'local', key: Buffer.alloc(32) } }, { storage: 'disk' }]) {
      const e = await vaultError(openTestVault(bad as never))
      expect(e.code).toBe('ERR_INVALID_INPUT')
    }
  })

  it("storage: 'file' is removed by the last close, and reopen() is another handle on it", async () => {
    const vault = await openTestVault({ storage: 'file' })
    const dir = dirname(vault.database)
    expect(existsSync(vault.database)).toBe(true)
    const created = fakeCreatedWallet('BTC')
    await vault.storeWallet(created)
    const again = await vault.reopen({ actor: 'second' })
    expect(again.environment).toBe(vault.environment)
    expect((await again.getMetadata(created.walletMetadata.accountAddress)).walletId).toBe(created.walletMetadata.walletId)
    await vault.close()
    expect(existsSync(dir)).toBe(true)
    await again.close()
    expect(existsSync(dir)).toBe(false)
    expect((await vaultError(again.reopen())).code).toBe('ERR_CLOSED')
    const memory = await openTestVault()
    expect((await vaultError(memory.reopen())).code).toBe('ERR_INVALID_INPUT')
    await memory.close()
  })

  it('leaves no open handle after close() (what jest --detectOpenHandles looks for)', async () => {
    const before = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWRAP')
    for (const storage of ['memory', 'file'] as const) {
      const vault = await openTestVault({ storage, onAudit: () => undefined })
      const client = vaulted(new FakeEvmWalletClient(), vault)
      const { walletMetadata } = await client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' })
      await client.signMessage({ accountAddress: walletMetadata.accountAddress, message: 'm' })
      await vault.close()
    }
    for (let i = 0; i < 50 && live.size > 0; i++) await new Promise((r) => setTimeout(r, 20))
    expect(process.getActiveResourcesInfo().filter((r) => r !== 'TTYWRAP')).toEqual(before)
    // Seen since this file began (a call may reuse one an earlier test's last settlement turn left), and gone now.
    expect(created.size).toBeGreaterThan(0)
    expect(live.size).toBe(0)
  })

  it('two hundred test vaults opened and closed in one worker stay within 32 MiB of resident memory', async () => {
    const cycle = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const vault = await openTestVault({ storage: i % 4 === 0 ? 'file' : 'memory' })
        await vault.storeWallet(fakeCreatedWallet('EVM'))
        await vault.close()
      }
    }
    await cycle(20)
    const before = process.memoryUsage().rss
    await cycle(200)
    const grown = (process.memoryUsage().rss - before) / 1048576
    expect(grown).toBeLessThan(32)
  })
})

describe('reopen and close', () => {
  it('a reopen racing the close of the last handle keeps the files', async () => {
    for (let i = 0; i < 5; i++) {
      const vault = await openTestVault({ storage: 'file' })
      const created = fakeCreatedWallet('EVM')
      await vault.storeWallet(created)
      const opening = vault.reopen()
      await vault.close()
      const again = await opening
      expect(existsSync(again.database)).toBe(true)
      expect((await again.getMetadata(created.walletMetadata.accountAddress)).walletId).toBe(created.walletMetadata.walletId)
      await again.close()
      expect(existsSync(dirname(again.database))).toBe(false)
    }
  })
})

describe('failWrites', () => {
  it('remembers the shares of a write it failed, and refuses a bad code or count', async () => {
    const vault = await openTestVault()
    vault.failWrites()
    const created = fakeCreatedWallet('EVM')
    await vaultError(vault.storeWallet(created))
    expect(secretOf(created.externalServerKeyShares[0])).toContainShareOf(vault)
    for (const bad of [{ times: 1.5 }, { times: 0 }, { times: '2' }, { code: 'ERR_NOPE' }]) expect(() => vault.failWrites(bad as never)).toThrow(VaultError)
    await vault.close()
  })

  it('fails the writes with the code given and writes nothing; reads go on; the returned function ends it', async () => {
    const vault = await openTestVault()
    const a = fakeCreatedWallet('EVM')
    await vault.storeWallet(a)
    const end = vault.failWrites()
    const b = fakeCreatedWallet('EVM')
    expect((await vaultError(vault.storeWallet(b))).code).toBe('ERR_DB_UNAVAILABLE')
    expect((await vaultError(vault.deleteWallet(a.walletMetadata.accountAddress))).code).toBe('ERR_DB_UNAVAILABLE')
    expect((await vault.getMetadata(a.walletMetadata.accountAddress)).walletId).toBe(a.walletMetadata.walletId)
    end()
    expect((await vaultError(vault.getMetadata(b.walletMetadata.accountAddress))).code).toBe('ERR_NOT_FOUND')
    await vault.storeWallet(b)
    vault.failWrites({ code: 'ERR_KMS_UNAVAILABLE', times: 1 })
    expect((await vaultError(vault.deleteWallet(b.walletMetadata.accountAddress))).code).toBe('ERR_KMS_UNAVAILABLE')
    await vault.deleteWallet(b.walletMetadata.accountAddress)
    await vault.close()
  })

  it('drives the wrapper into ERR_UNPERSISTED_SHARES on a refresh; recoverSealed writes the new shares once writes work', async () => {
    const vault = await openTestVault()
    const raw = new FakeEvmWalletClient()
    const client = vaulted(raw, vault, { persistDeadlineMs: 100 })
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_THREE' })
    const end = vault.failWrites()
    const e = await client.refreshWalletAccountShares({ accountAddress }).catch((x: unknown) => x)
    expect(e).toBeInstanceOf(UnpersistedSharesError)
    const err = e as UnpersistedSharesError
    expect(err.code).toBe('ERR_UNPERSISTED_SHARES')
    expect(err.cause).toBeInstanceOf(VaultError)
    expect(err).not.toContainShareOf(vault, raw)
    end()
    // The vault still holds the old shares, which the SDK no longer accepts.
    await expect(client.signMessage({ accountAddress, message: 'x' })).rejects.toThrow(/not current/)
    await vault.recoverSealed(err.sealed as string)
    expect(typeof (await client.signMessage({ accountAddress, message: 'x' }))).toBe('string')
    await vault.close()
  })

  it('a write that fails a few times is retried by the wrapper, and the call succeeds', async () => {
    const vault = await openTestVault()
    const client = vaulted(new FakeEvmWalletClient(), vault, { persistDeadlineMs: 5000 })
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' })
    vault.failWrites({ times: 2 })
    await client.refreshWalletAccountShares({ accountAddress })
    expect(typeof (await client.signMessage({ accountAddress, message: 'x' }))).toBe('string')
    await vault.close()
  })
})

describe('the contract fakes', () => {
  it('refuse trimmed metadata, missing backup info, a stale scheme and BTC without addressType', async () => {
    const vault = await openTestVault()
    const raw = new FakeBtcWalletClient()
    const client = vaulted(raw, vault)
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO', addressType: 'native_segwit' })
    const state = await stateOf(vault, accountAddress)
    const typedOnly: WalletMetadata = {
      walletId: state.walletMetadata.walletId,
      accountAddress,
      chainName: state.walletMetadata.chainName,
      thresholdSignatureScheme: state.walletMetadata.thresholdSignatureScheme,
      derivationPath: state.walletMetadata.derivationPath,
      addressType: state.walletMetadata.addressType,
      externalServerKeySharesBackupInfo: state.walletMetadata.externalServerKeySharesBackupInfo,
    }
    await expect(raw.signMessage({ ...state, walletMetadata: typedOnly, message: 'm' })).rejects.toThrow(/trimmed/)
    const { externalServerKeySharesBackupInfo: _, ...noBackup } = state.walletMetadata
    await expect(raw.signMessage({ ...state, walletMetadata: noBackup as WalletMetadata, message: 'm' })).rejects.toThrow(/externalServerKeySharesBackupInfo/)
    const { addressType: __, ...noType } = state.walletMetadata
    await expect(raw.signMessage({ ...state, walletMetadata: noType as WalletMetadata, message: 'm' })).rejects.toThrow(/addressType/)
    await expect(raw.signMessage({ ...state, walletMetadata: { ...state.walletMetadata, thresholdSignatureScheme: 'TWO_OF_THREE' }, message: 'm' })).rejects.toThrow(/thresholdSignatureScheme/)
    await expect(raw.signMessage({ ...state, walletMetadata: { ...state.walletMetadata, walletId: 'other' }, message: 'm' })).rejects.toThrow(/walletId/)
    await expect(raw.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' })).rejects.toThrow(SdkError)
    await vault.close()
  })

  it('sign only with the current shares, deterministically, and updatePassword returns new backup info', async () => {
    const vault = await openTestVault()
    const raw = new FakeEvmWalletClient()
    const client = vaulted(raw, vault)
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' })
    const first = await client.signMessage({ accountAddress, message: 'same' })
    expect(await client.signMessage({ accountAddress, message: 'same' })).toBe(first)
    expect(await client.signMessage({ accountAddress, message: 'other' })).not.toBe(first)
    const old = await stateOf(vault, accountAddress)
    await client.refreshWalletAccountShares({ accountAddress })
    await expect(raw.signMessage({ ...old, message: 'same' })).rejects.toThrow(/not current/)
    const after = await client.signMessage({ accountAddress, message: 'same' })
    // The key is the same after a refresh: so is the signature.
    expect(after).toBe(first)
    const { backupInfo } = await client.updatePassword({ accountAddress, newPassword: 'pw' })
    expect(backupInfo.passwordEncrypted).toBe(true)
    expect((await vault.getMetadata(accountAddress)).externalServerKeySharesBackupInfo).toEqual(backupInfo)
    await expect(client.signMessage({ accountAddress, message: 'same' })).rejects.toThrow(/password/)
    expect(await client.signMessage({ accountAddress, message: 'same', password: 'pw' })).toBe(after)
    await vault.close()
  })

  it('failNext fails the next call of a method (or any), before the server changes anything', async () => {
    const vault = await openTestVault()
    const raw = new FakeEvmWalletClient()
    const client = vaulted(raw, vault)
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' })
    const signature = await client.signMessage({ accountAddress, message: 'm' })
    raw.failNext('refreshWalletAccountShares', new Error('upstream 503'))
    await client.signMessage({ accountAddress, message: 'm' })
    await expect(client.refreshWalletAccountShares({ accountAddress })).rejects.toThrow('upstream 503')
    // Nothing changed: the stored shares still sign, and the store was not touched.
    expect(await client.signMessage({ accountAddress, message: 'm' })).toBe(signature)
    expect(await auditOf(vault, { address: accountAddress, action: 'replace_shares' })).toEqual([])
    raw.failNext().failNext('signMessage')
    await expect(client.signMessage({ accountAddress, message: 'm' })).rejects.toThrow(SdkError)
    await expect(client.signMessage({ accountAddress, message: 'm' })).rejects.toThrow(/injected/)
    expect(await client.signMessage({ accountAddress, message: 'm' })).toBe(signature)
    await vault.close()
  })
})

describe('findShares', () => {
  it('finds a stored share whole, in part, in bytes, in base64 and hex, in errors and in collections; never quotes it', async () => {
    const vault = await openTestVault()
    const created = fakeCreatedWallet('EVM', { scheme: 'TWO_OF_THREE' })
    const address = created.walletMetadata.accountAddress
    const secret = secretOf(created.externalServerKeyShares[1])
    await vault.storeWallet(created)
    const fragment = secret.slice(1000, 1000 + MIN_FRAGMENT)
    const cases: [string, unknown][] = [
      ['the whole share in JSON', JSON.stringify({ walletMetadata: created.walletMetadata, shares: [{ secretShare: secret }] })],
      [`a ${MIN_FRAGMENT}-character piece in a log line`, `debug: state=${fragment}…`],
      ['its end', `…${secret.slice(-MIN_FRAGMENT)}`],
      ['bytes', Buffer.from(`x${fragment}y`)],
      ['a Uint8Array', new TextEncoder().encode(fragment)],
      ['base64', Buffer.from(JSON.stringify({ s: fragment })).toString('base64')],
      ['base64url', Buffer.from(fragment).toString('base64url')],
      ['hex', Buffer.from(fragment).toString('hex')],
      ['an error message', new Error(`failed with ${fragment}`)],
      ['an error cause', new Error('outer', { cause: { body: fragment } })],
      ['a Map value', new Map([['k', { deep: [fragment] }]])],
      ['a Set', new Set([fragment])],
      ['an object key', { [fragment]: 1 }],
    ]
    for (const [what, value] of cases) {
      const found = findShares(value, vault)
      // An error's message is in its stack too: one sighting per place.
      expect({ what, found: [...new Set(found.map((f) => `${f.wallet}/${f.share}`))] }).toEqual({ what, found: [`${address}/1`] })
      expect(JSON.stringify(found)).not.toContain(secret.slice(0, 16))
    }
    expect(findShares({ a: { b: [`x${fragment}`] } }, vault)[0].path).toBe('$.a.b[0]')
    // Too short a piece, other text, metadata and another wallet's share: nothing.
    expect(containsShareOf(secret.slice(0, 31), vault)).toBe(false)
    expect(containsShareOf(created.walletMetadata, vault)).toBe(false)
    expect(containsShareOf(secretOf(fakeCreatedWallet('EVM').externalServerKeyShares[0]), vault)).toBe(false)
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    expect(containsShareOf(cyclic, vault)).toBe(false)
    expect(() => findShares('x')).toThrow(TypeError)
    expect(() => findShares('x', {} as never)).toThrow(/share source/)
    await vault.close()
  })

  it('knows the shares the wrapper wrote, sealed and hydrated, and those a fake client handed out', async () => {
    const vault = await openTestVault()
    const clients = fakeClients()
    const client = vaulted(clients.SVM, vault)
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' })
    const before = await stateOf(vault, accountAddress)
    await client.reshare({ accountAddress, oldThresholdSignatureScheme: 'TWO_OF_TWO', newThresholdSignatureScheme: 'THREE_OF_FIVE' })
    const after = await stateOf(vault, accountAddress)
    expect(after.externalServerKeyShares).toHaveLength(3)
    for (const s of [...before.externalServerKeyShares, ...after.externalServerKeyShares]) {
      expect(s.secretShare).toContainShareOf(vault)
      expect(s.secretShare).toContainShareOf(clients.SVM)
    }
    // A wallet stored by another handle is known once this one hydrates it.
    const file = await openTestVault({ storage: 'file' })
    const other = await file.reopen()
    const created = fakeCreatedWallet('TON')
    await other.storeWallet(created)
    expect(secretOf(created.externalServerKeyShares[0])).not.toContainShareOf(vault)
    await file.withWallet(created.walletMetadata.accountAddress, () => undefined)
    expect(secretOf(created.externalServerKeyShares[0])).toContainShareOf(file)
    await Promise.all([vault.close(), file.close(), other.close()])
  })

  it("toContainShareOf's message names the wallet and the place, never the value", () => {
    const created = fakeCreatedWallet('EVM')
    const raw = new FakeEvmWalletClient()
    return raw.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' }).then((w) => {
      const leaked = { log: [`shares=${JSON.stringify(w.externalServerKeyShares)}`] }
      const r = sharevaultMatchers.toContainShareOf.call({ isNot: true }, leaked, raw)
      expect(r.pass).toBe(true)
      const message = r.message()
      expect(message).toContain(w.walletMetadata.accountAddress)
      expect(message).toContain('$.log[0]')
      expect(message).not.toContain(w.externalServerKeyShares[0].secretShare.slice(0, 16))
      expect(created).not.toContainShareOf(raw)
    })
  })
})

describe('findShares, where the review found it blind or fragile', () => {
  it('reads odd values without throwing, and finds shares in them', async () => {
    const vault = await openTestVault()
    const created = fakeCreatedWallet('EVM')
    await vault.storeWallet(created)
    const secret = secretOf(created.externalServerKeyShares[0])
    const piece = secret.slice(500, 600)
    const revoked = Proxy.revocable({}, {})
    revoked.revoke()
    const throwing = new Proxy({}, { ownKeys: () => { throw new Error('trap') }, getPrototypeOf: () => { throw new Error('trap') } })
    // A run longer than a regex engine's stack allows (8 million characters), and bytes.
    const huge = 'A'.repeat(8_000_000)
    for (const v of [revoked.proxy, throwing, huge, Buffer.alloc(2_000_000, 65)]) expect(() => findShares(v, vault)).not.toThrow()
    let deep: unknown = { leak: piece }
    for (let i = 0; i < 10_000; i++) deep = { next: deep }
    const foreignMap = runInNewContext('new Map([["k", piece]])', { piece })
    const foreignSet = runInNewContext('new Set([piece])', { piece })
    const sym = Symbol('s')
    const cases: [string, unknown][] = [
      ['base64 after other characters of its alphabet', `id_${Buffer.from(piece).toString('base64')}`],
      ['base64 that starts mid-way', Buffer.from(`xy${piece}`).toString('base64').slice(2)],
      ['hex after a hex digit', `a${Buffer.from(piece).toString('hex')}`],
      ['a Map from another realm', foreignMap],
      ['a Set from another realm', foreignSet],
      ['a URL', new URL(`https://example.com/?state=${piece}`)],
      ['URLSearchParams', new URLSearchParams({ state: piece })],
      ['Headers', new Headers({ 'x-state': piece })],
      ['a symbol-keyed field', { [sym]: piece }],
      ['a boxed string', new String(piece)],
      ['10,000 levels deep', deep],
      ['after a long run', `${'A'.repeat(1_000_000)}${piece}`],
    ]
    for (const [what, value] of cases) expect({ what, found: containsShareOf(value, vault) }).toEqual({ what, found: true })
    await vault.close()
  })

  it('the binding\'s hydrate (a promise from the main realm, not jest\'s) teaches the kit the shares', async () => {
    const key = newKey()
    const plain = await Vault.open({ database: ':memory:', environment: 'test', kms: { provider: 'local', key } })
    const created = fakeCreatedWallet('TON')
    await plain.storeWallet(created)
    const registry = new ShareFingerprints()
    const seen = instrument(nativeOf(plain), registry, {})
    expect(registry.size).toBe(0)
    await seen.hydrate(created.walletMetadata.accountAddress, 'sign', undefined)
    expect(containsShareOf(secretOf(created.externalServerKeyShares[0]), registry)).toBe(true)
    await plain.close()
  })

  it('a source from another copy of the kit (jest.resetModules) is still a source', async () => {
    const vault = await openTestVault()
    const created = fakeCreatedWallet('EVM')
    await vault.storeWallet(created)
    let other: typeof import('../lib/testing') | undefined
    jest.isolateModules(() => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      other = require('../lib/testing') as typeof import('../lib/testing')
    })
    expect(other!.findShares).not.toBe(findShares)
    expect(other!.containsShareOf(secretOf(created.externalServerKeyShares[0]), vault)).toBe(true)
    await vault.close()
  })
})

describe('auditOf, hydrationsOf and toHaveAudited', () => {
  it('count what the service did, by purpose, actor and outcome', async () => {
    const vault = await openTestVault({ allow: ['store', 'hydrate:sign', 'replace', 'backup', 'audit:read'] })
    const client = vaulted(new FakeEvmWalletClient(), vault, { actor: 'payments' })
    const { walletMetadata: { accountAddress } } = await client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' })
    await client.signMessage({ accountAddress, message: 'a' })
    await client.signTransaction({ accountAddress, transaction: { to: '0x0', value: 1 } })
    await client.refreshWalletAccountShares({ accountAddress })
    await expect(client.exportPrivateKey({ accountAddress })).rejects.toMatchObject({ code: 'ERR_FORBIDDEN' })
    await vault.withWallet(accountAddress, () => undefined, { purpose: 'sign', actor: 'cron' })
    const h = await hydrationsOf(vault, { address: accountAddress })
    expect(h.byPurpose).toEqual({ sign: 3, refresh: 1, export: 1 })
    expect(h.byActor).toEqual({ payments: 4, cron: 1 })
    expect(h.byOutcome).toEqual({ ok: 4, denied: 1 })
    expect((await hydrationsOf(vault, { actor: 'cron' })).total).toBe(1)
    await expect(vault).toHaveAudited({ address: accountAddress, action: 'hydrate', purpose: 'sign', actor: 'payments', times: 2 })
    await expect(vault).toHaveAudited({ address: accountAddress, action: 'replace_shares' })
    await expect(vault).not.toHaveAudited({ address: accountAddress, action: 'hydrate', purpose: 'export', outcome: 'ok' })
    const miss = await sharevaultMatchers.toHaveAudited.call({}, vault, { address: accountAddress, action: 'delete' })
    expect(miss.pass).toBe(false)
    expect(miss.message()).toMatch(/expected an audit row matching \{ address: .*, action: "delete" \}, found 0\nthe last rows of the wallet:\n/)
    expect(miss.message()).toContain('hydrate (export) by payments: denied')
    await vault.close()
  })

  it('auditOf pages through more rows than one read returns', async () => {
    const vault = await openTestVault({ cache: false })
    const created = fakeCreatedWallet('EVM')
    await vault.storeWallet(created)
    for (let i = 0; i < 1005; i++) await vault.withWallet(created.walletMetadata.accountAddress, () => undefined, { purpose: i % 2 ? 'sign' : 'backup' })
    expect((await hydrationsOf(vault)).byPurpose).toEqual({ sign: 502, backup: 503 })
    await vault.close()
  })
})
