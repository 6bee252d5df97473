import { openVault, NativeVault, type NativeOpenOptions } from '../index'
import { fromNative, invalid } from './errors'
import { redactShare } from './redact'
import type {
  AuditRecord,
  CreatedWallet,
  HydratedWallet,
  KeyShareBackupInfo,
  ListOptions,
  OpenOptions,
  ReplaceSharesInput,
  VaultStats,
  WalletMetadata,
  WithWalletOptions,
} from './types'

async function call<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f()
  } catch (e) {
    throw fromNative(e)
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function str(v: unknown, path: string): string {
  if (typeof v !== 'string' || v.length === 0) throw invalid(path, 'must be a non-empty string')
  return v
}

function optStr(v: unknown, path: string): string | undefined {
  return v === undefined || v === null ? undefined : str(v, path)
}

function positiveInt(v: unknown, path: string, max = 2 ** 31 - 1): number | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) throw invalid(path, `must be an integer from 1 to ${max}`)
  return v
}

function sharesArg(v: unknown): unknown[] {
  if (v === undefined || v === null) throw invalid('externalServerKeyShares', 'is required')
  if (!Array.isArray(v)) throw invalid('externalServerKeyShares', 'must be an array of key shares')
  return v
}

function json(v: unknown, path: string): string {
  try {
    return JSON.stringify(v)
  } catch {
    throw invalid(path, 'must be JSON data (no BigInt, no cycles)')
  }
}

function backupJson(v: unknown): string {
  if (!isObject(v)) throw invalid('backupInfo', v === undefined || v === null ? 'is required' : 'must be an object')
  return json(v, 'backupInfo')
}

/**
 * The vault: stores what the Dynamic SDK returns when a wallet is created, and hands it back,
 * decrypted, for each SDK call. Plaintext shares are held in Rust memory that is zeroized.
 */
export class Vault {
  private constructor(
    private readonly native: NativeVault,
    /** The environment this vault's records are bound to. */
    readonly environment: string,
  ) {}

  /** Opens (and creates or migrates) a vault. */
  static async open(options: OpenOptions): Promise<Vault> {
    if (!isObject(options)) throw invalid('options', 'must be an object')
    const database = str(options.database, 'database')
    const environment = typeof options.environment === 'string' ? options.environment : ''
    if (environment.trim() === '') throw invalid('environment', 'must be a non-empty string')
    const actor = optStr(options.actor, 'actor')
    const kms = options.kms as unknown
    if (!isObject(kms)) throw invalid('kms', 'must be an object such as { provider: "local", key }')
    const native: NativeOpenOptions = { database, environment, actor, kmsProvider: String(kms.provider), cacheEnabled: options.cache !== false }
    if (kms.provider === 'local') {
      const key = kms.key
      if (typeof key === 'string') native.localKeyBase64 = key
      else if (key instanceof Uint8Array) native.localKey = Buffer.from(key.buffer, key.byteOffset, key.byteLength)
      else throw invalid('kms.key', 'must be exactly 32 bytes, as a Buffer or a base64 string')
    } else if (kms.provider === 'aws') {
      native.awsKeyId = str(kms.keyId, 'kms.keyId')
      native.awsRegion = optStr(kms.region, 'kms.region')
      native.awsEndpoint = optStr(kms.endpoint, 'kms.endpoint')
      if (kms.credentials !== undefined) {
        const c = kms.credentials
        if (!isObject(c)) throw invalid('kms.credentials', 'must be { accessKeyId, secretAccessKey, sessionToken? }')
        native.awsAccessKeyId = str(c.accessKeyId, 'kms.credentials.accessKeyId')
        native.awsSecretAccessKey = str(c.secretAccessKey, 'kms.credentials.secretAccessKey')
        native.awsSessionToken = optStr(c.sessionToken, 'kms.credentials.sessionToken')
      }
      native.kmsTimeoutMs = positiveInt(kms.timeoutMs, 'kms.timeoutMs')
      native.kmsMaxAttempts = positiveInt(kms.maxAttempts, 'kms.maxAttempts', 10)
    } else {
      throw invalid('kms.provider', "must be 'local' or 'aws'")
    }
    const cache = options.cache
    if (cache !== undefined && cache !== false) {
      if (!isObject(cache)) throw invalid('cache', 'must be false or { maxEntries?, maxAgeMs?, maxUses? }')
      native.cacheMaxEntries = positiveInt(cache.maxEntries, 'cache.maxEntries')
      native.cacheMaxAgeMs = positiveInt(cache.maxAgeMs, 'cache.maxAgeMs')
      native.cacheMaxUses = positiveInt(cache.maxUses, 'cache.maxUses')
    }
    const handle = await call(() => openVault(native))
    return new Vault(handle, environment)
  }

  /**
   * Stores a wallet as `createWalletAccount()` / `importPrivateKey()` returned it: the whole
   * metadata (unknown fields kept) and the shares, sealed under a fresh data key. Resolves to
   * the stored metadata. An address that is already stored is `ERR_CONFLICT`.
   */
  async storeWallet(created: CreatedWallet, options: { actor?: string } = {}): Promise<WalletMetadata> {
    if (!isObject(created)) throw invalid('created', 'must be the object createWalletAccount() returned')
    const meta = created.walletMetadata as unknown
    if (!isObject(meta)) throw invalid('walletMetadata', meta === undefined || meta === null ? 'is required' : 'must be an object')
    const shares = sharesArg(created.externalServerKeyShares)
    const createdAddress = typeof created.accountAddress === 'string' ? created.accountAddress : undefined
    const actor = optStr(options.actor, 'actor')
    const metaJson = json(meta, 'walletMetadata')
    const stored = await call(() => this.native.storeWallet(metaJson, createdAddress, shares, actor))
    return JSON.parse(stored) as WalletMetadata
  }

