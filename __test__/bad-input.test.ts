import { Vault } from '../lib'
import type { CreatedWallet } from '../lib'
import { backupInfoWithExternal, fakeCreatedWallet, fakeShares } from '../lib/testing'
import { backends, cleanup, newKey, openOn, vaultError, withoutKeyring } from './support/helpers'
import { vaulted } from '../lib/dynamic'
import { fakeClients } from '../lib/testing'

describe.each(backends())('on $name', (backend) => {
  let vault: Vault
  beforeEach(async () => {
    vault = await openOn(backend)
  })
  afterEach(async () => {
    await vault.close()
    cleanup()
  })

  /** Nothing was written: no wallet, and no audit row (but the keyring's registration at open). */
  async function expectNothingWritten(): Promise<void> {
    expect(await vault.listWallets()).toEqual([])
    expect(withoutKeyring(await vault.auditLog())).toEqual([])
  }

  type Mutate = (c: CreatedWallet & Record<string, unknown>) => void
  const del = (field: string): Mutate => (c) => { delete (c.walletMetadata as Record<string, unknown>)[field] }
  const set = (field: string, v: unknown): Mutate => (c) => { (c.walletMetadata as Record<string, unknown>)[field] = v }

  const cases: [string, Mutate, string, Parameters<typeof fakeCreatedWallet>?][] = [
    ['walletId is missing', del('walletId'), 'walletMetadata.walletId'],
    ['walletId is not a string', set('walletId', 42), 'walletMetadata.walletId'],
    ['accountAddress is missing', del('accountAddress'), 'walletMetadata.accountAddress'],
    ['accountAddress is not a string', set('accountAddress', { a: 1 }), 'walletMetadata.accountAddress'],
    ['accountAddress is empty', set('accountAddress', ''), 'walletMetadata.accountAddress'],
    ['chainName is missing', del('chainName'), 'walletMetadata.chainName'],
    ['chainName is not a string', set('chainName', ['EVM']), 'walletMetadata.chainName'],
    ['thresholdSignatureScheme is missing', del('thresholdSignatureScheme'), 'walletMetadata.thresholdSignatureScheme'],
    ['thresholdSignatureScheme is not a string', set('thresholdSignatureScheme', 2), 'walletMetadata.thresholdSignatureScheme'],
    ['thresholdSignatureScheme is unknown', set('thresholdSignatureScheme', 'ONE_OF_ONE'), 'walletMetadata.thresholdSignatureScheme'],
    ['a BTC wallet has no addressType', del('addressType'), 'walletMetadata.addressType', ['BTC']],
    ['a BTC wallet has an unknown addressType', set('addressType', 'legacy'), 'walletMetadata.addressType', ['BTC']],
    ['externalServerKeySharesBackupInfo is missing', del('externalServerKeySharesBackupInfo'), 'walletMetadata.externalServerKeySharesBackupInfo'],
    ['externalServerKeySharesBackupInfo is not an object', set('externalServerKeySharesBackupInfo', 'none'), 'walletMetadata.externalServerKeySharesBackupInfo'],
    ['derivationPath is not a string', set('derivationPath', { 0: 44 }), 'walletMetadata.derivationPath'],
    ['walletMetadata is missing', (c) => { delete (c as Record<string, unknown>).walletMetadata }, 'walletMetadata'],
    ['walletMetadata is not an object', (c) => { (c as Record<string, unknown>).walletMetadata = 'meta' }, 'walletMetadata'],
    ['externalServerKeyShares is missing', (c) => { delete (c as Record<string, unknown>).externalServerKeyShares }, 'externalServerKeyShares'],
    ['externalServerKeyShares is not an array', (c) => { (c as Record<string, unknown>).externalServerKeyShares = { 0: 'x' } }, 'externalServerKeyShares'],
    ['2/2 with two shares', (c) => { c.externalServerKeyShares = fakeShares('EVM', 2) }, 'externalServerKeyShares'],
    ['2/2 with no shares', (c) => { c.externalServerKeyShares = [] }, 'externalServerKeyShares'],
    ['2/3 with one share', (c) => { c.externalServerKeyShares = fakeShares('EVM', 1) }, 'externalServerKeyShares', ['EVM', { scheme: 'TWO_OF_THREE' }]],
    ['3/5 with two shares', (c) => { c.externalServerKeyShares = fakeShares('EVM', 2) }, 'externalServerKeyShares', ['EVM', { scheme: 'THREE_OF_FIVE' }]],
    ['3/5 with five shares', (c) => { c.externalServerKeyShares = fakeShares('EVM', 5) }, 'externalServerKeyShares', ['EVM', { scheme: 'THREE_OF_FIVE' }]],
    ['a share has no secretShare', (c) => { delete (c.externalServerKeyShares[0] as unknown as Record<string, unknown>).secretShare }, 'externalServerKeyShares[0].secretShare'],
    ['a secretShare is a number', (c) => { (c.externalServerKeyShares[0] as unknown as Record<string, unknown>).secretShare = 12345 }, 'externalServerKeyShares[0].secretShare'],
    ['a secretShare is a Uint8Array', (c) => { (c.externalServerKeyShares[1] as unknown as Record<string, unknown>).secretShare = new Uint8Array(4) }, 'externalServerKeyShares[1].secretShare', ['EVM', { scheme: 'TWO_OF_THREE' }]],
    ['a secretShare is empty', (c) => { c.externalServerKeyShares[0].secretShare = '' }, 'externalServerKeyShares[0].secretShare'],
    ['a share is a string', (c) => { (c.externalServerKeyShares as unknown[])[0] = 'share' }, 'externalServerKeyShares[0]'],
    ['a share holds a function', (c) => { (c.externalServerKeyShares[0] as unknown as Record<string, unknown>).f = () => 1 }, 'externalServerKeyShares[0].f'],
    ['a share holds a bigint', (c) => { (c.externalServerKeyShares[0] as unknown as Record<string, unknown>).n = 1n }, 'externalServerKeyShares[0].n'],
    ['a share holds a Float32Array', (c) => { (c.externalServerKeyShares[0] as unknown as Record<string, unknown>).pubkey = new Float32Array(2) }, 'externalServerKeyShares[0].pubkey'],
    ['a share holds a Map', (c) => { (c.externalServerKeyShares[0] as unknown as Record<string, unknown>).m = new Map([[1, 2]]) }, 'externalServerKeyShares[0].m'],
    ['a share holds a Set', (c) => { (c.externalServerKeyShares[0] as unknown as Record<string, unknown>).s = new Set([1]) }, 'externalServerKeyShares[0].s'],
    ['a share holds a Uint8ClampedArray', (c) => { (c.externalServerKeyShares[0] as unknown as Record<string, unknown>).pubkey = new Uint8ClampedArray(2) }, 'externalServerKeyShares[0].pubkey'],
    ['a share has an own __proto__ field', (c) => { Object.defineProperty(c.externalServerKeyShares[0], '__proto__', { value: { x: 1 }, enumerable: true }) }, 'externalServerKeyShares[0]'],
    ['the metadata holds a BigInt', set('big', 1n), 'walletMetadata'],
    ['a share holds a Date', (c) => { (c.externalServerKeyShares[0] as unknown as Record<string, unknown>).at = new Date() }, 'externalServerKeyShares[0].at'],
    // Values that would not come back exactly as they went in (issue 7, item 4).
    ['a secretShare holds a lone surrogate', (c) => { c.externalServerKeyShares[0].secretShare = 'abc\ud800def' }, 'externalServerKeyShares[0].secretShare'],
    ['a secretShare ends in a lone high surrogate', (c) => { c.externalServerKeyShares[0].secretShare = 'abc\ud83d' }, 'externalServerKeyShares[0].secretShare'],
    ['a share field name holds a lone surrogate', (c) => { const s = c.externalServerKeyShares[0] as unknown as Record<string, unknown>; s['\ud800'] = 1; s['\udc00'] = 2 }, 'externalServerKeyShares[0]'],
    ['a share holds a boxed number', (c) => { (c.externalServerKeyShares[0] as unknown as Record<string, unknown>).n = new Number(5) }, 'externalServerKeyShares[0].n'],
    ['a share holds a boxed string', (c) => { (c.externalServerKeyShares[0] as unknown as Record<string, unknown>).s = new String('xy') }, 'externalServerKeyShares[0].s'],
    ['a share holds a boxed boolean', (c) => { (c.externalServerKeyShares[0] as unknown as Record<string, unknown>).b = new Boolean(false) }, 'externalServerKeyShares[0].b'],
    ['a share holds an Error', (c) => { (c.externalServerKeyShares[0] as unknown as Record<string, unknown>).e = new Error('x') }, 'externalServerKeyShares[0].e'],
    ['a share holds an arguments object', (c) => { (c.externalServerKeyShares[0] as unknown as Record<string, unknown>).a = (function (..._x: unknown[]) { return arguments })(1, 2) }, 'externalServerKeyShares[0].a'],
    ['a share holds a RegExp', (c) => { (c.externalServerKeyShares[0] as unknown as Record<string, unknown>).r = /x/ }, 'externalServerKeyShares[0].r'],
    ['a share holds an ArrayBuffer', (c) => { (c.externalServerKeyShares[0] as unknown as Record<string, unknown>).ab = new ArrayBuffer(4) }, 'externalServerKeyShares[0].ab'],
    ['a share refers to itself', (c) => { const s = c.externalServerKeyShares[0] as unknown as Record<string, unknown>; s.self = s }, 'externalServerKeyShares[0]'],
    ['the shares are larger than 1 MiB', (c) => { c.externalServerKeyShares[0].secretShare = 'A'.repeat(1024 * 1024 + 1) }, 'externalServerKeyShares'],
    ['the metadata holds a lone surrogate', set('note', 'x\ud800'), 'walletMetadata'],
    ['the metadata is larger than 1 MiB', set('padding', 'B'.repeat(1024 * 1024 + 1)), 'walletMetadata'],
    ['the result names another accountAddress than its metadata', (c) => { c.accountAddress = '0x' + '2'.repeat(40) }, 'walletMetadata.accountAddress'],
  ]

  describe('storeWallet refuses bad input with ERR_INVALID_INPUT and a path, and writes nothing', () => {
    // Every row gets all four columns: jest takes a missing last one for a `done` callback.
    const rows = cases.map(([n, m, p, a]) => [n, m, p, a ?? ['EVM']] as const)
    it.each(rows)('when %s', async (_name, mutate, path, args) => {
      const created = fakeCreatedWallet(...(args as Parameters<typeof fakeCreatedWallet>)) as CreatedWallet & Record<string, unknown>
      mutate(created)
      const e = await vaultError(vault.storeWallet(created))
      expect(e.code).toBe('ERR_INVALID_INPUT')
      expect(e.path === path || (e.path ?? '').startsWith(path)).toBe(true)
      expect(e.name).toBe('VaultError')
      await expectNothingWritten()
    })

    it('never puts share material in the error', async () => {
      const created = fakeCreatedWallet('EVM', { scheme: 'TWO_OF_THREE' })
      const secret = created.externalServerKeyShares[0].secretShare
      created.externalServerKeyShares.pop()
      const e = await vaultError(vault.storeWallet(created))
      for (const text of [e.message, e.stack ?? '', JSON.stringify(e), String(e)]) expect(text).not.toContain(secret.slice(0, 24))
    })

    it('keeps a real U+FFFD, and objects without a prototype, exactly as they were', async () => {
      const created = fakeCreatedWallet('EVM')
      const share = created.externalServerKeyShares[0] as unknown as Record<string, unknown>
      share.secretShare = `${created.externalServerKeyShares[0].secretShare}\ufffd\u{1f600}`
      share['\ufffd'] = 'replacement'
      const bare = Object.create(null) as Record<string, unknown>
      bare.k = 'v'
      share.bare = bare
      await vault.storeWallet(created)
      const back = await vault.withWallet(created.walletMetadata.accountAddress, (w) => ({ ...(w.externalServerKeyShares[0] as unknown as Record<string, unknown>) }))
      expect(back.secretShare).toBe(share.secretShare)
      expect(back['\ufffd']).toBe('replacement')
      expect(back.bare).toEqual({ k: 'v' })
    })

    it('refuses an address, actor or purpose with a lone surrogate instead of changing it', async () => {
      const created = fakeCreatedWallet('EVM')
      expect((await vaultError(vault.storeWallet(created, { actor: 'ops\ud800' }))).path).toBe('actor')
      await expectNothingWritten()
      await vault.storeWallet(created)
      const a = created.walletMetadata.accountAddress
      expect((await vaultError(vault.getMetadata(`${a}\udc00`))).path).toBe('address')
      expect((await vaultError(vault.withWallet(a, () => 1, { purpose: 'sign\udfff' }))).path).toBe('purpose')
    })

    it('accepts a created wallet without a top-level accountAddress, and one whose top-level address differs only in EVM case', async () => {
      const created = fakeCreatedWallet('EVM') as CreatedWallet & Record<string, unknown>
      created.accountAddress = created.walletMetadata.accountAddress.toLowerCase()
      await vault.storeWallet(created)
    })
  })

  describe('the other calls refuse bad input and change nothing', () => {
    let address: string
    beforeEach(async () => {
      const created = fakeCreatedWallet('EVM')
      address = created.walletMetadata.accountAddress
      await vault.storeWallet(created)
    })

    async function unchanged(): Promise<void> {
      const rows = withoutKeyring(await vault.auditLog())
      expect(rows.map((r) => r.action)).toEqual(['store'])
    }

    it.each([
      ['address is not a string', () => vault.getMetadata(42 as unknown as string), 'address'],
      ['address is empty', () => vault.withWallet('', () => 1), 'address'],
      ['fn is not a function', () => vault.withWallet(address, 'sign' as unknown as () => void), 'fn'],
      ['purpose is not a string', () => vault.withWallet(address, () => 1, { purpose: 7 as unknown as string }), 'purpose'],
      ['backupInfo is missing', () => vault.mergeBackupInfo(address, undefined as never), 'backupInfo'],
      ['backupInfo.backups is not an object', () => vault.mergeBackupInfo(address, { passwordEncrypted: false, backups: [] as never }), 'backupInfo.backups'],
      ['backupInfo.passwordEncrypted is not a boolean', () => vault.mergeBackupInfo(address, { passwordEncrypted: 'no' as never, backups: {} }), 'backupInfo.passwordEncrypted'],
      ['replacement shares are missing', () => vault.replaceShares(address, { backupInfo: backupInfoWithExternal() } as never), 'externalServerKeyShares'],
      ['replacement backupInfo is missing', () => vault.replaceShares(address, { externalServerKeyShares: fakeShares('EVM', 1) } as never), 'backupInfo'],
      ['replacement scheme is unknown', () => vault.replaceShares(address, { externalServerKeyShares: fakeShares('EVM', 1), backupInfo: backupInfoWithExternal(), thresholdSignatureScheme: 'FOUR_OF_FOUR' as never }), 'thresholdSignatureScheme'],
      ['replacement share count does not match', () => vault.replaceShares(address, { externalServerKeyShares: fakeShares('EVM', 2), backupInfo: backupInfoWithExternal() }), 'externalServerKeyShares'],
      ['replacement secretShare is not a string', () => vault.replaceShares(address, { externalServerKeyShares: [{ pubkey: new Uint8Array(1), secretShare: null as never }], backupInfo: backupInfoWithExternal() }), 'externalServerKeyShares[0].secretShare'],
    ])('when %s', async (_name, run, path) => {
      const e = await vaultError((run as () => Promise<unknown>)())
      expect(e.code).toBe('ERR_INVALID_INPUT')
      expect(e.path).toBe(path)
      await unchanged()
    })
  })
})

