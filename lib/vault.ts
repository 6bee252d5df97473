import { setImmediate as realSetImmediate } from 'node:timers'
import { deserialize } from 'node:v8'
import { openVault, migrate as nativeMigrate, nativePermissions, NativeVault, useScheduler } from '../index'
import type { NativeAuditEvent } from '../index'
import { fromNative, invalid, VaultError } from './errors'
import { delegationList, delegationOf, hydrated, keyInfo, rawBodyArg, secretArg, signatureOf, webhookResult } from './delegations'
import { keyStatusOf, rotate, rotateArgs } from './keys'
import { redactShare } from './redact'
import type {
  AuditCheckpoint,
  AuditEvent,
  AuditRecord,
  AuthenticatedRows,
  CompactReport,
  ChainCheck,
  CreatedWallet,
  DatabaseOptions,
  Delegation,
  DelegationKeyInfo,
  DelegationWebhookInput,
  DelegationWebhookResult,
  HydratedDelegation,
  HydratedWallet,
  KeyRef,
  KeyStatus,
  KeyShareBackupInfo,
  ListDelegationsOptions,
  ListOptions,
  Migrated,
  OpenOptions,
  Permission,
  ReplaceSharesInput,
  RotateOptions,
  RotationReport,
  VaultStats,
  VaultSummary,
  WalletMetadata,
  WithDelegationOptions,
  WithWalletOptions,
} from './types'

// Settle the vault's promises in bounded turns, scheduled with the real `setImmediate` (a test's
// fake timers replace the global one, never this module's): the event loop turns between them.
useScheduler(realSetImmediate)

async function call<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f()
  } catch (e) {
    throw fromNative(e)
  }
}

/** `call` for the binding's synchronous members (a contained panic there is ERR_INTERNAL too). */
function callSync<T>(f: () => T): T {
  try {
    return f()
  } catch (e) {
    throw fromNative(e)
  }
}

/**
 * An own property of `o`, or `undefined`. Never an inherited one: a polluted `Object.prototype`
 * (a careless deep merge) must not be able to supply an actor, a purpose, or shares.
 */
function own(o: unknown, key: string, path: string = key): unknown {
  if (o === null || typeof o !== 'object') return undefined
  try {
    return Object.prototype.hasOwnProperty.call(o, key) ? (o as Record<string, unknown>)[key] : undefined
  } catch {
    // A getter or Proxy trap that throws, or a revoked Proxy: the caller's bad input, at its path.
    throw unreadable(path)
  }
}

function unreadable(path: string): VaultError {
  return invalid(path, 'could not be read: a getter or Proxy trap threw (pass plain data)')
}

/** `Array.isArray`, which throws for a revoked Proxy: that is bad input at `path`. */
function isArray(v: unknown, path: string): boolean {
  try {
    return Array.isArray(v)
  } catch {
    throw unreadable(path)
  }
}

function isObject(v: unknown, path = 'input'): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !isArray(v, path)
}

// The facade checks JavaScript types only, so a wrong type gets a path instead of a binding
// conversion error; every rule and range (lengths, limits, formats) is the Rust core's.

function str(v: unknown, path: string): string {
  if (typeof v !== 'string') throw invalid(path, 'must be a string')
  // A lone surrogate would reach the core as U+FFFD: another address, actor or purpose.
  if (!v.isWellFormed()) throw invalid(path, 'is not well-formed UTF-16 (it holds a lone surrogate)')
  return v
}

/** An `onAudit` entry as the facade hands it on. */
function auditEvent(e: NativeAuditEvent): AuditEvent {
  return {
    at: new Date(e.atMs),
    environment: e.environment,
    actor: e.actor,
    action: e.action,
    address: e.address,
    ...(e.walletId != null ? { walletId: e.walletId } : {}),
    ...(e.purpose != null ? { purpose: e.purpose } : {}),
    outcome: e.outcome,
  }
}

function optStr(v: unknown, path: string): string | undefined {
  return v === undefined || v === null ? undefined : str(v, path)
}

function optNum(v: unknown, path: string): number | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number') throw invalid(path, 'must be a number')
  return v
}

function sharesArg(v: unknown): unknown[] {
  if (v === undefined || v === null) throw invalid('externalServerKeyShares', 'is required')
  if (!isArray(v, 'externalServerKeyShares')) throw invalid('externalServerKeyShares', 'must be an array of key shares')
  return v as unknown[]
}

