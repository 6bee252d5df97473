/** The vault's own option and result types; the SDK's shapes are in `./sdk/types`. */
import type { VaultErrorCode } from './errors'
import type { HydratedShare, KeyShareBackupInfo, ServerKeyShare, ThresholdSignatureScheme } from './sdk/types'

export * from './sdk/types'

export interface LocalKmsOptions {
  provider: 'local'
  /** 32 bytes: a Buffer, a Uint8Array or base64. Development only: the key lives in the process. */
  key: Uint8Array | string
}
export interface AwsKmsOptions {
  provider: 'aws'
  /** Key id, key ARN or alias (`alias/wallets-prod`). */
  keyId: string
  /** Defaults to the AWS chain's region (AWS_REGION, profile). */
  region?: string
  /** `https://…`; plain `http://` only on a loopback address (an emulator). */
  endpoint?: string
  /** Static credentials; without them the standard AWS chain is used. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }
  /** Deadline per KMS operation, retries included (default 5000). */
  timeoutMs?: number
  /** Attempts per operation, jittered exponential backoff between them (default 3). */
  maxAttempts?: number
}
/**
 * A derived key in HashiCorp Vault or OpenBao Transit (`bao write transit/keys/<name> derived=true`):
 * the context (environment and walletId) derives the key each data key is wrapped with.
 */
export interface TransitKmsOptions {
  provider: 'transit'
  /** `https://vault.example:8200`; plain `http://` only on a loopback address (a dev server). */
  address: string
  keyName: string
  /** The Transit mount (default `transit`). */
  mount?: string
  /** Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`). */
  namespace?: string
  /** A token; without it (and without `appRole`), `VAULT_TOKEN` or `BAO_TOKEN`. */
  token?: string
  /** AppRole login instead of a token (the token it returns is renewed by logging in again). */
  appRole?: { roleId: string; secretId: string; mount?: string }
  /** PEM file of the CA(s) to trust instead of the system's roots. */
  caFile?: string
  /** Deadline per attempt (default 5000). */
  timeoutMs?: number
  /** Attempts per operation, jittered exponential backoff between them (default 3). */
  maxAttempts?: number
}
/**
 * An AES-256 key on a PKCS#11 token (an HSM): private, sensitive and non-extractable, allowed to
 * encrypt and decrypt; it wraps each data key with CKM_AES_GCM, the wallet's context as AAD.
 */
export interface Pkcs11KmsOptions {
  provider: 'pkcs11'
  /** Path of the PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`. */
  module: string
  /** The token, by label (or `slot`). */
  tokenLabel?: string
  slot?: number
  /** `CKA_LABEL` of the key on the token. */
  keyLabel: string
  /** The user PIN; without it, `SHAREVAULT_PKCS11_PIN` from the environment. */
  pin?: string
}
/** One key-encryption key: a provider and its options. */
export type KeyOptions = LocalKmsOptions | AwsKmsOptions | TransitKmsOptions | Pkcs11KmsOptions
/**
 * The environment's primary key (every new data key is wrapped under it), and, during a move to
 * a new key, the earlier keys that must still unwrap until `vault.rotate()` has moved every record
 * (README, "Key rotation"). Opening with a new primary registers it in the environment's keyring;
 * the old primary becomes `decrypt-only`.
 */
export type KmsOptions = KeyOptions & {
  /** Earlier keys that may still unwrap (never wrap). */
  previous?: readonly KeyOptions[]
  /**
   * Accept the local key for an environment whose name looks like production (`prod`,
   * `production`, `live`, `prd` as a word of it), which is refused otherwise.
   */
  allowInProduction?: boolean
}

/** A key of the keyring, as `retireKey` names it: the ARN for AWS, the fingerprint for a local key. */
export interface KeyRef {
  provider: string
  keyId: string
}

