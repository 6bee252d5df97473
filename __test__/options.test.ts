import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { ErrorCode, Vault } from '../lib'
import type { OpenOptions } from '../lib'
import { nativeErrorCodes } from '../index'
import { fakeCreatedWallet } from '../lib/testing'
import { cleanup, newKey, openMemory, tempDir, vaultError } from './support/helpers'

afterEach(cleanup)

function local(database: string, extra: Partial<OpenOptions> = {}): OpenOptions {
  return { database, environment: 'test', kms: { provider: 'local', key: newKey() }, ...extra }
}

/** Sets `Object.prototype[key]` for the duration of `fn` (a careless deep merge, simulated). */
async function withPollution<T>(values: Record<string, unknown>, fn: () => Promise<T>): Promise<T> {
  const proto = Object.prototype as Record<string, unknown>
  for (const [k, v] of Object.entries(values)) {
    Object.defineProperty(proto, k, { value: v, configurable: true, writable: true, enumerable: false })
  }
  try {
    return await fn()
  } finally {
    for (const k of Object.keys(values)) delete proto[k]
  }
}

describe('the database option', () => {
  it.each([
    ['file::memory:'],
    ['file:vault.db'],
    ['FILE:vault.db'],
    ['file:///tmp/vault.db'],
    ['sqlite://file:vault.db'],
    ['sqlite://vault.db?mode=memory'],
    ['mysql://localhost/wallets'],
  ])('refuses %s instead of storing into a database nobody reads again', async (database) => {
    const dir = tempDir()
    const cwd = process.cwd()
    process.chdir(dir)
    try {
      const e = await vaultError(Vault.open(local(database)))
      expect(e.code).toBe('ERR_INVALID_INPUT')
      expect(e.path).toBe('database')
      // Nothing was created: no decoy file, no database.
      expect(readdirSync(dir)).toEqual([])
    } finally {
      process.chdir(cwd)
    }
  })

  it.each([['sqlite://'], ['plain']])('creates the database, its WAL and its shared memory with mode 0600 (%s spelling)', async (spelling) => {
    const dir = tempDir()
    const path = join(dir, 'vault.db')
    const database = spelling === 'plain' ? path : `sqlite://${path}`
    const vault = await Vault.open(local(database))
    await vault.storeWallet(fakeCreatedWallet('EVM'))
    const files = readdirSync(dir).sort()
    expect(files).toEqual(['vault.db', 'vault.db-shm', 'vault.db-wal'])
    for (const f of files) expect([f, statSync(join(dir, f)).mode & 0o777]).toEqual([f, 0o600])
    await vault.close()
  })

  it('keeps what a relative path stored in the same file after the process changes directory', async () => {
    const dir = tempDir()
    const cwd = process.cwd()
    process.chdir(dir)
    let vault: Vault
    try {
      vault = await Vault.open(local('rel.db'))
    } finally {
      process.chdir(cwd)
    }
    const created = fakeCreatedWallet('SVM')
    await vault.storeWallet(created)
    // Point reads use reader connections opened later: they must find the same file.
    expect(await vault.getMetadata(created.walletMetadata.accountAddress)).toEqual(created.walletMetadata)
    expect(readdirSync(process.cwd())).not.toContain('rel.db')
    await vault.close()
  })
})