function json(v: unknown, path: string): string {
  try {
    return JSON.stringify(v)
  } catch {
    throw invalid(path, 'must be JSON data (no BigInt, no cycles, no getter or Proxy trap that throws)')
  }
}

function backupJson(v: unknown): string {
  if (!isObject(v, 'backupInfo')) throw invalid('backupInfo', v === undefined || v === null ? 'is required' : 'must be an object')
  return json(v, 'backupInfo')
}

function actorOf(options: unknown): string | undefined {
  return optStr(own(options, 'actor'), 'actor')
}

const permissionLists = nativePermissions()

/**
 * What a vault handle may do when `allow` is not given: everything but `hydrate:export`, `delete`,
 * `integrity:admin`, `keys:admin` and `hydrate:delegated`.
 */
export const DEFAULT_PERMISSIONS: readonly Permission[] = Object.freeze(permissionLists.defaults as Permission[])

/** Every permission there is (`allow: ALL_PERMISSIONS` for an unrestricted handle). */
export const ALL_PERMISSIONS: readonly Permission[] = Object.freeze(permissionLists.all as Permission[])

/**
 * The binding behind a vault, for the SDK wrapper (`lib/sdk/`), which needs the share generation
 * and the sealing of unpersisted state. Not exported from the package.
 */
export function nativeOf(vault: Vault): NativeVault {
  return vault['native']
}

/** The binding's errors as `VaultError`s, for the SDK wrapper. Not exported from the package. */
export { call as callNative }

/**
 * Creates the schema of the database `options.database` names, or brings it up to date, and
 * disconnects. Safe beside running instances and other migrations (PostgreSQL: under an
 * advisory lock). For deployments whose application role may not run DDL: migrate with a role
 * that may, then open with `migrate: false`. `sharevault migrate` runs this from the shell.
 */
export async function migrate(options: DatabaseOptions): Promise<Migrated> {
  return call(() => nativeMigrate(options))
}

/**
 * The binding's open, for `Vault.open` and the testing kit (`lib/testing/`). Not exported from
 * the package.
 */
export async function openNative(options: OpenOptions): Promise<NativeVault> {
  // onAudit gets the same shape as auditLog's rows (a Date, no chain fields); a copy of the
  // options carries the wrapper, so the caller's object is not changed.
  const onAudit = own(options, 'onAudit', 'options')
  let native: unknown = options
  if (typeof onAudit === 'function') {
    try {
      native = { ...options, onAudit: (e: NativeAuditEvent) => (onAudit as (e: AuditEvent) => void)(auditEvent(e)) }
    } catch {
      throw unreadable('options')
    }
  }
  return call(() => openVault(native as object))
}

/** The environment a handle is bound to (for subclasses' constructors). Not exported from the package. */
export function environmentOf(native: NativeVault): string {
  return callSync(() => native.environment)
}

/**
 * The vault: stores what the Dynamic SDK returns when a wallet is created, and hands it back,
 * decrypted, for each SDK call. Plaintext shares are held in Rust memory that is zeroized.
 */
export class Vault {
  /** Only `Vault.open` (and the testing kit's `openTestVault`) make one. */
  protected constructor(
    private readonly native: NativeVault,
    /** The environment this vault's records are bound to. */
    readonly environment: string,
  ) {}

  /**
   * Opens (and creates or migrates) a vault. The options are read as own properties only, and
   * checked by the native core (`ERR_INVALID_INPUT` with the option's path).
   */
  static async open(options: OpenOptions): Promise<Vault> {
    const handle = await openNative(options)
    return new Vault(handle, callSync(() => handle.environment))
  }

  /**
   * Stores a wallet as `createWalletAccount()` / `importPrivateKey()` returned it: the whole
   * metadata (unknown fields kept) and the shares, sealed under a fresh data key. Resolves to
   * the stored metadata. An address that is already stored is `ERR_CONFLICT`.
   */
  async storeWallet(created: CreatedWallet, options: { actor?: string } = {}): Promise<WalletMetadata> {
    if (!isObject(created, 'created')) throw invalid('created', 'must be the object createWalletAccount() returned')
    const meta = own(created, 'walletMetadata')
    if (!isObject(meta, 'walletMetadata')) throw invalid('walletMetadata', meta === undefined || meta === null ? 'is required' : 'must be an object')
    const shares = sharesArg(own(created, 'externalServerKeyShares'))
    const address = own(created, 'accountAddress')
    const createdAddress = typeof address === 'string' ? address : undefined
    const actor = actorOf(options)
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
    const purpose = optStr(own(options, 'purpose'), 'purpose')
    const actor = actorOf(options)
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
    const actor = actorOf(options)
    return JSON.parse(await call(() => this.native.mergeBackupInfo(a, info, actor))) as WalletMetadata
  }

