/**
 * `sharevault/testing`: what a service's own tests need, offline and without a KMS. A real vault
 * on a throwaway database (`openTestVault`), contract fakes of the Dynamic SDK's wallet clients
 * that fail where the real SDK fails, generated SDK-shaped wallets, and helpers to assert on what
 * happened: the audit rows, the hydrations, and whether a share left the vault. No test-runner
 * dependency; the jest matchers are `sharevault/testing/jest`. See the README, "Testing your code".
 */
export { openTestVault, TestVault } from './vault'
export type { FailWritesOptions, ReopenOptions, TestVaultOptions } from './vault'
export { FakeWalletClient, FakeEvmWalletClient, FakeSvmWalletClient, FakeBtcWalletClient, FakeTonWalletClient, fakeClients, SdkError } from './fakes'
export { fakeDelegatedSdk } from './fakes'
export type { CreateArgs, DelegatedCallArgs, FakeDelegatedClient, MetadataArgs, StateArgs } from './fakes'
export {
  fakeCreatedWallet,
  fakeShares,
  emptyBackupInfo,
  backupInfoWithExternal,
  SHARE_COUNT,
  EcdsaKeygenResult,
  EcdsaPublicKey,
  Ed25519KeygenResult,
  BIP340KeygenResult,
} from './wallets'
export type { Chain, FakeWalletOptions } from './wallets'
export { auditOf, hydrationsOf } from './audit'
export type { AuditFilter, Hydrations } from './audit'
export { findShares, containsShareOf, ShareFingerprints, MIN_FRAGMENT } from './leaks'
export type { ShareSighting, ShareSource } from './leaks'
export { sharevaultMatchers } from './matchers'
export type { AuditExpectation, SharevaultMatchers } from './matchers'
