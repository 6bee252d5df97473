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

/**
 * Unknown fields are kept at run time; the type has no index signature so that the SDK's own
 * `KeyShareBackupInfo` (an interface without one) is assignable to it.
 */
export interface KeyShareBackupInfo {
  passwordEncrypted: boolean
  backups: Record<string, KeyShareBackupEntry[]>
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

/**
 * A share as `withWallet` hands it out: the fields the SDK gave, as plain data (`Uint8Array`s as
 * `Uint8Array`s; a class instance such as `EcdsaKeygenResult` as a plain object with the same
 * fields). `pubkey` is typed `any` on purpose: the SDK's share types are classes whose
 * `EcdsaPublicKey` has a private member, which no plain object can satisfy in TypeScript, while the
 * SDK itself reads only `secretShare` and re-wraps `pubkey` where it needs a class. With `any`, the
 * hydrated shares can be passed to the SDK's own typings as they are (checked against
 * `@dynamic-labs-wallet/node` by `__test__/types/sdk-compat.ts`).
 */
export interface HydratedShare {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  pubkey: any
  secretShare: string
}

/** What `withWallet` hands to its callback. */
export interface HydratedWallet {
  walletMetadata: WalletMetadata
  externalServerKeyShares: HydratedShare[]
}
