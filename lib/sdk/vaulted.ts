/**
 * `vaulted(client, vault)`: one of the Dynamic SDK's wallet clients (EVM, SVM, BTC, TON; 1.x
 * stateless API) with the wallet state supplied by the vault. Application code passes what the
 * SDK needs minus `walletMetadata` and `externalServerKeyShares`, plus the wallet's
 * `accountAddress`; the wrapper hydrates the state for the one call (audited with the method's
 * purpose), writes back what the call changed (backup info; new shares, atomically), and never
 * returns a key share. See `operations.ts` for the table.
 */
import { serialize } from 'node:v8'
import { UnpersistedSharesError, VaultError } from '../errors'
import type { VaultErrorCode } from '../errors'
import { redactShare } from '../redact'
import { callNative, holdOpen, nativeOf, type Vault } from '../vault'
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
type Params<F> = F extends (...args: infer P) => unknown ? P : never
type FirstArg<F> = NonNullable<Params<F>[0]>
type RestArgs<F> = Params<F> extends [unknown?, ...infer R] ? R : []
type Result<F> = F extends AnyFn ? Awaited<ReturnType<F>> : never
/** The state parameters the wrapper supplies. */
type StateParam = 'walletMetadata' | 'externalServerKeyShares'
/** Distributes over a union of argument shapes (an `Omit` of a union would merge them). */
type WithoutState<A> = A extends unknown ? Omit<A, StateParam | 'accountAddress'> & { accountAddress: string } : never

export type VaultedClient<C> = Omit<C, ManagedMethod> & {
  [M in MethodsOfKind<'hydrate' | 'metadata'> & keyof C]: (args: WithoutState<FirstArg<C[M]>>, ...rest: RestArgs<C[M]>) => Promise<Result<C[M]>>
} & {
  [M in MethodsOfKind<'create'> & keyof C]: (
    args: Omit<FirstArg<C[M]>, 'backUpToDynamic'> & { backUpToDynamic?: boolean },
    ...rest: RestArgs<C[M]>
  ) => Promise<StoredWallet>
} & {
  [M in MethodsOfKind<'merge'> & keyof C]: (args: WithoutState<FirstArg<C[M]>>, ...rest: RestArgs<C[M]>) => Promise<BackupWritten>
} & {
  [M in MethodsOfKind<'replace'> & keyof C]: (args: WithoutState<FirstArg<C[M]>>, ...rest: RestArgs<C[M]>) => Promise<SharesReplaced>
} & {
  /** Refused: they return plaintext shares. */
  [M in MethodsOfKind<'refused'> & keyof C]: never
}

/** Codes worth retrying a write on: the database or KMS may come back, a race may clear. */
const TRANSIENT: VaultErrorCode[] = ['ERR_DB_UNAVAILABLE', 'ERR_STORAGE', 'ERR_CONFLICT', 'ERR_KMS_UNAVAILABLE']
/** For a store, a conflict is not a race: the address is taken. */
const STORE_TRANSIENT: VaultErrorCode[] = ['ERR_DB_UNAVAILABLE', 'ERR_STORAGE', 'ERR_KMS_UNAVAILABLE']
const SCHEMES: ThresholdSignatureScheme[] = ['TWO_OF_TWO', 'TWO_OF_THREE', 'THREE_OF_FIVE']

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object'
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Runs `write` until it succeeds, fails for good, or the deadline passes (jittered backoff). */
async function persist<T>(write: () => Promise<T>, deadlineMs: number, transientCodes = TRANSIENT): Promise<T> {
  const end = Date.now() + deadlineMs
  for (let attempt = 0; ; attempt++) {
    try {
      return await write()
    } catch (e) {
      const transient = e instanceof VaultError && transientCodes.includes(e.code)
      const wait = Math.min(2000, 50 * 2 ** attempt) * (0.5 + Math.random() / 2)
      if (!transient || Date.now() + wait > end) throw e
      await sleep(wait)
    }
  }
}

/**
 * The call's arguments, copied once (own enumerable fields) before anything else is done: a
 * getter or Proxy trap that throws is `ERR_INVALID_INPUT` here, before any SDK call or hydrate,
 * and nothing reads the caller's object again.
 */
function argsOf(args: unknown, method: string): Record<string, unknown> {
  if (args === undefined) return {}
  try {
    if (args === null || typeof args !== 'object' || Array.isArray(args)) throw new TypeError()
    return { ...(args as Record<string, unknown>) }
  } catch {
    throw new VaultError('ERR_INVALID_INPUT', `${method} takes one plain object of arguments (a getter or Proxy trap that throws cannot be read)`, 'args')
  }
}

function accountAddressOf(args: unknown, method: string): string {
  const a = isObject(args) ? args.accountAddress : undefined
  if (typeof a !== 'string' || a.length === 0) {
    throw new VaultError('ERR_INVALID_INPUT', `${method} needs the wallet's accountAddress`, 'accountAddress')
  }
  return a
}

function jsonOrUndefined(v: unknown): string | undefined {
  try {
    return JSON.stringify(v)
  } catch {
    return undefined
  }
}

