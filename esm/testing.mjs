// The ESM entry point of `sharevault/testing`: the CommonJS build, re-exported by name (one copy
// of every class for both forms). scripts/pack-test.js checks the names against the CommonJS ones.
import cjs from '../dist/testing/index.js'

export const {
  openTestVault,
  TestVault,
  FakeWalletClient,
  FakeEvmWalletClient,
  FakeSvmWalletClient,
  FakeBtcWalletClient,
  FakeTonWalletClient,
  fakeClients,
  fakeDelegatedSdk,
  SdkError,
  fakeCreatedWallet,
  fakeShares,
  emptyBackupInfo,
  backupInfoWithExternal,
  SHARE_COUNT,
  EcdsaKeygenResult,
  EcdsaPublicKey,
  Ed25519KeygenResult,
  BIP340KeygenResult,
  auditOf,
  hydrationsOf,
  findShares,
  containsShareOf,
  ShareFingerprints,
  MIN_FRAGMENT,
  sharevaultMatchers,
} = cjs
