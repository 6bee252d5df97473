/**
 * `sharevault/dynamic`: the Dynamic SDK's wallet clients with their state kept in a vault, so
 * application code never handles a key share. `vaulted(client, vault)` wraps a
 * `DynamicEvmWalletClient`, `DynamicSvmWalletClient`, or the BTC or TON client; see the README.
 */
export { vaulted } from './sdk/vaulted'
export type { BackupWritten, SharesReplaced, StoredWallet, VaultedClient, VaultedOptions } from './sdk/vaulted'
export { delegated } from './sdk/delegated'
export type { DelegatedArgs, DelegatedAuth, DelegatedClient, DelegatedSdk } from './sdk/delegated'
export { OPERATIONS } from './sdk/operations'
export type { ManagedMethod, Operation, OperationKind } from './sdk/operations'
export { UnpersistedSharesError } from './errors'
