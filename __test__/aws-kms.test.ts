import { join } from 'node:path'
import { Vault, ALL_PERMISSIONS } from '../lib'
import type { OpenOptions } from '../lib'
import { fakeCreatedWallet } from '../lib/testing'
import { cleanup, tempDir, vaultError } from './support/helpers'
import { DUMMY_CREDENTIALS, startMoto, type Moto } from './support/moto'
import { UnpersistedSharesError, vaulted } from '../lib/dynamic'
import { FakeEvmWalletClient } from '../lib/testing'
import { sqlInChild, tamper } from './support/sql'

let moto: Moto
let keyArn: string
let otherKeyArn: string

beforeAll(() => {
  moto = startMoto()
  keyArn = moto.createKey('alias/sharevault-test')
  otherKeyArn = moto.createKey()
}, 120_000)
afterAll(() => moto?.kill())
afterEach(cleanup)

function awsOptions(database: string, extra: Partial<OpenOptions> & { keyId?: string; timeoutMs?: number } = {}): OpenOptions {
  const { keyId, timeoutMs, ...rest } = extra
  return {
    database,
    environment: 'test',
    kms: { provider: 'aws', keyId: keyId ?? 'alias/sharevault-test', region: 'us-east-1', endpoint: moto.endpoint, credentials: DUMMY_CREDENTIALS, timeoutMs: timeoutMs ?? 5000, maxAttempts: 2 },
    allow: ALL_PERMISSIONS,
    ...rest,
  }
}

function dbPath(): string {
  return join(tempDir(), 'aws.db')
}

describe('AWS KMS envelope', () => {
  it('round-trips a wallet through GenerateDataKey and Decrypt, naming the key by its ARN', async () => {
    const path = dbPath()
    const vault = await Vault.open(awsOptions(path, { cache: false }))
    const created = fakeCreatedWallet('EVM')
    await vault.storeWallet(created)
    const got = await vault.withWallet(created.walletMetadata.accountAddress, (w) => w.externalServerKeyShares[0].secretShare)
    expect(got).toBe(created.externalServerKeyShares[0].secretShare)
    const s = vault.stats()
    // Opening resolved the key (DescribeKey) and made, then unwrapped, the environment's
    // integrity key (GenerateDataKey, Decrypt); the wallet took one of each.
    expect(s.kmsCalls).toEqual({ generateDataKey: 2, decrypt: 2, reEncrypt: 0, encrypt: 0, describeKey: 1, attempts: 5 })
    expect(sqlInChild(path, "return db.prepare('SELECT kek_provider, kek_key_id FROM wallets').get()")).toEqual({ kek_provider: 'aws', kek_key_id: keyArn })
    await vault.close()
  })

  it('accepts the key by ARN as well as by alias', async () => {
    const path = dbPath()
    const a = await Vault.open(awsOptions(path))
    const created = fakeCreatedWallet('SVM')
    await a.storeWallet(created)
    await a.close()
    const b = await Vault.open(awsOptions(path, { keyId: keyArn }))
    await b.withWallet(created.walletMetadata.accountAddress, () => undefined)
    await b.close()
  })

  it('refuses to open an environment whose records another key wrapped, naming that key', async () => {
    const path = dbPath()
    const a = await Vault.open(awsOptions(path))
    const created = fakeCreatedWallet('EVM')
    await a.storeWallet(created)
    await a.close()
    // The environment's integrity key is wrapped under the first key: a vault with another key
    // cannot check a row, so it does not open (rather than call every row tampered).
    const e = await vaultError(Vault.open(awsOptions(path, { keyId: otherKeyArn })))
    expect(e.code).toBe('ERR_KMS_DENIED')
    expect(e.message).toContain(keyArn)
  })

  it('answers ERR_TAMPERED, as with the local key, when the record is bound to another wallet (encryption context)', async () => {
    const path = dbPath()
    const vault = await Vault.open(awsOptions(path, { cache: false }))
    const a = fakeCreatedWallet('EVM')
    const b = fakeCreatedWallet('EVM')
    await vault.storeWallet(a)
    await vault.storeWallet(b)
    // Move a's wrapped data key and sealed shares onto b: KMS sees b's walletId in the context.
    tamper(path, `UPDATE wallets SET (wrapped_dek, nonce, ciphertext) = (SELECT wrapped_dek, nonce, ciphertext FROM wallets WHERE address_key = ?) WHERE address_key = ?`, a.walletMetadata.accountAddress.toLowerCase(), b.walletMetadata.accountAddress.toLowerCase())
    const e = await vaultError(vault.withWallet(b.walletMetadata.accountAddress, () => 'should not run'))
    expect(e.code).toBe('ERR_TAMPERED')
    expect(vault.stats().errors).toEqual({ ERR_TAMPERED: 1 })
    await vault.close()
  })

  it('refuses a plain-http endpoint that is not on loopback', async () => {
    const e = await vaultError(Vault.open({ ...awsOptions(':memory:'), kms: { provider: 'aws', keyId: keyArn, region: 'us-east-1', endpoint: 'http://10.1.2.3:4566', credentials: DUMMY_CREDENTIALS } }))
    expect(e.code).toBe('ERR_INVALID_INPUT')
    expect(e.path).toBe('kms.endpoint')
  })
})

