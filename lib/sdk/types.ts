/**
 * The shapes sharevault needs from Dynamic's Node server-wallet SDK, declared here so they are
 * structurally compatible with the SDK's own types (whose .d.ts does not resolve under every
 * moduleResolution). See SDK-CONTRACT.md. The SDK knowledge lives under `lib/sdk/`; `Vault`
 * stays a storage API that takes and returns these shapes.
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
