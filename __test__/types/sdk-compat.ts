// Compiled by `npm run typecheck` (tsconfig.sdk-compat.json, "moduleResolution": "bundler": the
// SDK's typings do not resolve under nodenext, as SDK-CONTRACT.md says): sharevault's share and metadata types against the share classes and types of
// `@dynamic-labs-wallet/node`, in both directions. A line that stops compiling is a break for users.
import type {
  BIP340KeygenResult,
  EcdsaKeygenResult,
  Ed25519KeygenResult,
  ExportableEd25519KeygenResult,
  ServerKeyShare as SdkServerKeyShare,
} from '@dynamic-labs-wallet/node'
import type { KeyShareBackupInfo as SdkBackupInfo } from '@dynamic-labs-wallet/core'
import type { CreatedWallet, HydratedShare, HydratedWallet, KeyShareBackupInfo, ServerKeyShare } from 'sharevault'

declare const ecdsa: EcdsaKeygenResult
declare const ed25519: Ed25519KeygenResult
declare const exportable: ExportableEd25519KeygenResult
declare const bip340: BIP340KeygenResult
declare const sdkShares: SdkServerKeyShare[]
declare const sdkBackup: SdkBackupInfo

// The SDK's results go into the vault as they are.
export const stored: ServerKeyShare[] = [ecdsa, ed25519, exportable, bip340, ...sdkShares]
export const created: CreatedWallet['externalServerKeyShares'] = sdkShares
export const backupIn: KeyShareBackupInfo = sdkBackup

// What the vault hands back goes into the SDK's calls as it is.
declare const hydrated: HydratedWallet
export const toSdk: SdkServerKeyShare[] = hydrated.externalServerKeyShares
export const oneEcdsa: EcdsaKeygenResult = hydrated.externalServerKeyShares[0]
export const oneEd: Ed25519KeygenResult = hydrated.externalServerKeyShares[0]
export const oneBip: BIP340KeygenResult = hydrated.externalServerKeyShares[0]
declare const share: HydratedShare
export const secret: string = share.secretShare

// The SDK's types are real here, not `any` (which an unresolved import would silently give):
// @ts-expect-error a share without secretShare is not an SDK share
export const notAShare: SdkServerKeyShare = { pubkey: new Uint8Array(32) }

// Delegated access: the auth block the vault hands out is what the SDK's delegated calls take,
// and `delegated()` passes the SDK's own functions through with their own result types.
import { delegatedSignMessage, revokeDelegation, type DelegatedWalletClient } from '@dynamic-labs-wallet/node'
import type { HydratedDelegation, Vault } from 'sharevault'
import { delegated } from 'sharevault/dynamic'

declare const delegation: HydratedDelegation
declare const delegatedClient: DelegatedWalletClient
declare const vault: Vault
export const delegatedArgs: Parameters<typeof delegatedSignMessage>[1] = {
  walletId: delegation.walletId,
  walletApiKey: delegation.walletApiKey,
  keyShare: delegation.keyShare,
  message: 'hello',
  chainName: delegation.chain,
}
const agent = delegated(delegatedClient, vault, { delegatedSignMessage, revokeDelegation })
export const delegatedSignature: ReturnType<typeof delegatedSignMessage> = agent.signMessage({ walletId: 'w', message: 'hello', isFormatted: false })
export const delegatedRevoke: Promise<void> = agent.revoke({ walletId: 'w' })
