/**
 * `openTestVault()`: a real vault (the same core, rules and audit log as production) on a
 * database the kit creates and removes, with a random local key, for a user's own tests. On top
 * of the vault's API it remembers the fingerprints of the shares that pass it (for
 * `findShares`), and can make its writes fail (`failWrites`) to test a caller's error handling,
 * `ERR_UNPERSISTED_SHARES` recovery included.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { deserialize } from 'node:v8'
import { ErrorCode, looksLikeProduction, type NativeVault } from '../../index'
import { invalid, VaultError, type VaultErrorCode } from '../errors'
import type { AuditEvent, CacheOptions, Permission } from '../types'
import { ALL_PERMISSIONS, environmentOf, openNative, Vault } from '../vault'
import { SHARES, ShareFingerprints, type ShareSource } from './leaks'

export interface TestVaultOptions {
  /**
   * `'memory'` (the default): an in-memory SQLite database, gone when the vault closes.
   * `'file'`: a SQLite file in a new temporary directory, removed when the last handle on it
   * closes; needed for `reopen()` (a restart, a second process-like handle).
   */
  storage?: 'memory' | 'file'
  /**
   * Default `test-` and random hex. A name that looks like production (`prod` anywhere in it,
   * or `live` or `prd` as a word of it) is refused: the kit never opens one.
   */
  environment?: string
  /** What the handle may do; default every permission (`ALL_PERMISSIONS`), unlike `Vault.open`. */
  allow?: readonly Permission[]
  actor?: string
  cache?: CacheOptions | false
  onAudit?: (entry: AuditEvent) => void
}

/** What `reopen()` may change; the database, key and environment stay the vault's. */
export type ReopenOptions = Pick<TestVaultOptions, 'allow' | 'actor' | 'cache' | 'onAudit'>

export interface FailWritesOptions {
  /** The code the writes fail with (default `ERR_DB_UNAVAILABLE`, as when the database is down). */
  code?: VaultErrorCode
  /** Fail only this many writes, then write again (default: until the returned function is called). */
  times?: number
}

const OPTIONS = new Set(['storage', 'environment', 'allow', 'actor', 'cache', 'onAudit'])
/** The binding's calls that write wallet state: what `failWrites` fails. */
const WRITES = new Set(['storeWallet', 'mergeBackupInfo', 'replaceShares', 'recoverSealed', 'deleteWallet'])

/** What every handle on one test database shares. */
interface Database {
  url: string
  key: Buffer
  environment: string
  dir?: string
  handles: number
  shares: ShareFingerprints
}

export interface Faults {
  failing?: { code: VaultErrorCode; left: number }
}

/** The shares in the wrapper's V8-serialized form of an SDK result (`sealUnpersistedRaw`). */
function serializedShares(bytes: unknown): unknown {
  try {
    return (deserialize(bytes as Buffer) as { externalServerKeyShares?: unknown }).externalServerKeyShares
  } catch {
    return undefined
  }
}

function addressOf(metadataJson: unknown): string {
  try {
    const a = (JSON.parse(String(metadataJson)) as { accountAddress?: unknown }).accountAddress
    return typeof a === 'string' ? a : '?'
  } catch {
    return '?'
  }
}

/**
 * The binding, seen through the kit: the shares of every store, replace, seal and hydrate are
 * fingerprinted, and a write fails while `failWrites` says so, with the error the binding
 * raises (so every layer above, the SDK wrapper's retries and sealing included, runs as it would).
 */
export function instrument(native: NativeVault, shares: ShareFingerprints, faults: Faults): NativeVault {
  const wrapped = new Map<PropertyKey, unknown>()
  return new Proxy(native, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown
      if (typeof v !== 'function') return v
      let w = wrapped.get(prop)
      if (w) return w
      const name = String(prop)
      w = (...args: unknown[]) => {
        // What passes here is remembered first, whatever becomes of the call.
        if (name === 'storeWallet' || name === 'sealUnpersisted') shares.add(addressOf(args[0]), args[2])
        else if (name === 'replaceShares') shares.add(String(args[0]), args[1])
        else if (name === 'sealUnpersistedRaw') shares.add(addressOf(args[0]), serializedShares(args[2]))
        const f = faults.failing
        if (f && WRITES.has(name)) {
          if (--f.left <= 0) faults.failing = undefined
          const body = { code: f.code, message: `${name} failed: simulated by the testing kit (failWrites)`, path: null }
          return Promise.reject(new Error(`sharevault:${JSON.stringify(body)}`))
        }
        const out = (v as (...a: unknown[]) => unknown).apply(target, args)
        // The binding's promises come from the main realm (not jest's): duck-typed.
        if (name === 'hydrate' && typeof (out as { then?: unknown } | null)?.then === 'function') {
          return (out as Promise<{ metadata: string; shares: unknown[] }>).then((h) => {
            shares.add(addressOf(h.metadata), h.shares)
            return h
          })
        }
        return out
      }
      wrapped.set(prop, w)
      return w
    },
  })
}

/**
 * A vault from `openTestVault()`: a `Vault` (every method, rule and error of one) that also
 * knows the shares that passed it and can simulate failing writes. `close()` removes its files.
 */
export class TestVault extends Vault implements ShareSource {
  /** Fingerprints of every share stored, replaced, sealed or hydrated through any handle on this database. */
  readonly [SHARES]: ShareFingerprints
  /** `':memory:'`, or the temporary SQLite file. */
  readonly database: string
  readonly #db: Database
  readonly #faults: Faults
  #closed?: Promise<void>