  /**
   * After `refreshWalletAccountShares` or `reshare`: writes the new shares (under a new data key),
   * the new backup info and, on a reshare, the new scheme, atomically. Resolves to the new metadata.
   */
  async replaceShares(address: string, input: ReplaceSharesInput, options: { actor?: string } = {}): Promise<WalletMetadata> {
    const a = str(address, 'address')
    if (!isObject(input, 'input')) throw invalid('input', 'must be { externalServerKeyShares, backupInfo, thresholdSignatureScheme? }')
    const shares = sharesArg(own(input, 'externalServerKeyShares'))
    const info = backupJson(own(input, 'backupInfo'))
    const scheme = optStr(own(input, 'thresholdSignatureScheme'), 'thresholdSignatureScheme')
    const actor = actorOf(options)
    return JSON.parse(await call(() => this.native.replaceShares(a, shares, info, scheme, actor))) as WalletMetadata
  }

  /**
   * Writes a sealed state (what an `ERR_UNPERSISTED_SHARES` error carries: new shares the SDK
   * returned that could not be written at the time) as the wallet's shares, backup info and
   * scheme. Only while the wallet is still at the generation the state replaces: if it has
   * changed since, the state is stale and this is `ERR_CONFLICT` (nothing is rolled back). A
   * state from another environment is `ERR_ENVIRONMENT_MISMATCH`; an altered one `ERR_TAMPERED`.
   */
  async recoverSealed(sealed: string, options: { actor?: string } = {}): Promise<WalletMetadata> {
    const s = str(sealed, 'sealed')
    const actor = actorOf(options)
    return JSON.parse(await call(() => this.native.recoverSealed(s, actor))) as WalletMetadata
  }

  /**
   * An operator's read of a sealed state that `recoverSealed` refuses because the SDK returned
   * something the vault cannot store as it is (a `Date`, a `Map`… in a share): the SDK's result
   * exactly as it came back, sealed losslessly so it was not lost. Hands out plaintext shares:
   * needs `hydrate:export`, checked before any key use, and is audited (`open_sealed`). Correct
   * the value and store it (`replaceShares`, `storeWallet`); keep nothing else of it.
   */
  async openSealed(sealed: string, options: { actor?: string } = {}): Promise<unknown> {
    const s = str(sealed, 'sealed')
    const actor = actorOf(options)
    const bytes = await call(() => this.native.openSealed(s, actor))
    // Not wiped afterwards: the typed arrays of the result are views into these bytes.
    return deserialize(bytes)
  }

  /**
   * Imports the RSA private key (PKCS#8 PEM) whose public half is registered with Dynamic for
   * delegated access: sealed in the vault under the environment's key like a wallet's shares,
   * rotated with them, never returned. A new import replaces (and shreds) the old key. Needs
   * `keys:admin`. Resolves to the key's fingerprint (compare it with the key at Dynamic).
   */
  async importDelegationKey(pem: string | Uint8Array, options: { actor?: string } = {}): Promise<DelegationKeyInfo> {
    const key = secretArg(pem, 'pem')
    const actor = actorOf(options)
    const info = keyInfo(await call(() => this.native.importDelegationKey(key, actor)))
    if (info === null) throw new VaultError('ERR_INTERNAL', 'the imported key was not described')
    return info
  }

  /** The delegation key in use (no secret), or `null` when none is imported or configured. */
  async delegationKey(): Promise<DelegationKeyInfo | null> {
    return keyInfo(await call(() => this.native.delegationKey()))
  }

