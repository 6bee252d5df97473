import { inspect } from 'node:util'

const REDACTED = '[REDACTED]'

/**
 * Makes `util.inspect` / `console.log` of a share show `secretShare` redacted, while property
 * reads (what the SDK does) still see the real value. The hook is a non-enumerable symbol, so
 * it is invisible to `Object.keys`, spreading, deep equality and `JSON.stringify`.
 */
export function redactShare(share: unknown): void {
  if (share === null || typeof share !== 'object') return
  Object.defineProperty(share, inspect.custom, {
    value: function (this: Record<string, unknown>, depth: number, options: object) {
      const shown: Record<string, unknown> = {}
      for (const k of Object.keys(this)) shown[k] = k === 'secretShare' ? REDACTED : this[k]
      return inspect(shown, { ...options, depth })
    },
    enumerable: false,
    configurable: true,
    writable: false,
  })
}

/**
 * `redactShare` for a hydrated delegation: `util.inspect` shows `walletApiKey` redacted (and the
 * key share as `redactShare` shows it); property reads still see the real values.
 */
export function redactDelegation(d: { keyShare: unknown }): void {
  redactShare(d.keyShare)
  Object.defineProperty(d, inspect.custom, {
    value: function (this: Record<string, unknown>, depth: number, options: object) {
      const shown: Record<string, unknown> = {}
      for (const k of Object.keys(this)) shown[k] = k === 'walletApiKey' ? REDACTED : this[k]
      return inspect(shown, { ...options, depth })
    },
    enumerable: false,
    configurable: true,
    writable: false,
  })
}
