/**
 * `delegated(client, vault)`: Dynamic's delegated signing with the delegation kept in a vault.
 * Each call hydrates the delegated share and wallet API key for that call only (audited, needs
 * `hydrate:delegated`), passes them to the SDK's function, and returns the SDK's result.
 *
 * The 0.0.x SDK exposes delegated signing as functions taking the client
 * (`delegatedSignMessage(client, …)`, `revokeDelegation(client, walletId)`); 1.x adds
 * `delegatedSignTransaction` and `delegatedSignTypedData` with the same auth block. Pass the
 * functions you import from `@dynamic-labs-wallet/node` (what the tests do with contract
 * fakes), or leave them out and they are loaded from that package when first needed.
 */
import { VaultError } from '../errors'
import { redactDelegation } from '../redact'
import type { Vault } from '../vault'
import type { HydratedShare } from './types'

/** The auth block every delegated SDK call takes, which the wrapper fills in. */
export interface DelegatedAuth {
  walletId: string
  walletApiKey: string
  keyShare: HydratedShare
  chainName: string
}

type SdkFn<C, A, R> = (client: C, args: A & DelegatedAuth) => Promise<R>

/** The SDK functions the wrapper calls (any may be missing: its method then refuses). */
export interface DelegatedSdk<C, M = Record<string, unknown>, MR = unknown, T = Record<string, unknown>, TR = unknown, D = Record<string, unknown>, DR = unknown> {
  delegatedSignMessage?: SdkFn<C, M, MR>
  delegatedSignTransaction?: SdkFn<C, T, TR>
  delegatedSignTypedData?: SdkFn<C, D, DR>
  revokeDelegation?: (client: C, walletId: string) => Promise<void>
}

/** What each method takes: the SDK call's own arguments, without the auth block, plus who and why. */
export type DelegatedArgs<A> = Omit<A, keyof DelegatedAuth> & {
  walletId: string
  /** Default: the delegation's chain as Dynamic named it. */
  chainName?: string
  /** Audited (default `sign`). */
  purpose?: string
  actor?: string
}

export interface DelegatedClient<M, MR, T, TR, D, DR> {
  signMessage(args: DelegatedArgs<M>): Promise<MR>
  signTransaction(args: DelegatedArgs<T>): Promise<TR>
  signTypedData(args: DelegatedArgs<D>): Promise<DR>
  /** Revokes at Dynamic (`revokeDelegation`), then shreds the delegation here. */
  revoke(args: { walletId: string; actor?: string }): Promise<void>
}

const SDK_PACKAGE = '@dynamic-labs-wallet/node'

function loadSdk(): Record<string, unknown> {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(SDK_PACKAGE) as Record<string, unknown>
  } catch {
    throw new VaultError('ERR_INVALID_INPUT', `${SDK_PACKAGE} could not be loaded: pass its functions, delegated(client, vault, { delegatedSignMessage, revokeDelegation })`, 'sdk')
  }
}

export function delegated<C, M = Record<string, unknown>, MR = unknown, T = Record<string, unknown>, TR = unknown, D = Record<string, unknown>, DR = unknown>(
  client: C,
  vault: Vault,
  sdk?: DelegatedSdk<C, M, MR, T, TR, D, DR>,
): DelegatedClient<M, MR, T, TR, D, DR> {
  let loaded: Record<string, unknown> | undefined
  const fn = <F>(name: keyof DelegatedSdk<C>): F => {
    const given = sdk?.[name]
    if (typeof given === 'function') return given as F
    if (sdk === undefined) {
      loaded ??= loadSdk()
      if (typeof loaded[name] === 'function') return loaded[name] as F
    }
    throw new VaultError('ERR_INVALID_INPUT', `the SDK's ${name} is not available (this SDK version has none, or it was not passed)`, `sdk.${name}`)
  }
  const call = <A, R>(name: 'delegatedSignMessage' | 'delegatedSignTransaction' | 'delegatedSignTypedData', args: DelegatedArgs<A>): Promise<R> => {
    if (args === null || typeof args !== 'object') throw new VaultError('ERR_INVALID_INPUT', 'must be an object with walletId', 'args')
    const { walletId, chainName, purpose, actor, ...rest } = args as DelegatedArgs<A> & Record<string, unknown>
    const sdkFn = fn<SdkFn<C, A, R>>(name)
    return vault.withDelegation(
      walletId,
      (d) => {
        const sdkArgs = { ...(rest as unknown as A), walletId: d.walletId, walletApiKey: d.walletApiKey, keyShare: d.keyShare, chainName: chainName ?? d.chain }
        // What the SDK gets: an SDK that logs or inspects its arguments shows the secrets redacted.
        redactDelegation(sdkArgs)
        return sdkFn(client, sdkArgs)
      },
      { purpose: purpose ?? 'sign', ...(actor !== undefined ? { actor } : {}) },
    )
  }
  return {
    signMessage: (args) => call<M, MR>('delegatedSignMessage', args),
    signTransaction: (args) => call<T, TR>('delegatedSignTransaction', args),
    signTypedData: (args) => call<D, DR>('delegatedSignTypedData', args),
    async revoke({ walletId, actor }) {
      const revoke = fn<(client: C, walletId: string) => Promise<void>>('revokeDelegation')
      // Dynamic first: a local shred alone would leave the delegation live at Dynamic.
      await revoke(client, walletId)
      try {
        await vault.revokeDelegation(walletId, actor !== undefined ? { actor } : {})
      } catch (e) {
        // Already gone here (Dynamic's revocation webhook came first): revoked is revoked.
        if (!(e instanceof VaultError && e.code === 'ERR_NOT_FOUND')) throw e
      }
    },
  }
}
