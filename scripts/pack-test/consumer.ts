// Compiled in the fresh project under "module": "nodenext" and under "moduleResolution":
// "bundler": every public type and value of the package is used here (pack-test.js checks the
// list against the package's exports with the TypeScript compiler itself).
import {
  Vault,
  VaultError,
  ErrorCode,
  migrate,
  DEFAULT_PERMISSIONS,
  ALL_PERMISSIONS,
  type AuditCheckpoint,
  type AuditEvent,
  type AuditRecord,
  type AuthenticatedRows,
  type ChainCheck,
  type AwsKmsOptions,
  type CacheOptions,
  type CreatedWallet,
  type DatabaseOptions,
  type HydratedShare,
  type HydratedWallet,
  type KeyShareBackupEntry,
  type KeyShareBackupInfo,
  type KmsOptions,
  type KeyCount,
  type KeyOptions,
  type KeyRef,
  type KeyReport,
  type KeyStatus,
  type RotateOptions,
  type RotateProgress,
  type RotationReport,
  type ListOptions,
  type LocalKmsOptions,
  type Pkcs11KmsOptions,
  type TransitKmsOptions,
  type Migrated,
  type OpenOptions,
  type Permission,
  type PoolOptions,
  type ReplaceSharesInput,
  type ServerKeyShare,
  type ThresholdSignatureScheme,
  type VaultErrorCode,
  type VaultStats,
  type VaultSummary,
  type CompactReport,
  type WalletMetadata,
  type WithWalletOptions,
  type Delegation,
  type DelegationKeyInfo,
  type DelegationWebhookInput,
  type DelegationWebhookResult,
  type HydratedDelegation,
  type ListDelegationsOptions,
  type WithDelegationOptions,
} from 'sharevault'
import * as dynamic from 'sharevault/dynamic'
import { vaulted, delegated, UnpersistedSharesError, type VaultedClient, type DelegatedArgs, type DelegatedAuth, type DelegatedClient, type DelegatedSdk } from 'sharevault/dynamic'

/** A client shaped like the SDK's: the wrapper's types come from its own signatures. */
class MiniClient {
  async signMessage(args: { accountAddress: string; message: string; walletMetadata: WalletMetadata; externalServerKeyShares: ServerKeyShare[] }): Promise<string> {
    return args.message
  }
  async ping(): Promise<number> {
    return 1
  }
}

const scheme: ThresholdSignatureScheme = 'TWO_OF_TWO'
const entry: KeyShareBackupEntry = { location: 'external' }
const backup: KeyShareBackupInfo = { passwordEncrypted: false, backups: { external: [entry] } }
const metadata: WalletMetadata = { walletId: 'w', accountAddress: '0x1', chainName: 'EVM', thresholdSignatureScheme: scheme, externalServerKeySharesBackupInfo: backup }
const share: ServerKeyShare = { pubkey: new Uint8Array(32), secretShare: 's' }
const created: CreatedWallet = { walletMetadata: metadata, externalServerKeyShares: [share] }
const local: LocalKmsOptions = { provider: 'local', key: new Uint8Array(32) }
const aws: AwsKmsOptions = { provider: 'aws', keyId: 'alias/k', region: 'us-east-1', timeoutMs: 5000 }
const transit: TransitKmsOptions = { provider: 'transit', address: 'https://vault.example:8200', keyName: 'wallets', appRole: { roleId: 'r', secretId: 's' } }
const hsm: Pkcs11KmsOptions = { provider: 'pkcs11', module: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'wallets', keyLabel: 'kek' }
const kms: KmsOptions = Math.random() > 2 ? aws : Math.random() > 3 ? { ...transit, previous: [hsm] } : local
const cache: CacheOptions = { maxEntries: 10 }
const pool: PoolOptions = { maxConnections: 4 }
const db: DatabaseOptions = { database: ':memory:', pool }
const grants: readonly Permission[] = [...DEFAULT_PERMISSIONS, 'hydrate:export']
export const everything: readonly Permission[] = ALL_PERMISSIONS
const onAudit = (e: AuditEvent): void => console.log(e.action, e.at.toISOString())
const open: OpenOptions = { ...db, environment: 'e', kms, cache, migrate: true, allow: grants, onAudit, hardenProcess: false }
const list: ListOptions = { limit: 10 }
const withOpts: WithWalletOptions = { purpose: 'sign' }
const replace: ReplaceSharesInput = { externalServerKeyShares: [share], backupInfo: backup, thresholdSignatureScheme: 'TWO_OF_THREE' }
const code: VaultErrorCode = ErrorCode.ErrNotFound