/** What `compact()` did, and what it promises about freed bytes. */
export interface CompactReport {
  /** SQLite: the file; PostgreSQL: the vault's tables. */
  bytesBefore: number
  bytesAfter: number
  /** What the backend's compaction does and does not promise about the freed bytes. */
  promise: string
}

/** What the vault holds, counted (`summary`): nothing is decrypted. */
export interface VaultSummary {
  backend: 'sqlite' | 'postgres'
  /** The schema version the database is at (an open vault's is this sharevault's). */
  schemaVersion: number
  /** The environment's wallets per chain name. */
  walletsByChain: Record<string, number>
  wallets: number
  /** The data-key cache's settings with the defaults filled in; `null` when it is off (`cache: false`). */
  cache: Required<CacheOptions> | null
}

/** One key of the environment (`keyStatus`). */
export interface KeyReport extends KeyRef {
  /** The version (material id) last seen as the key's current one ('1' where the provider does not say). */
  keyVersion: string
  /** `unknown`: records name the key, the keyring does not hold it. */
  state: 'primary' | 'decrypt-only' | 'retired' | 'unknown'
  addedAt: Date | null
  changedAt: Date | null
  /** Records (wallets) whose data key is wrapped under this key, each row's MAC checked. */
  records: number
  byVersion: { version: string; records: number }[]
  oldestWrap: Date | null
  newestWrap: Date | null
  /** Records from before wrap times were recorded (schema 4): counted as due. */
  unknownWrapTime: number
  /** The environment's integrity key is wrapped under (or derived from) this key. */
  integrityKey: boolean
  /** This vault was opened with the key (as `kms` or in `kms.previous`). */
  configured: boolean
  /** The primary for longer than `rotateAfterDays`, or a record under it wrapped longer ago. */
  due: boolean
  /** The provider's own automatic rotation of the key, where it tells it (AWS); reported, never required. */
  /** What the provider says about its own rotation of the key (AWS, Transit); `minDecryptionVersion`: the oldest version Transit still decrypts with (records below it are refused until rotated). */
  providerRotation: { enabled: boolean; periodDays: number | null; nextRotation: Date | null; minDecryptionVersion: string | null } | null
  /** Why the key's keyring entry does not verify (then it is trusted for nothing). */
  tampered: string | null
}

export interface KeyStatus {
  keys: KeyReport[]
  /** Records behind the primary: another key, another version, no recorded wrap time, or (during a re-encryption) sealed before it began. */
  behind: number
  /** Rows that do not verify (counted under no key). */
  tampered: number
  rotateAfterDays: number
  /** While a re-encryption runs: records sealed before this get a fresh data key. */
  reencryptBefore: Date | null
  /** Any key due. */
  due: boolean
}

export interface RotateProgress {
  done: number
  total: number
  failed: number
}

export interface RotateOptions {
  /** A fresh data key and new ciphertext for every record (a suspected data-key or share exposure), not only a re-wrap. */
  reencrypt?: boolean
  /** Rows claimed per batch (1 to 1000, default 200). */
  batchSize?: number
  /** Rows moved at once within a batch (1 to 64, default 8). */
  concurrency?: number
  /** Stops between batches; the promise rejects with an `AbortError`. Run `rotate` again to finish. */
  signal?: AbortSignal
  /** After every batch. */
  onProgress?: (progress: RotateProgress) => void
  actor?: string
}

/** Records per key, before or after a rotation. */
export interface KeyCount extends KeyRef {
  state: KeyReport['state']
  records: number
}

export interface RotationReport {
  reencrypt: boolean
  /** Records that were behind when the run began. */
  total: number
  /** Records moved by this run. */
  done: number
  /** Records that needed nothing when read (moved by a concurrent write, deleted, or by another rotator). */
  skipped: number
  failed: number
  failures: Record<string, number>
  /** Still behind after the run (failures, rows another process was rotating, rows written under an old key by a process not yet reopened). */
  remaining: number
  before: KeyCount[]
  after: KeyCount[]
  durationMs: number
}