  /**
   * Handles one delivery of a Dynamic delegation webhook (`wallet.delegation.created`,
   * `wallet.delegation.revoked`, `ping`). The signature over the raw body is checked first, in
   * constant time; then the event is decrypted in Rust, validated and sealed (a re-delegation
   * replaces the old record atomically; a revocation shreds it). A replay of an `eventId`
   * answers the first delivery's result and writes nothing. Never rejects for what the webhook
   * carries: answer `result.status` (only a closed vault or a wrong argument type throws).
   * Needs `delegation:write`.
   */
  async receiveDelegationWebhook(input: DelegationWebhookInput): Promise<DelegationWebhookResult> {
    if (!isObject(input, 'input')) throw invalid('input', 'must be { rawBody, headers, secret }')
    const body = rawBodyArg(own(input, 'rawBody'))
    const signature = signatureOf(own(input, 'headers') as DelegationWebhookInput['headers'])
    const secret = secretArg(own(input, 'secret'), 'secret')
    const maxAgeMs = optNum(own(input, 'maxAgeMs'), 'maxAgeMs')
    const environmentId = optStr(own(input, 'environmentId'), 'environmentId')
    const actor = actorOf(input)
    return webhookResult(await call(() => this.native.receiveWebhook(body, signature, secret, { maxAgeMs, environmentId, actor })))
  }

  /**
   * Decrypts a delegation and calls `fn` with `{ keyShare, walletApiKey, walletId, chain, … }`
   * for one delegated SDK call, audited before `fn` runs. Needs `hydrate:delegated` (not in
   * `DEFAULT_PERMISSIONS`). `util.inspect` shows the secrets redacted.
   */
  async withDelegation<T>(
    walletId: string,
    fn: (delegation: HydratedDelegation) => T | Promise<T>,
    options: WithDelegationOptions = {},
  ): Promise<T> {
    const w = str(walletId, 'walletId')
    if (typeof fn !== 'function') throw invalid('fn', 'must be a function')
    const purpose = optStr(own(options, 'purpose'), 'purpose')
    const actor = actorOf(options)
    const d = await call(() => hydrated(this.native, w, purpose, actor))
    return await fn(d)
  }

  /** A delegation without its secrets (no decryption, not audited); `ERR_NOT_FOUND` if there is none. */
  async getDelegation(walletId: string): Promise<Delegation> {
    const w = str(walletId, 'walletId')
    return delegationOf(JSON.parse(await call(() => this.native.getDelegation(w))))
  }

  /** This environment's delegations, by wallet id, `limit` (default 100) after `after`. */
  async listDelegations(options: ListDelegationsOptions = {}): Promise<Delegation[]> {
    const userId = optStr(own(options, 'userId'), 'userId')
    const chain = optStr(own(options, 'chain'), 'chain')
    const limit = optNum(own(options, 'limit'), 'limit')
    const after = optStr(own(options, 'after'), 'after')
    return delegationList(await call(() => this.native.listDelegations(userId, chain, limit, after)))
  }

  /**
   * Shreds a delegation here (record and wrapped key), audited; Dynamic is not told (the
   * `delegated()` wrapper's `revoke` tells it first). Needs `delegation:write`.
   */
  async revokeDelegation(walletId: string, options: { actor?: string } = {}): Promise<void> {
    const w = str(walletId, 'walletId')
    const actor = actorOf(options)
    await call(() => this.native.revokeDelegation(w, actor))
  }

  /** Deletes the wallet: metadata, sealed shares and wrapped data key (crypto-shredding). */
  async deleteWallet(address: string, options: { actor?: string } = {}): Promise<void> {
    const a = str(address, 'address')
    const actor = actorOf(options)
    await call(() => this.native.deleteWallet(a, actor))
  }

  /** This environment's wallets' metadata, in address order; page with `after`. */
  async listWallets(options: ListOptions = {}): Promise<WalletMetadata[]> {
    const chainName = optStr(own(options, 'chainName'), 'chainName')
    const after = optStr(own(options, 'after'), 'after')
    const limit = optNum(own(options, 'limit'), 'limit')
    const rows = await call(() => this.native.listWallets(chainName, limit, after))
    return rows.map((r) => JSON.parse(r) as WalletMetadata)
  }