describe('the data-key cache', () => {
  it('with cache: false, makes one Decrypt per hydrate', async () => {
    const path = dbPath()
    const vault = await Vault.open(awsOptions(path, { cache: false }))
    const created = fakeCreatedWallet('EVM')
    await vault.storeWallet(created)
    const opened = vault.stats().kmsCalls.decrypt // the integrity key's, at open
    for (let i = 0; i < 5; i++) await vault.withWallet(created.walletMetadata.accountAddress, () => undefined)
    expect(vault.stats().kmsCalls.decrypt - opened).toBe(5)
    await vault.close()
  })

  it('makes exactly one Decrypt for 1,000 concurrent hydrations of one cold wallet', async () => {
    const path = dbPath()
    const writer = await Vault.open(awsOptions(path))
    const created = fakeCreatedWallet('EVM')
    await writer.storeWallet(created)
    await writer.close()
    const vault = await Vault.open(awsOptions(path))
    const opened = vault.stats().kmsCalls.decrypt // the integrity key's, at open
    const address = created.walletMetadata.accountAddress
    const got = await Promise.all(Array.from({ length: 1000 }, () => vault.withWallet(address, (w) => w.externalServerKeyShares[0].secretShare)))
    expect(new Set(got)).toEqual(new Set([created.externalServerKeyShares[0].secretShare]))
    const s = vault.stats()
    expect(s.kmsCalls.decrypt - opened).toBe(1)
    expect(s.cacheHits + s.cacheMisses).toBe(1000)
    await vault.close()
  })

  it('evicts entries after maxUses and after maxAgeMs', async () => {
    const path = dbPath()
    const writer = await Vault.open(awsOptions(path))
    const created = fakeCreatedWallet('EVM')
    await writer.storeWallet(created)
    await writer.close()
    const address = created.walletMetadata.accountAddress
    const byUses = await Vault.open(awsOptions(path, { cache: { maxUses: 3 } }))
    for (let i = 0; i < 9; i++) await byUses.withWallet(address, () => undefined)
    expect(byUses.stats().kmsCalls.decrypt).toBe(1 + 3) // the integrity key's at open, then 3
    await byUses.close()
    const byAge = await Vault.open(awsOptions(path, { cache: { maxAgeMs: 50 } }))
    await byAge.withWallet(address, () => undefined)
    await new Promise((r) => setTimeout(r, 120))
    await byAge.withWallet(address, () => undefined)
    expect(byAge.stats().kmsCalls.decrypt).toBe(1 + 2)
    expect(byAge.stats().cacheEvictions).toBeGreaterThanOrEqual(1)
    await byAge.close()
  })

  it('keeps at most maxEntries keys', async () => {
    const path = dbPath()
    const writer = await Vault.open(awsOptions(path))
    const wallets = [fakeCreatedWallet('EVM'), fakeCreatedWallet('EVM'), fakeCreatedWallet('EVM')]
    for (const w of wallets) await writer.storeWallet(w)
    await writer.close()
    const vault = await Vault.open(awsOptions(path, { cache: { maxEntries: 2 } }))
    for (let round = 0; round < 2; round++) for (const w of wallets) await vault.withWallet(w.walletMetadata.accountAddress, () => undefined)
    // Cycling three wallets through two slots misses every time.
    expect(vault.stats().kmsCalls.decrypt).toBe(1 + 6) // the integrity key's at open, then 6
    await vault.close()
  })

  it('reports hydrate latency, and drops a deleted wallet\'s cached data key', async () => {
    const vault = await Vault.open(awsOptions(dbPath()))
    const created = fakeCreatedWallet('EVM')
    await vault.storeWallet(created)
    await vault.withWallet(created.walletMetadata.accountAddress, () => undefined)
    const s = vault.stats()
    expect(s.hydrations).toBe(1)
    expect(s.hydrateP99Ms).toBeGreaterThan(0)
    expect(s.cacheHits).toBe(1) // the key generated by the store was cached
    await vault.deleteWallet(created.walletMetadata.accountAddress)
    expect(vault.stats().cacheEvictions).toBe(s.cacheEvictions + 1)
    await vault.close()
  })
})

