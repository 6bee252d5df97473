/**
 * `vaulted(client, vault)`: one of the Dynamic SDK's wallet clients (EVM, SVM, BTC, TON; 1.x
 * stateless API) with the wallet state supplied by the vault. Application code passes what the
 * SDK needs minus `walletMetadata` and `externalServerKeyShares`; the wrapper hydrates them for
 * the one call (audited with the method's purpose), writes back what the call changed (backup
 * info; new shares, atomically), and never returns a key share. See `operations.ts` for the table.
 */
import { UnpersistedSharesError, VaultError } from '../errors'
import type { VaultErrorCode } from '../errors'
import { redactShare } from '../redact'
import { callNative, nativeOf, type Vault } from '../vault'
import { OPERATIONS, type ManagedMethod, type MethodsOfKind, type Operation } from './operations'
import type { KeyShareBackupInfo, ServerKeyShare, ThresholdSignatureScheme, WalletMetadata } from './types'

export interface VaultedOptions {
  /** Audit actor for every call through this client (default: the vault's). */
  actor?: string
  /**
   * How long writing new state is retried (with backoff) after the SDK returned it, before the
   * call fails with `ERR_UNPERSISTED_SHARES` (default 15,000 ms).
   */
  persistDeadlineMs?: number
}

/** What `createWalletAccount` / `importPrivateKey` resolve to through the wrapper: no shares. */
export interface StoredWallet {
  walletMetadata: WalletMetadata
  rawPublicKey: unknown
  publicKeyHex?: string
}

/** What `storeEncryptedBackupByWallet` / `updatePassword` resolve to: the stored metadata. */
export interface BackupWritten {
  walletMetadata: WalletMetadata
  backupInfo: KeyShareBackupInfo
}

/** What `refreshWalletAccountShares` / `reshare` resolve to: the stored metadata, no shares. */
export interface SharesReplaced {
  walletMetadata: WalletMetadata
}

// The client's own parameter and result types, so a typo or a missing field is a compile error.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyFn = (...args: any[]) => any
type FirstArg<F> = F extends (arg: infer A, ...rest: never[]) => unknown ? A : never
type Result<F> = F extends AnyFn ? Awaited<ReturnType<F>> : never
/** The state parameters the wrapper supplies. */
type StateParam = 'walletMetadata' | 'externalServerKeyShares'
type WithoutState<A> = Omit<A, StateParam>

export type VaultedClient<C> = Omit<C, ManagedMethod> & {
  [M in MethodsOfKind<'hydrate'> & keyof C]: (args: WithoutState<FirstArg<C[M]>>) => Promise<Result<C[M]>>
} & {
  [M in MethodsOfKind<'create'> & keyof C]: (
    args: Omit<FirstArg<C[M]>, 'backUpToDynamic'> & { backUpToDynamic?: boolean },
  ) => Promise<StoredWallet>
} & {
  [M in MethodsOfKind<'merge'> & keyof C]: (args: WithoutState<FirstArg<C[M]>>) => Promise<BackupWritten>
} & {
  [M in MethodsOfKind<'replace'> & keyof C]: (args: WithoutState<FirstArg<C[M]>>) => Promise<SharesReplaced>
}

/** Codes worth retrying a write on: the database or KMS may come back, a race may clear. */
const TRANSIENT: VaultErrorCode[] = ['ERR_DB_UNAVAILABLE', 'ERR_STORAGE', 'ERR_CONFLICT', 'ERR_KMS_UNAVAILABLE']
/** For a store, a conflict is not a race: the address is taken (see `create` for the exception). */
const STORE_TRANSIENT: VaultErrorCode[] = ['ERR_DB_UNAVAILABLE', 'ERR_STORAGE', 'ERR_KMS_UNAVAILABLE']

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object'
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Runs `write` until it succeeds, fails for good, or the deadline passes (jittered backoff). */
async function persist<T>(write: (attempt: number) => Promise<T>, deadlineMs: number, transientCodes = TRANSIENT): Promise<T> {
  const end = Date.now() + deadlineMs
  for (let attempt = 0; ; attempt++) {
    try {
      return await write(attempt)
    } catch (e) {
      const transient = e instanceof VaultError && transientCodes.includes(e.code)
      const wait = Math.min(2000, 50 * 2 ** attempt) * (0.5 + Math.random() / 2)
      if (!transient || Date.now() + wait > end) throw e
      await sleep(wait)
    }
  }
}