describe('getters and Proxy traps that throw, and revoked Proxies', () => {
  const boom = (): never => {
    throw new Error('boom')
  }
  const revoked = (): object => {
    const r = Proxy.revocable({}, {})
    r.revoke()
    return r.proxy
  }
  const trap = (): object => new Proxy({}, { get: boom, ownKeys: boom, getOwnPropertyDescriptor: boom, has: boom })

  it('are ERR_INVALID_INPUT with the path of what could not be read, in options and inputs alike, and nothing is written', async () => {
    const key = newKey()
    const opts = (extra: Record<string, unknown>) => ({ database: ':memory:', environment: 'test', kms: { provider: 'local', key }, ...extra })
    const vault = await Vault.open(opts({}) as never)
    const w = fakeCreatedWallet('EVM')
    const a = w.walletMetadata.accountAddress
    const cases: [string, () => Promise<unknown>, string][] = [
      ['a getter on an option', () => Vault.open({ ...opts({}), get database(): string { return boom() } } as never), 'database'],
      ['revoked options', () => Vault.open(revoked() as never), 'options'],
      ['a trapping kms', () => Vault.open(opts({ kms: trap() }) as never), 'kms.provider'],
      ['a getter in cache', () => Vault.open(opts({ cache: { get maxEntries(): number { return boom() } } }) as never), 'cache.maxEntries'],
      ['a revoked wallet', () => vault.storeWallet(revoked() as never), 'created'],
      ['a getter on walletMetadata', () => vault.storeWallet({ ...w, get walletMetadata(): never { return boom() } } as never), 'walletMetadata'],
      ['revoked shares', () => vault.storeWallet({ ...w, externalServerKeyShares: revoked() } as never), 'externalServerKeyShares'],
      ['a revoked share', () => vault.storeWallet({ ...w, externalServerKeyShares: [revoked()] } as never), 'externalServerKeyShares[0]'],
      ['a trapping share', () => vault.storeWallet({ ...w, externalServerKeyShares: [trap()] } as never), 'externalServerKeyShares[0]'],
      ['a getter on secretShare', () => vault.storeWallet({ ...w, externalServerKeyShares: [{ get secretShare(): string { return boom() } }] } as never), 'externalServerKeyShares[0].secretShare'],
      ['a getter in the metadata', () => vault.storeWallet({ ...w, walletMetadata: { ...w.walletMetadata, get extra(): never { return boom() } } }), 'walletMetadata'],
      ['a getter on withWallet options', () => vault.withWallet(a, () => 1, { get purpose(): string { return boom() } }), 'purpose'],
      ['revoked backup info', () => vault.mergeBackupInfo(a, revoked() as never), 'backupInfo'],
      ['revoked replace input', () => vault.replaceShares(a, revoked() as never), 'input'],
      ['a getter on list options', () => vault.listWallets({ get limit(): number { return boom() } }), 'limit'],
      ['a revoked checkpoint', () => vault.verifyAuditChain({ since: revoked() as never }), 'since'],
      ['revoked delete options', () => vault.deleteWallet(a, revoked() as never), 'actor'],
      ['revoked SDK arguments', () => vaulted(fakeClients().EVM, vault).signMessage(revoked() as never), 'args'],
      ['a getter in SDK arguments', () => vaulted(fakeClients().EVM, vault).createWalletAccount({ get thresholdSignatureScheme(): never { return boom() } } as never), 'args'],
    ]
    for (const [what, run, path] of cases) {
      const e = await vaultError(run())
      expect([what, e.code, e.path]).toEqual([what, 'ERR_INVALID_INPUT', path])
      expect(e.message).not.toMatch(/boom/)
    }
    expect(await vault.listWallets()).toEqual([])
    await vault.close()
  })
})