  /** Audit rows, oldest first; `afterSeq` pages. */
  async auditLog(options: { address?: string; afterSeq?: number; limit?: number } = {}): Promise<AuditRecord[]> {
    const address = optStr(own(options, 'address'), 'address')
    const limit = optNum(own(options, 'limit'), 'limit')
    const afterSeq = optNum(own(options, 'afterSeq'), 'afterSeq')
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

  /**
   * Verifies the audit log from its first row, in constant memory: every row's hash link, this
   * environment's row MACs, and its authenticated head (so a cut tail, deleted rows or hashes
   * recomputed after an edit are found). With `since` (a {@link Vault.checkpoint} kept outside
   * the database), also that the log still extends it: the only way a rollback of the whole
   * database to an earlier copy shows. `brokenAt` is the first row that is wrong or missing, and
   * `reason` says what.
   */
  async verifyAuditChain(options: { since?: AuditCheckpoint } = {}): Promise<ChainCheck> {
    const since = own(options, 'since')
    let cp: AuditCheckpoint | undefined
    if (since !== undefined && since !== null) {
      if (!isObject(since, 'since')) throw invalid('since', 'must be a checkpoint from vault.checkpoint()')
      cp = {
        environment: str(own(since, 'environment', 'since.environment'), 'since.environment'),
        seq: optNum(own(since, 'seq', 'since.seq'), 'since.seq') ?? NaN,
        hash: str(own(since, 'hash', 'since.hash'), 'since.hash'),
        mac: str(own(since, 'mac', 'since.mac'), 'since.mac'),
      }
    }
    const c = await call(() => this.native.verifyAuditChain(cp?.environment, cp?.seq, cp?.hash, cp?.mac))
    return {
      rows: c.rows,
      ...(c.brokenAt != null ? { brokenAt: c.brokenAt, reason: c.reason ?? '' } : {}),
      ...(c.acknowledged.length > 0 ? { acknowledged: c.acknowledged } : {}),
    }
  }

  /**
   * An operator's step after `verifyAuditChain` found the log cut at its end, or this
   * environment's authenticated head deleted, forged or rolled back. Until then every write
   * (hydrates included: each is audited before its shares are released) is refused with
   * `ERR_TAMPERED`: the next write never heals a break by itself. This appends one audited row
   * that records what was found and `reason` (your incident reference), makes it the head, and
   * writes resume. The row stays in the log (`verifyAuditChain().acknowledged`); cutting it away
   * is a new break. Needs `integrity:admin`; `ERR_CONFLICT` when there is nothing to acknowledge.
   * Resolves to the row's seq.
   */
  async acknowledgeAuditBreak(reason: string, options: { actor?: string } = {}): Promise<number> {
    const r = str(reason, 'reason')
    const actor = actorOf(options)
    return call(() => this.native.acknowledgeAuditBreak(r, actor))
  }

  /**
   * The explicit operator step after upgrading a database from schema 1 (rows written before rows
   * were authenticated): authenticates every row of this environment that has no MAC (or no
   * recorded write) as it is, each with an audited `authenticate` row. Never done implicitly:
   * until then such rows are refused (`ERR_TAMPERED`). A row whose MAC fails is never
   * authenticated (`refused`). In an environment that is authenticated already, rows without a
   * MAC were stripped of it outside sharevault: refused (`ERR_CONFLICT`) unless `force: true`,
   * after checking them. Needs `integrity:admin`.
   */
  async authenticateExistingRows(options: { force?: boolean; actor?: string } = {}): Promise<AuthenticatedRows> {
    const force = own(options, 'force')
    if (force !== undefined && typeof force !== 'boolean') throw invalid('force', 'must be a boolean')
    const actor = actorOf(options)
    const r = await call(() => this.native.authenticateExistingRows(force === true, actor))
    return { authenticated: r.authenticated, refused: r.refused }
  }

  /**
   * This environment's authenticated audit head (sequence number, hash and MAC of its last row).
   * Store it outside the database (a log line, an object store) and pass it to
   * `verifyAuditChain({ since })` later. Needs `audit:read`.
   */
  async checkpoint(): Promise<AuditCheckpoint> {
    const c = await call(() => this.native.checkpoint())
    return { environment: c.environment, seq: c.seq, hash: c.hash, mac: c.mac }
  }

  /**
   * Every key of the environment's keyring (README, "Key rotation"): its state (`primary`,
   * `decrypt-only`, `retired`), the records wrapped under it (from a scan that checks every row's
   * MAC), their oldest and newest wrap time, and `due` when the primary, or any record's wrap, is
   * older than `rotateAfterDays` (default 90). Needs `audit:read`.
   */
  async keyStatus(options: { rotateAfterDays?: number } = {}): Promise<KeyStatus> {
    const days = optNum(own(options, 'rotateAfterDays'), 'rotateAfterDays')
    return keyStatusOf(await call(() => this.native.keyStatus(days)))
  }

  /**
   * Re-wraps every wallet's data key under the primary (the sealed shares are not touched; AWS
   * to AWS uses `ReEncrypt`, so no data key leaves KMS), or with `reencrypt: true` gives every
   * wallet a fresh data key and new ciphertext and shreds the old ones. Online (hydrates and
   * writes go on; a wallet written meanwhile is never overwritten with stale state), resumable
   * and idempotent (run it again after a kill or an abort: it finishes the rest and does nothing
   * twice), and several processes may run it at once. Needs `keys:admin`.
   */
  async rotate(options: RotateOptions = {}): Promise<RotationReport> {
    if (!isObject(options, 'options')) throw invalid('options', 'must be an object')
    const args = rotateArgs((k) => own(options, k), actorOf(options), optNum)
    return rotate(this.native, call, args)
  }

  /**
   * Marks a key of the keyring retired: no record wrapped under it is read from then on
   * (`ERR_KMS_DENIED`, naming it). Refused (`ERR_CONFLICT`) for the primary and while any
   * record, or the integrity key, is still wrapped under it (with the count). Needs `keys:admin`.
   */
  async retireKey(key: KeyRef, options: { actor?: string } = {}): Promise<void> {
    if (!isObject(key, 'key')) throw invalid('key', 'must be { provider, keyId }')
    const provider = str(own(key, 'provider'), 'key.provider')
    const keyId = str(own(key, 'keyId'), 'key.keyId')
    const actor = actorOf(options)
    await call(() => this.native.retireKey(provider, keyId, actor))
  }

  /**
   * Reclaims the space deleted and replaced rows left (SQLite `VACUUM` and a truncated WAL;
   * PostgreSQL `VACUUM` of the vault's tables) and says what that promises about the freed bytes
   * (`promise`). Needs `delete`. `sharevault compact` runs it from the shell.
   */
  async compact(options: { actor?: string } = {}): Promise<CompactReport> {
    const actor = actorOf(options)
    const c = await call(() => this.native.compact(actor))
    return { bytesBefore: c.bytesBefore, bytesAfter: c.bytesAfter, promise: c.promise }
  }

  /**
   * The environment's wallets per chain, the backend, its schema version and the data-key cache
   * settings this vault runs with: counted, nothing decrypted (`sharevault status`). Needs
   * `audit:read`.
   */
  async summary(): Promise<VaultSummary> {
    const s = await call(() => this.native.summary())
    const walletsByChain: Record<string, number> = {}
    for (const c of s.walletsByChain) walletsByChain[c.chainName] = c.wallets
    return { backend: s.backend as VaultSummary['backend'], schemaVersion: s.schemaVersion, walletsByChain, wallets: s.walletsByChain.reduce((n, c) => n + c.wallets, 0), cache: s.cache ? { ...s.cache } : null }
  }

  /** Counters since open: KMS calls by operation, data-key cache, errors by code, hydrate latency. */
  stats(): VaultStats {
    const s = callSync(() => this.native.stats())
    return { ...s, kmsCalls: { ...s.kmsCalls }, errors: { ...s.errors }, memory: { ...s.memory }, onAudit: { ...s.onAudit }, database: { tls: s.database.tls ?? null }, cacheHitRate: s.cacheHitRate ?? null, runtime: { ...s.runtime } }
  }

  /**
   * Finishes queued writes, closes the database and zeroizes the data keys the vault holds; later
   * calls fail with `ERR_CLOSED`. Every call resolves only once the vault is really closed.
   */
  async close(): Promise<void> {
    // SDK-wrapper calls in flight (after a refresh, new shares only the vault can still write or
    // seal) finish first; a vault closed under them would lose those shares.
    // Wrapper calls that start from now on are refused (ERR_CLOSED), so the wait ends.
    this.closing = true
    while (this.pending.size > 0) await Promise.allSettled([...this.pending])
    await call(() => this.native.close())
  }

  /** Calls the SDK wrapper is in the middle of (see `close`). */
  private readonly pending = new Set<Promise<unknown>>()
  private closing = false
}

/**
 * Runs an SDK-wrapper call that `close()` waits for; refused with `ERR_CLOSED` once the vault is
 * closing (so no call can start its irreversible SDK half on a vault about to go away). Not
 * exported from the package.
 */
export function holdOpen<T>(vault: Vault, start: () => Promise<T>): Promise<T> {
  if (vault['closing']) return Promise.reject(new VaultError('ERR_CLOSED', 'the vault is closing'))
  const pending = vault['pending']
  const work = start()
  pending.add(work)
  const done = () => pending.delete(work)
  work.then(done, done)
  return work
}
