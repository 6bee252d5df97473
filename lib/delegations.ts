/**
 * Delegated access in the facade: JavaScript types checked, everything else in Rust (the
 * signature, the RSA and AES decryption, the sealing). Neither secret is ever in JavaScript
 * except inside `withDelegation`'s callback.
 */
import type { NativeVault } from '../index'
import { invalid } from './errors'
import { redactDelegation } from './redact'
import type {
  Delegation,
  DelegationKeyInfo,
  DelegationWebhookInput,
  DelegationWebhookResult,
  HydratedDelegation,
  HydratedShare,
} from './types'

const SIGNATURE_HEADER = 'x-dynamic-signature-256'

function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array
}

/** A key or secret: a string or bytes, never anything else (a parsed object is a mistake). */
export function secretArg(v: unknown, path: string): string | Uint8Array {
  if (typeof v === 'string' || isBytes(v)) return v
  throw invalid(path, v === undefined || v === null ? 'is required' : 'must be a string or a Uint8Array')
}

/** The raw body: exactly the bytes the signature covers. */
export function rawBodyArg(v: unknown): string | Uint8Array {
  if (typeof v === 'string' || isBytes(v)) return v
  if (v === undefined || v === null) throw invalid('rawBody', 'is required')
  throw invalid('rawBody', 'must be the raw request body (a Buffer or string, e.g. from express.raw()), not parsed JSON')
}

/** `x-dynamic-signature-256` from Node's `req.headers` or a Fetch `Headers`, case-insensitively. */
export function signatureOf(headers: DelegationWebhookInput['headers'] | undefined): string | undefined {
  if (headers === null || typeof headers !== 'object') throw invalid('headers', 'must be the request headers')
  const get = (headers as { get?: unknown }).get
  if (typeof get === 'function') {
    const v = (get as (n: string) => unknown).call(headers, SIGNATURE_HEADER)
    return typeof v === 'string' ? v : undefined
  }
  for (const k of Object.keys(headers)) {
    if (k.toLowerCase() !== SIGNATURE_HEADER) continue
    const v = (headers as Record<string, unknown>)[k]
    if (typeof v === 'string') return v
    // A repeated header: only one signature is meaningful; more than one is refused as missing.
    if (Array.isArray(v) && v.length === 1 && typeof v[0] === 'string') return v[0]
    return undefined
  }
  return undefined
}

export function keyInfo(json: string): DelegationKeyInfo | null {
  const k = JSON.parse(json) as { fingerprint: string; bits: number; source: 'vault' | 'options'; importedAt?: number | null } | null
  if (k === null) return null
  return { fingerprint: k.fingerprint, bits: k.bits, source: k.source, ...(k.importedAt != null ? { importedAt: new Date(k.importedAt) } : {}) }
}

type NativeOutcome = Omit<DelegationWebhookResult, 'eventId' | 'eventName' | 'walletId' | 'code' | 'message' | 'path'> & {
  eventId?: string | null
  eventName?: string | null
  walletId?: string | null
  code?: string | null
  message?: string | null
  path?: string | null
}

export function webhookResult(json: string): DelegationWebhookResult {
  const o = JSON.parse(json) as NativeOutcome
  const out: DelegationWebhookResult = { status: o.status, outcome: o.outcome, replay: o.replay }
  for (const k of ['eventId', 'eventName', 'walletId', 'code', 'message', 'path'] as const) {
    const v = o[k]
    if (v !== null && v !== undefined) (out as unknown as Record<string, unknown>)[k] = v
  }
  return out
}

interface NativeDelegation {
  walletId: string
  chain: string
  address: string
  userId: string
  shareSetId?: string | null
  eventId?: string | null
  delegatedAt: number
  generation: number
}

export function delegationOf(d: NativeDelegation): Delegation {
  return {
    walletId: d.walletId,
    chain: d.chain,
    address: d.address,
    userId: d.userId,
    ...(d.shareSetId != null ? { shareSetId: d.shareSetId } : {}),
    ...(d.eventId != null ? { eventId: d.eventId } : {}),
    delegatedAt: new Date(d.delegatedAt),
    generation: d.generation,
  }
}

/** A hydrated delegation: fresh objects for this call, `walletApiKey` redacted in `util.inspect`. */
export async function hydrated(native: NativeVault, walletId: string, purpose?: string, actor?: string): Promise<HydratedDelegation> {
  const h = await native.hydrateDelegation(walletId, purpose, actor)
  const info = JSON.parse(h.info) as NativeDelegation
  const d: HydratedDelegation = {
    walletId: info.walletId,
    chain: info.chain,
    address: info.address,
    userId: info.userId,
    keyShare: h.secrets.keyShare as HydratedShare,
    walletApiKey: h.secrets.walletApiKey,
  }
  redactDelegation(d)
  return d
}

export function delegationList(json: string): Delegation[] {
  return (JSON.parse(json) as NativeDelegation[]).map(delegationOf)
}