describe('options read through Object.prototype', () => {
  it('never take the actor or purpose from a polluted prototype', async () => {
    const vault = await openMemory({ actor: 'payments-api' })
    const created = fakeCreatedWallet('EVM')
    await vault.storeWallet(created)
    const address = created.walletMetadata.accountAddress
    await withPollution({ actor: 'mallory', purpose: 'reconcile' }, async () => {
      await vault.withWallet(address, () => undefined)
      await vault.withWallet(address, () => undefined, {})
    })
    const rows = await vault.auditLog({ address })
    const hydrates = rows.filter((r) => r.action === 'hydrate')
    expect(hydrates).toHaveLength(2)
    for (const r of hydrates) {
      expect(r.actor).toBe('payments-api')
      expect(r.purpose).toBeUndefined()
    }
    await vault.close()
  })

  it('never take an AWS endpoint, region or credentials from a polluted prototype', async () => {
    // A polluted https endpoint would be accepted if it were read: the open must instead fail on
    // the missing region, before any request is made.
    const saved = process.env.AWS_REGION
    delete process.env.AWS_REGION
    delete process.env.AWS_DEFAULT_REGION
    try {
      const e = await withPollution(
        { endpoint: 'https://attacker.example', region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } },
        () => vaultError(Vault.open({ database: ':memory:', environment: 'test', kms: { provider: 'aws', keyId: 'alias/k' } as OpenOptions['kms'] })),
      )
      expect(e.code).toBe('ERR_INVALID_INPUT')
      expect(e.path).toBe('kms.region')
    } finally {
      if (saved !== undefined) process.env.AWS_REGION = saved
    }
  })

  it('never take the database, environment, key or cache settings from a polluted prototype', async () => {
    const e = await withPollution({ database: ':memory:', environment: 'test', kms: { provider: 'local', key: newKey() } }, () =>
      vaultError(Vault.open({} as OpenOptions)),
    )
    expect(e.code).toBe('ERR_INVALID_INPUT')
    expect(e.path).toBe('database')
    const vault = await withPollution({ cache: false, maxAgeMs: 1 }, () => openMemory())
    const created = fakeCreatedWallet('EVM')
    await vault.storeWallet(created)
    await vault.withWallet(created.walletMetadata.accountAddress, () => undefined)
    await vault.withWallet(created.walletMetadata.accountAddress, () => undefined)
    // The cache is on (the default): both hydrates were served from the key cached at store.
    expect(vault.stats().cacheHits).toBe(2)
    await vault.close()
  })

  it('never take the shares or backup info of a write from a polluted prototype', async () => {
    const vault = await openMemory()
    const created = fakeCreatedWallet('EVM')
    const { externalServerKeyShares, ...withoutShares } = created
    const e = await withPollution({ externalServerKeyShares }, () => vaultError(vault.storeWallet(withoutShares as typeof created)))
    expect(e.code).toBe('ERR_INVALID_INPUT')
    expect(e.path).toBe('externalServerKeyShares')
    await vault.close()
  })
})

describe('rules and ranges are the core\'s', () => {
  it.each([
    [{ kms: { provider: 'aws', keyId: 'alias/k', region: 'us-east-1', endpoint: 'http://127.0.0.1:9', maxAttempts: 11 } }, 'kms.maxAttempts'],
    [{ kms: { provider: 'aws', keyId: 'alias/k', region: 'us-east-1', endpoint: 'http://127.0.0.1:9', maxAttempts: 0 } }, 'kms.maxAttempts'],
    [{ kms: { provider: 'aws', keyId: 'alias/k', region: 'us-east-1', endpoint: 'http://127.0.0.1:9', timeoutMs: 1.5 } }, 'kms.timeoutMs'],
    [{ kms: { provider: 'aws', keyId: '', region: 'us-east-1' } }, 'kms.keyId'],
    [{ kms: { provider: 'gcp' } }, 'kms.provider'],
    [{ kms: { provider: 'local', key: Buffer.alloc(31) } }, 'kms.key'],
    [{ kms: { provider: 'local', key: 42 } }, 'kms.key'],
    [{ kms: 'local' }, 'kms'],
    [{ environment: '  ' }, 'environment'],
    [{ environment: 'x'.repeat(129) }, 'environment'],
    [{ actor: '' }, 'actor'],
    [{ cache: { maxEntries: 0 } }, 'cache.maxEntries'],
    [{ cache: { maxAgeMs: -5 } }, 'cache.maxAgeMs'],
    [{ cache: true }, 'cache'],
  ])('Vault.open refuses %j at its path, never clamping it', async (extra, path) => {
    const e = await vaultError(Vault.open({ ...local(':memory:'), ...(extra as Partial<OpenOptions>) }))
    expect(e.code).toBe('ERR_INVALID_INPUT')
    expect(e.path).toBe(path)
  })

  it('refuses list and audit limits out of range, fractional or negative', async () => {
    const vault = await openMemory()
    for (const limit of [0, 1001, 1.5, -1, 2 ** 40]) {
      expect((await vaultError(vault.listWallets({ limit }))).path).toBe('limit')
      expect((await vaultError(vault.auditLog({ limit }))).path).toBe('limit')
    }
    expect((await vaultError(vault.auditLog({ afterSeq: -1 }))).path).toBe('afterSeq')
    expect(await vault.listWallets({ limit: 1000 })).toEqual([])
    await vault.close()
  })

  it('exports exactly the error codes the core raises', () => {
    expect(Object.values(ErrorCode).sort()).toEqual(nativeErrorCodes().sort())
    expect(ErrorCode.ErrTampered).toBe('ERR_TAMPERED')
  })
})