  /** The stored metadata, whole. No decryption, no KMS call, not audited. */
  async getMetadata(address: string): Promise<WalletMetadata> {
    const a = str(address, 'address')
    return JSON.parse(await call(() => this.native.getMetadata(a))) as WalletMetadata
  }

  /**
   * Decrypts the wallet and calls `fn` with `{ walletMetadata, externalServerKeyShares }` for one
   * SDK call. The access is audited (actor, purpose, outcome) before `fn` runs. The share objects
   * are fresh for each call; `util.inspect` of them shows `secretShare` redacted.
   */
  async withWallet<T>(
    address: string,
    fn: (wallet: HydratedWallet) => T | Promise<T>,
    options: WithWalletOptions = {},
  ): Promise<T> {
    const a = str(address, 'address')
    if (typeof fn !== 'function') throw invalid('fn', 'must be a function')
    const purpose = optStr(options.purpose, 'purpose')
    const actor = optStr(options.actor, 'actor')
    const h = await call(() => this.native.hydrate(a, purpose, actor))
    for (const share of h.shares) redactShare(share)
    const wallet: HydratedWallet = {
      walletMetadata: JSON.parse(h.metadata) as WalletMetadata,
      externalServerKeyShares: h.shares as HydratedWallet['externalServerKeyShares'],
    }
    return await fn(wallet)
  }

  /**
   * Replaces the metadata's `externalServerKeySharesBackupInfo` with what `updatePassword` or
   * `storeEncryptedBackupByWallet` returned. Resolves to the new metadata.
   */
  async mergeBackupInfo(address: string, backupInfo: KeyShareBackupInfo, options: { actor?: string } = {}): Promise<WalletMetadata> {
    const a = str(address, 'address')
    const info = backupJson(backupInfo)
    const actor = optStr(options.actor, 'actor')
    return JSON.parse(await call(() => this.native.mergeBackupInfo(a, info, actor))) as WalletMetadata
  }

  /**
   * After `refreshWalletAccountShares` or `reshare`: writes the new shares (under a new data key),
   * the new backup info and, on a reshare, the new scheme, atomically. Resolves to the new metadata.
   */
  async replaceShares(address: string, input: ReplaceSharesInput, options: { actor?: string } = {}): Promise<WalletMetadata> {
    const a = str(address, 'address')
    if (!isObject(input)) throw invalid('input', 'must be { externalServerKeyShares, backupInfo, thresholdSignatureScheme? }')
    const shares = sharesArg(input.externalServerKeyShares)
    const info = backupJson(input.backupInfo)
    const scheme = optStr(input.thresholdSignatureScheme, 'thresholdSignatureScheme')
    const actor = optStr(options.actor, 'actor')
    return JSON.parse(await call(() => this.native.replaceShares(a, shares, info, scheme, actor))) as WalletMetadata
  }

  /** Deletes the wallet: metadata, sealed shares and wrapped data key (crypto-shredding). */
  async deleteWallet(address: string, options: { actor?: string } = {}): Promise<void> {
    const a = str(address, 'address')
    const actor = optStr(options.actor, 'actor')
    await call(() => this.native.deleteWallet(a, actor))
  }

  /** This environment's wallets' metadata, in address order; page with `after`. */
  async listWallets(options: ListOptions = {}): Promise<WalletMetadata[]> {
    const chainName = optStr(options.chainName, 'chainName')
    const after = optStr(options.after, 'after')
    const limit = options.limit
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1 || limit > 1000)) {
      throw invalid('limit', 'must be an integer between 1 and 1000')
    }
    const rows = await call(() => this.native.listWallets(chainName, limit, after))
    return rows.map((r) => JSON.parse(r) as WalletMetadata)
  }

  /** Audit rows, oldest first; `afterSeq` pages. */
  async auditLog(options: { address?: string; afterSeq?: number; limit?: number } = {}): Promise<AuditRecord[]> {
    const address = optStr(options.address, 'address')
    const limit = positiveInt(options.limit, 'limit', 1000)
    const afterSeq = options.afterSeq
    if (afterSeq !== undefined && (!Number.isSafeInteger(afterSeq) || afterSeq < 0)) throw invalid('afterSeq', 'must be a non-negative integer')
    const rows = await call(() => this.native.auditLog(address, afterSeq, limit))
    return rows.map((r) => ({
      seq: r.seq,
      at: new Date(r.atMs),
      environment: r.environment,
      actor: r.actor,
      action: r.action,
      address: r.address,
      ...(r.walletId != null ? { walletId: r.walletId } : {}),
      ...(r.purpose != null ? { purpose: r.purpose } : {}),
      outcome: r.outcome,
      hash: r.hash,
    }))
  }

  /** Recomputes the audit log's hash chain; `brokenAt` names the first row that does not chain. */
  async verifyAuditChain(): Promise<{ rows: number; brokenAt?: number }> {
    const c = await call(() => this.native.verifyAuditChain())
    return c.brokenAt != null ? { rows: c.rows, brokenAt: c.brokenAt } : { rows: c.rows }
  }

  /** Counters since open: KMS calls by operation, data-key cache, errors by code, hydrate latency. */
  stats(): VaultStats {
    const s = this.native.stats()
    return { ...s, kmsCalls: { ...s.kmsCalls }, errors: { ...s.errors } }
  }

  /** Finishes queued writes and closes the database; later calls fail with `ERR_CLOSED`. */
  async close(): Promise<void> {
    await call(() => this.native.close())
  }
}