/** The data-key cache on the hydrate path (default on: 1000 entries, 5 minutes, 10,000 uses). */
export interface CacheOptions {
  maxEntries?: number
  maxAgeMs?: number
  maxUses?: number
}

export interface VaultStats {
  kmsCalls: { generateDataKey: number; decrypt: number; reEncrypt: number; /** `Encrypt` of an existing data key: a rotation that could not move it inside the provider */ encrypt: number; describeKey: number; /** HTTP attempts, retries included (AWS) */ attempts: number }
  cacheHits: number
  cacheMisses: number
  cacheEvictions: number
  /** `cacheHits / (cacheHits + cacheMisses)` since open, `null` before the first lookup. Every miss is a KMS `Decrypt` (AWS): size `cache.maxEntries` to the working set (README, "Sizing the data-key cache"). */
  cacheHitRate: number | null
  errors: Record<string, number>
  hydrations: number
  hydrateP50Ms: number
  hydrateP95Ms: number
  hydrateP99Ms: number
  /** What became of the entries offered to `onAudit`. */
  onAudit: { queued: number; dropped: number; delivered: number; failed: number }
  /** Which memory protections are in force (process-wide; see the README's "Memory"). */
  memory: {
    /** Pages holding plaintext shares and data keys are locked in RAM (never swapped). */
    mlock: boolean
    /** Those pages are excluded from core dumps. */
    dontDump: boolean
    /** The process is not dumpable (`hardenProcess: true`). */
    nonDumpable: boolean
    /** Locks the OS refused (RLIMIT_MEMLOCK); those secrets were in swappable memory. */
    mlockFailures: number
    /** Pages locked now. */
    lockedPages: number
  }
  /** The database connection: `tls` is the TLS version PostgreSQL negotiated (`'TLSv1.3'`), or null. */
  database: { tls: string | null }
  /** The runtime the vault's work runs on, process-wide (README, "Threads"): worker threads and the nice value of the vault's threads. */
  runtime: { workerThreads: number; nice: number }
}

/** PostgreSQL connection pool (ranges are checked by the core; see the README). */
export interface PoolOptions {
  maxConnections?: number
  /** How long a call waits for a connection before `ERR_DB_UNAVAILABLE`. */
  acquireTimeoutMs?: number
  /** The server aborts a statement that runs longer. */
  statementTimeoutMs?: number
}

/** Where the data lives and how to reach it: what `migrate()` and `Vault.open` share. */
export interface DatabaseOptions {
  /** `sqlite://path`, a plain path, `':memory:'`, or `postgres://…` / `postgresql://…`. */
  database: string
  /** PostgreSQL only. */
  pool?: PoolOptions
  /** PostgreSQL only: allow a connection without TLS to a host that is not loopback. */
  allowInsecureTransport?: boolean
  /**
   * PostgreSQL over TLS refuses anything older than TLS 1.3 by default (`ERR_INVALID_INPUT`, path
   * `database`, naming what the server offered). `true` also accepts TLS 1.2, for an old server.
   * `stats().database.tls` says what was negotiated.
   */
  allowTls12?: boolean
}

/** What `migrate()` found and left: schema versions (0: there was no schema). */
export interface Migrated {
  from: number
  to: number
}

