import type { ErrorCode } from '../index'

/** Stable error codes (exported by the native binding). Match on `code`, never on `message`. */
export type VaultErrorCode = `${ErrorCode}`

/** Every error sharevault raises. Messages never contain share material. */
export class VaultError extends Error {
  readonly code: VaultErrorCode
  /** For `ERR_INVALID_INPUT`: the offending field, e.g. `walletMetadata.addressType`. */
  readonly path?: string

  constructor(code: VaultErrorCode, message: string, path?: string) {
    super(path ? `${message} (at ${path})` : message)
    this.name = 'VaultError'
    this.code = code
    if (path !== undefined) this.path = path
  }
}

/**
 * `ERR_UNPERSISTED_SHARES`: the SDK returned new shares (a refresh, a reshare, a new wallet) and
 * the vault could not write them before its deadline. The old shares no longer sign, so the new
 * ones must not be lost: `sealed` holds them, sealed by the vault under its KMS (never the
 * plaintext). Keep it (it is safe to log or queue) and pass it to `vault.recoverSealed()` once the
 * database is back. `sealed` is undefined only if the KMS failed too; then `cause` says why.
 */
export class UnpersistedSharesError extends VaultError {
  constructor(
    message: string,
    /** The sealed state for `vault.recoverSealed()`. */
    readonly sealed: string | undefined,
    /** The wallet's address. */
    readonly accountAddress: string,
    /** What the write failed with. */
    readonly cause: unknown,
  ) {
    super('ERR_UNPERSISTED_SHARES', message)
    this.name = 'UnpersistedSharesError'
  }
}

const PREFIX = 'sharevault:'

/**
 * Turns an error from the native binding into a `VaultError`. Every error a native call raises
 * is sharevault's: one without the binding's marker (a contained panic, a value the binding could
 * not convert) is a defect, reported as `ERR_INTERNAL` without its text, which could quote a value.
 */
export function fromNative(e: unknown): unknown {
  // Duck-typed: an error made by the addon may come from another realm (jest's sandbox, a vm).
  const message = e !== null && typeof e === 'object' ? (e as { message?: unknown }).message : undefined
  if (typeof message === 'string' && message.startsWith(PREFIX)) {
    try {
      const body = JSON.parse(message.slice(PREFIX.length)) as { code: VaultErrorCode; message: string; path?: string | null }
      return new VaultError(body.code, body.message, body.path ?? undefined)
    } catch {
      return new VaultError('ERR_INTERNAL', 'the native binding returned an unreadable error')
    }
  }
  return new VaultError('ERR_INTERNAL', 'sharevault failed internally (a defect: please report it); the operation did not complete')
}

export function invalid(path: string, message: string): VaultError {
  return new VaultError('ERR_INVALID_INPUT', message, path)
}