  /** Use `openTestVault()`. */
  private constructor(native: NativeVault, db: Database, faults: Faults) {
    super(native, environmentOf(native))
    this[SHARES] = db.shares
    this.database = db.url
    this.#db = db
    this.#faults = faults
  }

  /** @internal */
  static async openOn(db: Database, options: ReopenOptions): Promise<TestVault> {
    const faults: Faults = {}
    // Counted from now: a close of another handle finishing meanwhile must not remove the files.
    db.handles++
    let native: NativeVault
    try {
      native = await openNative({
      database: db.url,
      environment: db.environment,
      kms: { provider: 'local', key: db.key },
      allow: options.allow ?? ALL_PERMISSIONS,
      ...(options.actor !== undefined ? { actor: options.actor } : {}),
      ...(options.cache !== undefined ? { cache: options.cache } : {}),
      ...(options.onAudit !== undefined ? { onAudit: options.onAudit } : {}),
      })
    } catch (e) {
      release(db)
      throw e
    }
    return new TestVault(instrument(native, db.shares, faults), db, faults)
  }

  /**
   * From now on, the vault's writes of wallet state (`storeWallet`, `mergeBackupInfo`,
   * `replaceShares`, `recoverSealed`, `deleteWallet`, and the SDK wrapper's writes through them)
   * fail with `code` and write nothing: the database failing between a hydrate and the write of
   * what the SDK returned. Reads, hydrates (and their audit rows) go on. The failure comes
   * before the vault checks the call (a forbidden write fails with `code` too).
   * Returns the function that ends it. The wrapper retries a write until its
   * `persistDeadlineMs`, then seals new shares into an `ERR_UNPERSISTED_SHARES`: pass a small
   * deadline in tests.
   */
  failWrites(options: FailWritesOptions = {}): () => void {
    const code = options.code ?? 'ERR_DB_UNAVAILABLE'
    const times = options.times ?? Infinity
    if (!(Object.values(ErrorCode) as string[]).includes(code)) throw invalid('code', 'must be one of the ErrorCode values')
    if (times !== Infinity && !(Number.isInteger(times) && times >= 1)) throw invalid('times', 'must be a whole number of at least 1')
    const failing = { code, left: times }
    this.#faults.failing = failing
    return () => {
      if (this.#faults.failing === failing) this.#faults.failing = undefined
    }
  }

  /**
   * Another handle on the same database, key and environment (a restart, another instance of
   * the service): `storage: 'file'` only. Its writes fail only by its own `failWrites`.
   */
  async reopen(options: ReopenOptions = {}): Promise<TestVault> {
    if (!this.#db.dir) throw invalid('storage', "an in-memory test vault cannot be reopened: open it with storage: 'file'")
    if (this.#db.handles === 0) throw new VaultError('ERR_CLOSED', 'every handle on this test vault is closed, and its files are removed')
    return TestVault.openOn(this.#db, checked(options, new Set(['allow', 'actor', 'cache', 'onAudit'])))
  }

  /** Closes the vault; the last handle on a `'file'` database removes its directory. */
  override close(): Promise<void> {
    this.#closed ??= super.close().finally(() => release(this.#db))
    return this.#closed
  }
}

/** One handle (open, or opening) fewer; the last one removes the files. */
function release(db: Database): void {
  if (--db.handles === 0 && db.dir) rmSync(db.dir, { recursive: true, force: true })
}

function checked<T extends object>(options: T, allowed: Set<string>): T {
  if (options === null || typeof options !== 'object') throw invalid('options', 'must be an object')
  for (const k of Object.keys(options)) {
    if (!allowed.has(k)) throw invalid(`options.${k}`, 'is not an option of the testing kit (it always opens a database of its own, with a random local key)')
  }
  return options
}

/**
 * A vault for a test: a real one (the same core and rules) on an in-memory or temporary SQLite
 * database, a random local key, every permission unless `allow` says otherwise, and an
 * environment that cannot be mistaken for production. `close()` removes what it created.
 */
export async function openTestVault(options: TestVaultOptions = {}): Promise<TestVault> {
  checked(options, OPTIONS)
  const nodeEnv = process.env.NODE_ENV
  if (nodeEnv !== undefined && (looksLikeProduction(nodeEnv) || /prod/i.test(nodeEnv))) {
    // A test vault in a deployed service would lose every wallet at its close or restart.
    throw invalid('NODE_ENV', 'is production: the testing kit opens throwaway vaults, for tests only')
  }
  const storage = options.storage ?? 'memory'
  if (storage !== 'memory' && storage !== 'file') throw invalid('storage', "must be 'memory' or 'file'")
  const environment = options.environment ?? `test-${randomBytes(4).toString('hex')}`
  if (typeof environment !== 'string') throw invalid('environment', 'must be a string')
  if (looksLikeProduction(environment) || /prod/i.test(environment)) {
    throw invalid('environment', `${JSON.stringify(environment)} looks like production; the testing kit never opens a production-like environment`)
  }
  const dir = storage === 'file' ? mkdtempSync(join(tmpdir(), 'sharevault-test-')) : undefined
  const db: Database = {
    url: dir ? join(dir, 'vault.db') : ':memory:',
    key: randomBytes(32),
    environment,
    dir,
    handles: 0,
    shares: new ShareFingerprints(),
  }
  try {
    return await TestVault.openOn(db, options)
  } catch (e) {
    if (dir) rmSync(dir, { recursive: true, force: true })
    throw e
  }
}