function why(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

/**
 * Wraps an SDK wallet client (`DynamicEvmWalletClient`, `DynamicSvmWalletClient`, the BTC and TON
 * clients) so that every call gets its wallet state from `vault` and writes back what it changes.
 * Methods the wrapper does not manage pass through to the client untouched, except the two that
 * return plaintext shares (`getExternalServerKeyShares`, `exportExternalServerKeyShares`), which
 * are refused with `ERR_FORBIDDEN`.
 */
export function vaulted<C extends object>(client: C, vault: Vault, options: VaultedOptions = {}): VaultedClient<C> {
  const actor = options.actor
  const deadline = options.persistDeadlineMs ?? 15_000
  const native = nativeOf(vault)
  const sdk = client as unknown as Record<string, AnyFn>

  /** The binding's hydrate (as withWallet's), which also gives the share generation. */
  const hydrated = async <T>(
    address: string,
    purpose: string,
    use: (walletMetadata: WalletMetadata, shares: ServerKeyShare[], generation: number) => Promise<T>,
  ): Promise<T> => {
    const h = await callNative(() => native.hydrate(address, purpose, actor))
    for (const share of h.shares) redactShare(share)
    return use(JSON.parse(h.metadata) as WalletMetadata, h.shares as ServerKeyShare[], h.generation)
  }

  /**
   * New state the SDK returned could not be written: sealed by the vault (KMS only) into the
   * error, never thrown away and never handed out in plaintext.
   */
  const unpersisted = async (
    metadata: WalletMetadata,
    generation: number,
    shares: unknown,
    backupInfo: KeyShareBackupInfo | undefined,
    scheme: ThresholdSignatureScheme | undefined,
    cause: unknown,
  ): Promise<never> => {
    const address = metadata.accountAddress
    let sealed: string | undefined
    let sealFailure: unknown
    const backupJson = backupInfo === undefined ? undefined : jsonOrUndefined(backupInfo)
    try {
      sealed = await callNative(() => native.sealUnpersisted(JSON.stringify(metadata), generation, Array.isArray(shares) ? shares : [], backupJson, scheme))
    } catch (e) {
      sealFailure = e
    }
    if (sealed === undefined && sealFailure instanceof VaultError && sealFailure.code === 'ERR_INVALID_INPUT') {
      // Something the share encoding refuses (a Date, a Map…): the result is sealed as it came
      // instead (V8's serialization, lossless), for an operator's vault.openSealed(). The
      // serialized copy is wiped once the vault has it.
      let raw: Buffer | undefined
      try {
        raw = serialize({ externalServerKeyShares: shares, backupInfo, thresholdSignatureScheme: scheme })
        const bytes = raw
        sealed = await callNative(() => native.sealUnpersistedRaw(JSON.stringify(metadata), generation, bytes, backupJson, scheme))
      } catch (e) {
        sealFailure = e
      } finally {
        raw?.fill(0)
      }
    }
    throw new UnpersistedSharesError(
      sealed
        ? `the new shares of ${address} could not be written (${why(cause)}); they are sealed in this error's \`sealed\`: pass it to vault.recoverSealed() once the database is back`
        : `the new shares of ${address} could not be written (${why(cause)}), and sealing them failed too (${why(sealFailure)}): they are lost`,
      sealed,
      address,
      cause,
    )
  }

  /**
   * Before an SDK call that cannot be undone: the handle must be allowed the whole operation (its
   * hydrate and the write of what the SDK returns), or the SDK is never called.
   */
  const permit = (method: string, purpose: string | undefined, result: 'wallet' | 'backup' | 'shares', address?: string) =>
    callNative(() => native.permitOperation(method, purpose, result, address, actor))

  const managed = new Map<string, AnyFn>()
  for (const [method, op] of Object.entries(OPERATIONS) as [ManagedMethod, Operation][]) {
    if (typeof sdk[method] !== 'function' && op.kind !== 'refused') continue
    const call = (args: Record<string, unknown>, rest: unknown[]) => sdk[method].call(client, args, ...rest)
    const purpose = op.purpose as string
    let fn: AnyFn
    switch (op.kind) {
      case 'refused':
        fn = async () => {
          throw new VaultError('ERR_FORBIDDEN', `${method} returns plaintext key shares; the vaulted client does not offer it (call the SDK client itself if you must)`)
        }
        break
      case 'create':
        fn = async (args: Record<string, unknown> = {}, ...rest: unknown[]) => {
          await permit(method, undefined, 'wallet')
          const result = await call({ ...args, backUpToDynamic: args.backUpToDynamic ?? false }, rest)
          if (!isObject(result) || !isObject(result.walletMetadata) || typeof result.walletMetadata.accountAddress !== 'string') {
            throw new VaultError('ERR_INVALID_INPUT', `${method} did not return walletMetadata`, 'result')
          }
          const walletMetadata = result.walletMetadata as WalletMetadata
          // BTC signing and backup need addressType, and nothing can recover it later.
          if (walletMetadata.addressType === undefined && typeof args.addressType === 'string') walletMetadata.addressType = args.addressType
          try {
            await persist(() => vault.storeWallet({ walletMetadata, externalServerKeyShares: result.externalServerKeyShares as ServerKeyShare[] }, { actor }), deadline, STORE_TRANSIENT)
          } catch (e) {
            // Whatever the reason, the new wallet's shares exist nowhere else: sealed, its
            // recovery tells (and accepts a store that did commit before its answer was lost).
            return unpersisted(walletMetadata, 0, result.externalServerKeyShares, undefined, undefined, e)
          }
          const out: StoredWallet = { walletMetadata, rawPublicKey: result.rawPublicKey }
          if (typeof result.publicKeyHex === 'string') out.publicKeyHex = result.publicKeyHex
          return out
        }
        break
      case 'hydrate':
        fn = async (args: Record<string, unknown>, ...rest: unknown[]) => {
          const address = accountAddressOf(args, method)
          return hydrated(address, purpose, (walletMetadata, externalServerKeyShares) => call({ ...args, walletMetadata, externalServerKeyShares }, rest))
        }
        break
      case 'metadata':
        fn = async (args: Record<string, unknown>, ...rest: unknown[]) => {
          const walletMetadata = await vault.getMetadata(accountAddressOf(args, method))
          return call({ ...args, walletMetadata }, rest)
        }
        break
      case 'merge':
        fn = async (args: Record<string, unknown>, ...rest: unknown[]) => {
          const address = accountAddressOf(args, method)
          await permit(method, purpose, 'backup', address)
          const result = await hydrated(address, purpose, (walletMetadata, externalServerKeyShares) =>
            call({ ...args, backUpToDynamic: args.backUpToDynamic ?? false, walletMetadata, externalServerKeyShares }, rest),
          )
          if (!isObject(result) || !isObject(result.backupInfo)) {
            throw new VaultError('ERR_INVALID_INPUT', `${method} did not return backupInfo`, 'result')
          }
          const backupInfo = result.backupInfo as unknown as KeyShareBackupInfo
          try {
            const walletMetadata = await persist(() => vault.mergeBackupInfo(address, backupInfo, { actor }), deadline)
            return { walletMetadata, backupInfo } satisfies BackupWritten
          } catch (e) {
            // Not secret: the caller can merge it later (vault.mergeBackupInfo) from the error.
            if (e instanceof VaultError) Object.assign(e, { backupInfo, accountAddress: address })
            throw e
          }
        }
        break
      case 'replace':
        fn = async (args: Record<string, unknown>, ...rest: unknown[]) => {
          const address = accountAddressOf(args, method)
          const scheme = method === 'reshare' ? args.newThresholdSignatureScheme : undefined
          if (method === 'reshare' && !SCHEMES.includes(scheme as ThresholdSignatureScheme)) {
            // Checked before the SDK call, which cannot be undone.
            throw new VaultError('ERR_INVALID_INPUT', 'must be TWO_OF_TWO, TWO_OF_THREE or THREE_OF_FIVE', 'newThresholdSignatureScheme')
          }
          await permit(method, purpose, 'shares', address)
          return hydrated(address, purpose, async (walletMetadata, externalServerKeyShares, generation) => {
            const result = await call({ ...args, backUpToDynamic: args.backUpToDynamic ?? false, walletMetadata, externalServerKeyShares }, rest)
            // From here the old shares no longer sign: the new ones are written, or sealed.
            const shares = isObject(result) ? result.externalServerKeyShares : undefined
            const backupInfo = (isObject(result) && isObject(result.backupInfo) ? result.backupInfo : walletMetadata.externalServerKeySharesBackupInfo) as KeyShareBackupInfo
            try {
              if (!Array.isArray(shares)) throw new VaultError('ERR_INVALID_INPUT', `${method} did not return externalServerKeyShares`, 'result')
              const stored = await persist(
                () => callNative(() => native.replaceShares(address, shares, JSON.stringify(backupInfo), scheme as string | undefined, actor, walletMetadata.walletId, generation)),
                deadline,
              )
              return { walletMetadata: JSON.parse(stored) as WalletMetadata } satisfies SharesReplaced
            } catch (e) {
              return unpersisted(walletMetadata, generation, shares, backupInfo, scheme as ThresholdSignatureScheme | undefined, e)
            }
          })
        }
        break
    }
    managed.set(method, (args?: unknown, ...rest: unknown[]) =>
      holdOpen(vault, () => Promise.resolve().then(() => fn(argsOf(args, method), ...rest))),
    )
  }

  const bound = new Map<PropertyKey, [AnyFn, AnyFn]>()
  return new Proxy(client, {
    get(target, prop) {
      if (typeof prop === 'string' && managed.has(prop)) return managed.get(prop)
      // The client is the receiver (its getters and #private fields work), and a method is
      // bound once, so it is the same function on every read.
      const v = Reflect.get(target, prop, target)
      if (typeof v !== 'function') return v
      const cached = bound.get(prop)
      if (cached && cached[0] === v) return cached[1]
      const b = (v as AnyFn).bind(target)
      bound.set(prop, [v as AnyFn, b])
      return b
    },
  }) as unknown as VaultedClient<C>
}