/** Two stored wallets; a fresh vault (1 s KMS deadline) has hydrated `warm`, so only its data key is cached. */
async function warmAndCold() {
  const path = dbPath()
  const writer = await Vault.open(awsOptions(path))
  const warm = fakeCreatedWallet('EVM')
  const cold = fakeCreatedWallet('EVM')
  await writer.storeWallet(warm)
  await writer.storeWallet(cold)
  await writer.close()
  const vault = await Vault.open(awsOptions(path, { timeoutMs: 1000 }))
  await vault.withWallet(warm.walletMetadata.accountAddress, () => undefined)
  return { vault, warm, cold }
}

describe('KMS faults', () => {
  it('answers ERR_KMS_UNAVAILABLE when KMS hangs, keeps cached wallets signing, and recovers without a restart', async () => {
    const { vault, warm, cold } = await warmAndCold()
    moto.pause()
    try {
      const started = Date.now()
      const e = await vaultError(vault.withWallet(cold.walletMetadata.accountAddress, () => 'should not run'))
      expect(e.code).toBe('ERR_KMS_UNAVAILABLE')
      expect(Date.now() - started).toBeLessThan(4000)
      // The cached wallet keeps working while KMS is down.
      expect(await vault.withWallet(warm.walletMetadata.accountAddress, (w) => w.externalServerKeyShares[0].secretShare)).toBe(warm.externalServerKeyShares[0].secretShare)
      // A store that cannot get a data key is refused and writes nothing.
      const late = fakeCreatedWallet('SVM')
      expect((await vaultError(vault.storeWallet(late))).code).toBe('ERR_KMS_UNAVAILABLE')
      expect((await vaultError(vault.getMetadata(late.walletMetadata.accountAddress))).code).toBe('ERR_NOT_FOUND')
    } finally {
      moto.resume()
    }
    expect(await vault.withWallet(cold.walletMetadata.accountAddress, (w) => w.externalServerKeyShares[0].secretShare)).toBe(cold.externalServerKeyShares[0].secretShare)
    expect(vault.stats().errors.ERR_KMS_UNAVAILABLE).toBeGreaterThanOrEqual(2)
    await vault.close()
  }, 30_000)

  it('answers ERR_KMS_UNAVAILABLE when the emulator is killed, while cached wallets keep signing', async () => {
    const { vault, warm, cold } = await warmAndCold()
    moto.kill()
    const e = await vaultError(vault.withWallet(cold.walletMetadata.accountAddress, () => 'should not run'))
    expect(e.code).toBe('ERR_KMS_UNAVAILABLE')
    expect(await vault.withWallet(warm.walletMetadata.accountAddress, () => 'signed')).toBe('signed')
    await vault.close()
  }, 30_000)
})