export async function use(): Promise<void> {
  const m: Migrated = await migrate(db)
  const vault: Vault = await Vault.open(open)
  await vault.storeWallet(created)
  const n: number = await vault.withWallet(metadata.accountAddress, (w: HydratedWallet) => w.externalServerKeyShares.filter((s: HydratedShare) => s.secretShare).length, withOpts)
  await vault.replaceShares(metadata.accountAddress, replace)
  const audit: AuditRecord[] = await vault.auditLog({ limit: 1 })
  const stats: VaultStats = vault.stats()
  const summary: VaultSummary = await vault.summary()
  const compact = (): Promise<CompactReport> => vault.compact()
  console.log(summary.walletsByChain, summary.schemaVersion, typeof compact)
  const checkpoint: AuditCheckpoint = await vault.checkpoint()
  const check: ChainCheck = await vault.verifyAuditChain({ since: checkpoint })
  console.log(check.brokenAt ?? check.rows, stats.memory.mlock, stats.onAudit.dropped, stats.database.tls)
  const acknowledged: number[] | undefined = check.acknowledged
  const authenticate = (force: boolean): Promise<AuthenticatedRows> => vault.authenticateExistingRows({ force })
  const acknowledge = (reason: string): Promise<number> => vault.acknowledgeAuditBreak(reason)
  console.log(acknowledged, typeof authenticate, typeof acknowledge)
  const listed: WalletMetadata[] = await vault.listWallets(list)
  const client: VaultedClient<MiniClient> = vaulted(new MiniClient(), vault)
  const signed: string = await client.signMessage({ accountAddress: metadata.accountAddress, message: 'm' })
  const pong: number = await client.ping()
  try {
    await vault.recoverSealed('')
  } catch (e) {
    if (e instanceof UnpersistedSharesError) console.log(e.sealed)
  }
  console.log(signed, pong)
  try {
    await vault.getMetadata('0x2')
  } catch (e) {
    if (e instanceof VaultError && e.code === code) console.log(m, n, audit, stats, listed, Object.keys(dynamic))
  }
  // The key lifecycle (README, "Key rotation").
  const previous: KeyOptions[] = [local]
  const moving: KmsOptions = { ...aws, previous }
  const progress = (p: RotateProgress): void => console.log(p.done, p.total, p.failed)
  const rotateOptions: RotateOptions = { batchSize: 100, onProgress: progress }
  const report: RotationReport = await vault.rotate(rotateOptions)
  const before: KeyCount[] = report.before
  const status: KeyStatus = await vault.keyStatus({ rotateAfterDays: 90 })
  const first: KeyReport | undefined = status.keys[0]
  const ref: KeyRef = { provider: first?.provider ?? 'local', keyId: first?.keyId ?? '' }
  await vault.retireKey(ref).catch(() => undefined)
  console.log(moving, before)
  // Delegated access (README, "Delegated access").
  const key: DelegationKeyInfo = await vault.importDelegationKey('-----BEGIN PRIVATE KEY-----')
  const input: DelegationWebhookInput = { rawBody: Buffer.from('{}'), headers: { 'x-dynamic-signature-256': 'sig' }, secret: 's', maxAgeMs: 60_000 }
  const result: DelegationWebhookResult = await vault.receiveDelegationWebhook(input)
  const delegationOptions: WithDelegationOptions = { purpose: 'sign' }
  const apiKeyLength: number = await vault.withDelegation('w', (d: HydratedDelegation) => d.walletApiKey.length, delegationOptions)
  const listOptions: ListDelegationsOptions = { userId: 'u', limit: 10 }
  const delegations: Delegation[] = await vault.listDelegations(listOptions)
  const sdk: DelegatedSdk<MiniClient, { message: string }, string> = {
    delegatedSignMessage: async (_c: MiniClient, a: { message: string } & DelegatedAuth) => a.message,
    revokeDelegation: async () => undefined,
  }
  const agent: DelegatedClient<{ message: string }, string, Record<string, unknown>, unknown, Record<string, unknown>, unknown> = delegated(new MiniClient(), vault, sdk)
  const args: DelegatedArgs<{ message: string }> = { walletId: 'w', message: 'm' }
  const delegatedSignature: string = await agent.signMessage(args)
  await agent.revoke({ walletId: 'w' })
  console.log(key.fingerprint, result.status, apiKeyLength, delegations.length, delegatedSignature)
  await vault.close()
}