describe('Vault.open refuses bad options', () => {
  it.each([
    ['a 31-byte key', { key: newKey().subarray(0, 31) }, 'kms.key'],
    ['a 33-byte key', { key: Buffer.concat([newKey(), Buffer.from([1])]) }, 'kms.key'],
    ['a base64 key of 16 bytes', { key: newKey().subarray(0, 16).toString('base64') }, 'kms.key'],
    ['a key that is not base64', { key: '!'.repeat(44) }, 'kms.key'],
    ['a key that is a number', { key: 5 }, 'kms.key'],
    ['an unknown provider', { provider: 'vault' }, 'kms.provider'],
  ])('%s', async (_name, kms, path) => {
    const e = await vaultError(Vault.open({ database: ':memory:', environment: 'test', kms: { provider: 'local', key: newKey(), ...kms } as never }))
    expect(e.code).toBe('ERR_INVALID_INPUT')
    expect(e.path).toBe(path)
  })

  it('accepts a 32-byte key as base64', async () => {
    const v = await Vault.open({ database: ':memory:', environment: 'test', kms: { provider: 'local', key: newKey().toString('base64') } })
    await v.close()
  })

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['blank', '   '],
    ['not a string', 3],
  ])('refuses an environment that is %s', async (_name, environment) => {
    const e = await vaultError(Vault.open({ database: ':memory:', environment: environment as never, kms: { provider: 'local', key: newKey() } }))
    expect(e.code).toBe('ERR_INVALID_INPUT')
    expect(e.path).toBe('environment')
  })

  it('refuses a missing database', async () => {
    const e = await vaultError(Vault.open({ database: '', environment: 'test', kms: { provider: 'local', key: newKey() } }))
    expect(e.path).toBe('database')
  })
})