/**
 * The SDK's new shares exist nowhere else once it has returned them: a KMS outage from that
 * moment (the soak found it) must not lose them. The vault keeps a spare data key from before the
 * SDK call, seals with it, and the sealed state recovers once the KMS is back. Before, the seal
 * needed a fresh key from the KMS too, and the error said the shares were lost.
 */
describe('SDK results during a KMS outage', () => {
  // A KMS of its own (the tests above kill theirs).
  let kms: Moto
  beforeAll(() => {
    kms = startMoto()
    kms.createKey('alias/sharevault-test')
  }, 120_000)
  afterAll(() => kms?.kill())
  const options = (): OpenOptions => ({ ...awsOptions(dbPath()), kms: { provider: 'aws', keyId: 'alias/sharevault-test', region: 'us-east-1', endpoint: kms.endpoint, credentials: DUMMY_CREDENTIALS, timeoutMs: 1000, maxAttempts: 2 } })

  /** A fake whose KMS goes down the moment its create / refresh / reshare returns. */
  class OutageAfterSdk extends FakeEvmWalletClient {
    down = false
    private after<T>(r: T): T {
      if (this.down) kms.pause()
      return r
    }
    async createWalletAccount(args: Parameters<FakeEvmWalletClient['createWalletAccount']>[0]) {
      return this.after(await super.createWalletAccount(args))
    }
    async refreshWalletAccountShares(args: Parameters<FakeEvmWalletClient['refreshWalletAccountShares']>[0]) {
      return this.after(await super.refreshWalletAccountShares(args))
    }
  }

  const unpersisted = async (p: Promise<unknown>): Promise<UnpersistedSharesError> => {
    const e = await p.then(() => undefined, (err: unknown) => err)
    expect(e).toBeInstanceOf(UnpersistedSharesError)
    return e as UnpersistedSharesError
  }

  it.each(['refresh', 'create'])('seals a %s result under the spare key, and it recovers when the KMS is back', async (call) => {
    const vault = await Vault.open(options())
    const fake = new OutageAfterSdk()
    const sdk = vaulted(fake, vault, { persistDeadlineMs: 200 })
    try {
      let address: string
      let e: UnpersistedSharesError
      if (call === 'refresh') {
        address = (await sdk.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' })).walletMetadata.accountAddress
        fake.down = true
        e = await unpersisted(sdk.refreshWalletAccountShares({ accountAddress: address }))
      } else {
        // The spare is kept before the first SDK call that creates or replaces shares.
        fake.down = true
        e = await unpersisted(sdk.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' }))
        address = e.accountAddress
      }
      expect(e.sealed).toEqual(expect.any(String))
      expect(e.message).not.toMatch(/lost/)
      kms.resume()
      fake.down = false
      await vault.recoverSealed(e.sealed as string)
      // The fake signs only with its current shares: the recovered ones are those.
      expect(await sdk.signMessage({ accountAddress: address, message: 'after the outage' })).toEqual(expect.any(String))
      expect((await vault.verifyAuditChain()).brokenAt).toBeUndefined()
    } finally {
      kms.resume()
      await vault.close()
    }
  }, 60_000)

  it('refuses an SDK call that creates shares, before making it, while no data key can be had', async () => {
    const vault = await Vault.open(options())
    const fake = new FakeEvmWalletClient()
    const sdk = vaulted(fake, vault, { persistDeadlineMs: 200 })
    kms.pause()
    try {
      expect((await vaultError(sdk.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' }))).code).toBe('ERR_KMS_UNAVAILABLE')
      expect(fake.calls.map((c) => c.method)).not.toContain('createWalletAccount')
    } finally {
      kms.resume()
      await vault.close()
    }
  }, 60_000)
})