export interface OpenOptions extends DatabaseOptions {
  /** Bound into every record; a vault only ever opens its own environment's wallets. */
  environment: string
  kms: KmsOptions
  /** Default actor for the audit log. */
  actor?: string
  /** `false` turns the data-key cache off (one KMS Decrypt per hydrate). */
  cache?: CacheOptions | false
  /**
   * `true` (the default): opening creates the schema or brings it up to date. `false`: opening
   * never runs DDL, and a database whose schema is missing or older is refused (`ERR_STORAGE`);
   * for a role without `CREATE`, with the schema managed by `sharevault migrate`.
   */
  migrate?: boolean
  /**
   * What this handle may do (least privilege): exactly the permissions listed. Without it:
   * `DEFAULT_PERMISSIONS`, everything but `hydrate:export`, `delete`, `integrity:admin` (the
   * operator's `acknowledgeAuditBreak` and `authenticateExistingRows`), `keys:admin`
   * (`rotate`, `retireKey`, `importDelegationKey`) and `hydrate:delegated` (`withDelegation`).
   * A refused call is
   * `ERR_FORBIDDEN`, audited with outcome `denied`, and touches no key. A hydrate needs the
   * permission of its purpose: `export` → `hydrate:export`, `backup` → `backup`, `refresh` /
   * `reshare` → `replace`, anything else → `hydrate:sign`.
   */
  allow?: readonly Permission[]
  /**
   * Make the whole process non-dumpable when the vault opens (`PR_SET_DUMPABLE 0`: no core dump,
   * no ptrace or `/proc/<pid>/mem` for other users). Off by default because it is process-wide.
   */
  hardenProcess?: boolean
  /**
   * Delegated access: where the RSA private key that Dynamic's delegation webhooks are encrypted
   * to lives, when it is not imported into the vault (`importDelegationKey`): a PEM file, or an
   * environment variable holding the PEM (PKCS#8). Read into Rust memory only; refused at open
   * (`ERR_INVALID_INPUT` at this path) if it is not a usable RSA key.
   */
  delegation?: { privateKeyFile?: string; privateKeyEnv?: string }
  /**
   * Called with every committed audit entry (a copy for your log pipeline or SIEM; the audit log
   * in the database stays the record). Entries wait in a bounded queue (4,096) for the JS thread
   * and are dropped, never waited for, when it is full, so a slow handler never slows a call:
   * `stats().onAudit` counts what was queued, dropped, delivered and what threw (a throw is
   * swallowed). Never holds share material.
   */
  onAudit?: (entry: AuditEvent) => void
}

/** One committed audit entry, as `onAudit` receives it (an `AuditRecord` without chain fields). */
export interface AuditEvent {
  at: Date
  environment: string
  actor: string
  action: string
  address: string
  walletId?: string
  purpose?: string
  outcome: string
}

/** One thing a vault handle may do (see `OpenOptions.allow`). */
export type Permission =
  | 'store'
  | 'hydrate:sign'
  | 'hydrate:export'
  | 'backup'
  | 'replace'
  | 'delete'
  | 'audit:read'
  | 'integrity:admin'
  | 'keys:admin'
  | 'delegation:write'
  | 'hydrate:delegated'

export interface WithWalletOptions {
  /** Why the shares are needed: `sign`, `export`, `backup`, `refresh`, … (audited). */
  purpose?: string
  /** Who asks (audited); defaults to the vault's actor. */
  actor?: string
}

export interface ReplaceSharesInput {
  externalServerKeyShares: ServerKeyShare[]
  backupInfo: KeyShareBackupInfo
  /** After a reshare that changed the scheme. */
  thresholdSignatureScheme?: ThresholdSignatureScheme
}

export interface ListOptions {
  chainName?: string
  /** 1 to 1000; default 100. */
  limit?: number
  /** Return wallets whose address sorts after this one (pagination). */
  after?: string
}

/** What `verifyAuditChain` found: `brokenAt` (and `reason`) only when something is wrong. */
export interface ChainCheck {
  rows: number
  /** The first row that is wrong or missing. */
  brokenAt?: number
  /** What is wrong there, in words. */
  reason?: string
  /**
   * The seqs of this environment's rows that record an operator's acknowledgement of an earlier
   * break (`acknowledgeAuditBreak`): the evidence of that break, which stays in the log. Present
   * only when there is one.
   */
  acknowledged?: number[]
}

/** What `authenticateExistingRows` did. */
export interface AuthenticatedRows {
  /** Rows authenticated as they were (one audited `authenticate` row each). */
  authenticated: number
  /** Rows whose MAC fails: never authenticated (they were changed outside sharevault). */
  refused: number
}