function accountAddressOf(args: unknown, method: string): string {
  const a = isObject(args) ? args.accountAddress : undefined
  if (typeof a !== 'string' || a.length === 0) {
    throw new VaultError('ERR_INVALID_INPUT', `${method} needs accountAddress`, 'accountAddress')
  }
  return a
}

/** The shares and backup info an SDK call returned, checked before anything is written. */
function newState(result: unknown, method: string): { shares: ServerKeyShare[]; backupInfo: KeyShareBackupInfo } {
  if (!isObject(result) || !Array.isArray(result.externalServerKeyShares) || !isObject(result.backupInfo)) {
    throw new VaultError('ERR_INVALID_INPUT', `${method} did not return externalServerKeyShares and backupInfo`, 'result')
  }
  return { shares: result.externalServerKeyShares as ServerKeyShare[], backupInfo: result.backupInfo as KeyShareBackupInfo }
}

/**
 * Wraps an SDK wallet client (`DynamicEvmWalletClient`, `DynamicSvmWalletClient`, the BTC and TON
 * clients) so that every call gets its wallet state from `vault` and writes back what it changes.
 * Methods the wrapper does not manage pass through to the client untouched.
 */
export function vaulted<C extends object>(client: C, vault: Vault, options: VaultedOptions = {}): VaultedClient<C> {
  const actor = options.actor
  const deadline = options.persistDeadlineMs ?? 15_000
  const native = nativeOf(vault)
  const sdk = client as unknown as Record<string, AnyFn>

  const hydrated = async <T>(
    address: string,
    purpose: string,
    use: (walletMetadata: WalletMetadata, shares: ServerKeyShare[], generation: number) => Promise<T>,
  ): Promise<T> => {
    // The binding's hydrate (as withWallet does) for the share generation a replace is based on.
    const h = await callNative(() => native.hydrate(address, purpose, actor))
    for (const share of h.shares) redactShare(share)
    const walletMetadata = JSON.parse(h.metadata) as WalletMetadata
    return use(walletMetadata, h.shares as ServerKeyShare[], h.generation)
  }

  const seal = async (
    address: string,
    metadata: WalletMetadata,
    generation: number,
    shares: ServerKeyShare[],
    backupInfo: KeyShareBackupInfo | undefined,
    scheme: ThresholdSignatureScheme | undefined,
    cause: unknown,
  ): Promise<never> => {
    let sealed: string | undefined
    try {
      sealed = await callNative(() => native.sealUnpersisted(JSON.stringify(metadata), generation, shares, backupInfo === undefined ? undefined : JSON.stringify(backupInfo), scheme))
    } catch {
      sealed = undefined
    }
    const why = cause instanceof Error ? cause.message : String(cause)
    throw new UnpersistedSharesError(
      sealed
        ? `the new shares of ${address} could not be written (${why}); they are sealed in this error's \`sealed\`: pass it to vault.recoverSealed() once the database is back`
        : `the new shares of ${address} could not be written (${why}), and sealing them failed too: they are lost`,
      sealed,
      address,
      cause,
    )
  }

  const managed: Record<string, AnyFn> = {}
  for (const [method, op] of Object.entries(OPERATIONS) as [ManagedMethod, Operation][]) {
    if (typeof sdk[method] !== 'function') continue
    const call = (args: Record<string, unknown>) => sdk[method].call(client, args)
    const purpose = op.purpose as string
    if (op.kind === 'create') {
      managed[method] = async (args: Record<string, unknown> = {}) => {
        const result = await call({ ...args, backUpToDynamic: args.backUpToDynamic ?? false })
        if (!isObject(result) || !isObject(result.walletMetadata) || !Array.isArray(result.externalServerKeyShares)) {
          throw new VaultError('ERR_INVALID_INPUT', `${method} did not return walletMetadata and externalServerKeyShares`, 'result')
        }
        const walletMetadata = result.walletMetadata as WalletMetadata
        const shares = result.externalServerKeyShares as ServerKeyShare[]
        let retried = false
        try {
          await persist((attempt) => {
            retried = attempt > 0
            return vault.storeWallet({ walletMetadata, externalServerKeyShares: shares }, { actor })
          }, deadline, STORE_TRANSIENT)
        } catch (e) {
          // A conflict after a failed attempt may be that attempt's commit whose answer was lost:
          // sealed, its recovery tells (it accepts the same wallet with the same shares).
          const ambiguous = retried && e instanceof VaultError && e.code === 'ERR_CONFLICT'
          if (e instanceof VaultError && !STORE_TRANSIENT.includes(e.code) && !ambiguous) throw e
          await seal(walletMetadata.accountAddress, walletMetadata, 0, shares, undefined, undefined, e)
        }
        const out: StoredWallet = { walletMetadata, rawPublicKey: result.rawPublicKey }
        if (typeof result.publicKeyHex === 'string') out.publicKeyHex = result.publicKeyHex
        return out
      }
    } else if (op.kind === 'hydrate') {
      managed[method] = async (args: Record<string, unknown>) => {
        const address = accountAddressOf(args, method)
        return hydrated(address, purpose, (walletMetadata, externalServerKeyShares) => call({ ...args, walletMetadata, externalServerKeyShares }))
      }
    } else if (op.kind === 'merge') {
      managed[method] = async (args: Record<string, unknown>) => {
        const address = accountAddressOf(args, method)
        const result = await hydrated(address, purpose, (walletMetadata, externalServerKeyShares) => call({ ...args, walletMetadata, externalServerKeyShares }))
        if (!isObject(result) || !isObject(result.backupInfo)) {
          throw new VaultError('ERR_INVALID_INPUT', `${method} did not return backupInfo`, 'result')
        }
        const backupInfo = result.backupInfo as KeyShareBackupInfo
        const walletMetadata = await persist(() => vault.mergeBackupInfo(address, backupInfo, { actor }), deadline)
        return { walletMetadata, backupInfo } satisfies BackupWritten
      }
    } else {
      managed[method] = async (args: Record<string, unknown>) => {
        const address = accountAddressOf(args, method)
        const scheme = method === 'reshare' ? (args.newThresholdSignatureScheme as ThresholdSignatureScheme | undefined) : undefined
        if (method === 'reshare' && typeof scheme !== 'string') {
          throw new VaultError('ERR_INVALID_INPUT', 'reshare needs newThresholdSignatureScheme', 'newThresholdSignatureScheme')
        }
        return hydrated(address, purpose, async (walletMetadata, externalServerKeyShares, generation) => {
          const result = await call({ ...args, walletMetadata, externalServerKeyShares })
          // From here the old shares no longer sign: the new ones are written, or sealed.
          const { shares, backupInfo } = newState(result, method)
          try {
            const stored = await persist(
              () => vault.replaceShares(address, { externalServerKeyShares: shares, backupInfo, ...(scheme ? { thresholdSignatureScheme: scheme } : {}) }, { actor }),
              deadline,
            )
            return { walletMetadata: stored } satisfies SharesReplaced
          } catch (e) {
            if (e instanceof VaultError && !TRANSIENT.includes(e.code)) throw e
            return seal(address, walletMetadata, generation, shares, backupInfo, scheme, e)
          }
        })
      }
    }
  }

  return new Proxy(client, {
    get(target, prop, receiver) {
      if (typeof prop === 'string' && Object.prototype.hasOwnProperty.call(managed, prop)) return managed[prop]
      const v = Reflect.get(target, prop, receiver)
      return typeof v === 'function' ? v.bind(target) : v
    },
  }) as unknown as VaultedClient<C>
}
