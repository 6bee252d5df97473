/**
 * The shapes sharevault needs from Dynamic's Node server-wallet SDK, declared here so they are
 * structurally compatible with the SDK's own types (whose .d.ts does not resolve under every
 * moduleResolution). See SDK-CONTRACT.md.
 */

export type ThresholdSignatureScheme = 'TWO_OF_TWO' | 'TWO_OF_THREE' | 'THREE_OF_FIVE'

export interface KeyShareBackupEntry {
  location: string
  externalKeyShareId?: string
  keyShareId?: string
  passwordEncrypted?: boolean
}

export interface KeyShareBackupInfo {
  passwordEncrypted: boolean
  backups: Record<string, KeyShareBackupEntry[]>
  [extra: string]: unknown
}

export interface WalletMetadata {
  walletId: string
  accountAddress: string
  chainName: string
  thresholdSignatureScheme: ThresholdSignatureScheme | string
  derivationPath?: string
  addressType?: 'taproot' | 'native_segwit' | string
  externalServerKeySharesBackupInfo?: KeyShareBackupInfo
  /** The SDK carries more fields than it documents (shareSetId, otherShareSets, …): all kept. */
  [extra: string]: unknown
}

/** One external server key share (EcdsaKeygenResult, Ed25519KeygenResult, BIP340KeygenResult). */
export interface ServerKeyShare {
  /** `Uint8Array` (Ed25519, BIP340) or `{ pubkey: Uint8Array }` (ECDSA). */
  pubkey?: unknown
  secretShare: string
}

/** What `createWalletAccount()` / `importPrivateKey()` return (the parts sharevault keeps). */
export interface CreatedWallet {
  walletMetadata: WalletMetadata
  externalServerKeyShares: ServerKeyShare[]
  [extra: string]: unknown
}

/** What `withWallet` hands to its callback. */
export interface HydratedWallet {
  walletMetadata: WalletMetadata
  externalServerKeyShares: ServerKeyShare[]
}

export type LocalKmsOptions = { provider: 'local'; key: Uint8Array | string }
export type KmsOptions = LocalKmsOptions

export interface OpenOptions {
  /** `sqlite://path`, a plain path, or `':memory:'`. */
  database: string
  /** Bound into every record; a vault only ever opens its own environment's wallets. */
  environment: string
  kms: KmsOptions
  /** Default actor for the audit log. */
  actor?: string
}

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

export interface AuditRecord {
  seq: number
  at: Date
  environment: string
  actor: string
  action: string
  address: string
  walletId?: string
  purpose?: string
  outcome: string
  hash: string
}