/**
 * An environment's authenticated audit head, from `vault.checkpoint()`: plain JSON, safe to log
 * (no secret: the MAC proves it came from a vault holding the environment's key).
 */
export interface AuditCheckpoint {
  environment: string
  seq: number
  /** Hex SHA-256 of the row at `seq`. */
  hash: string
  /** Hex HMAC-SHA-256 of the position, under the environment's integrity key. */
  mac: string
}

/** One row of the audit log: the entry and its place in the hash chain. */
export interface AuditRecord extends AuditEvent {
  seq: number
  hash: string
}

/** The RSA key Dynamic's delegation webhooks are decrypted with (no secret). */
export interface DelegationKeyInfo {
  /** SHA-256 of the public key's DER (SubjectPublicKeyInfo), hex: `openssl pkey -pubout -outform DER | sha256sum`. */
  fingerprint: string
  bits: number
  /** `vault`: imported with `importDelegationKey`, sealed in the database; `options`: `Vault.open`'s `delegation`. */
  source: 'vault' | 'options'
  importedAt?: Date
}

/** A webhook request as the route received it. */
export interface DelegationWebhookInput {
  /** The raw request body, byte for byte (`express.raw()`, not parsed JSON): the signature covers these bytes. */
  rawBody: Uint8Array | string
  /** The request headers (Node's `req.headers` or a Fetch `Headers`): `x-dynamic-signature-256` is read. */
  headers: Record<string, string | string[] | undefined> | { get(name: string): string | null }
  /** The webhook's secret from Dynamic's dashboard. */
  secret: string | Uint8Array
  /** Refuse events whose `timestamp` is older than this (default 24 h; 0: no limit). */
  maxAgeMs?: number
  /** The Dynamic environment id this vault serves: an event of another (`environmentId` in its body) is refused (400). */
  environmentId?: string
  actor?: string
}

/** What a webhook delivery came to, with the HTTP status to answer Dynamic with. */
export interface DelegationWebhookResult {
  /** 200 handled; 400 refused (bad event, expired); 401 bad signature; 403 not permitted; 409 conflict; 5xx retry later. */
  status: number
  /**
   * `stored` / `replaced` (a re-delegation) / `revoked` / `not_found` (a revocation of nothing) /
   * `stale` (older than the delegation stored: kept as it was) / `pong` / `ignored` (another
   * event) / `refused` (4xx) / `failed` (5xx).
   */
  outcome: 'stored' | 'replaced' | 'revoked' | 'not_found' | 'stale' | 'pong' | 'ignored' | 'refused' | 'failed'
  eventId?: string
  eventName?: string
  walletId?: string
  /** The event was handled before: this is the first delivery's result, and nothing was written. */
  replay: boolean
  code?: VaultErrorCode
  message?: string
  path?: string
}

/** A stored delegation, without its secrets. */
export interface Delegation {
  walletId: string
  chain: string
  /** The wallet's address (the webhook's `publicKey`). */
  address: string
  userId: string
  shareSetId?: string
  /** The webhook event that delegated (or last re-delegated) it. */
  eventId?: string
  delegatedAt: Date
  /** 1, and one more for each re-delegation. */
  generation: number
}

/** What `withDelegation` hands its callback, for one delegated SDK call. */
export interface HydratedDelegation {
  walletId: string
  chain: string
  address: string
  userId: string
  /** The delegated key share, as Dynamic sent it (JSON: a `ServerKeyShare` as the SDK's delegated calls take it). */
  keyShare: HydratedShare
  /** The per-wallet API key the delegated SDK calls authenticate with. */
  walletApiKey: string
}

export interface WithDelegationOptions {
  /** Why (audited); default none. */
  purpose?: string
  actor?: string
}

export interface ListDelegationsOptions {
  userId?: string
  chain?: string
  limit?: number
  /** The last `walletId` of the previous page. */
  after?: string
}
