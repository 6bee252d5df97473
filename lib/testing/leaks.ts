/**
 * Finding key shares where they must not be: in a value the code under test returned, logged or
 * threw. A `ShareFingerprints` remembers the shares that passed it as keyed fingerprints of their
 * pieces (never the shares themselves), and `scan` looks for any of them in a value, whole or in
 * part, as text, in bytes, or base64- or hex-encoded.
 *
 * Written here rather than taken from a library: what it does (substring search for secrets
 * without holding them, through the encodings a share leaks in) is specific to this kit.
 */
import { createHmac, randomBytes } from 'node:crypto'

/** A share is found from any piece of it this long or longer (twice the chunk, less one). */
export const MIN_FRAGMENT = 63
/** Fingerprinted pieces: every `CHUNK` characters from the start, and the last `CHUNK`. */
const CHUNK = 32
/** Shorter shares (a test's own, hand-made) are fingerprinted whole, down to this length. */
const MIN_WHOLE = 8
/** How deep `scan` follows nested values, and how many encoded layers it decodes. */
const MAX_DEPTH = 64
const MAX_DECODE = 2
/** Runs of these characters are also read as base64 / hex (long enough to hold a piece). */
const BASE64_RUN = /[A-Za-z0-9+/_-]{44,}={0,2}/g
const HEX_RUN = /(?:[0-9a-fA-F]{2}){32,}/g

/** Where a share was found. Names the wallet and the share's index, never the share. */
export interface ShareSighting {
  /** The wallet's address (as the vault or the fake SDK client saw it). */
  wallet: string
  /** The share's index in the wallet's `externalServerKeyShares`. */
  share: number
  /** Where in the value: `$`, `$.body.items[2]`, `$.error.message`, `$<map value 0>`. */
  path: string
  /** How it was written there. */
  encoding: 'text' | 'bytes' | 'base64' | 'hex'
}

interface Owner {
  wallet: string
  share: number
}

/** 2^32-wrapping polynomial hashes with a random base per registry: the candidate finder. */
class Rolling {
  readonly base = (randomBytes(4).readUInt32LE(0) | 1) >>> 0
  /** base^(len-1), for the window of each length. */
  private readonly top = new Map<number, number>()

  topFor(len: number): number {
    let t = this.top.get(len)
    if (t === undefined) {
      t = 1
      for (let i = 1; i < len; i++) t = Math.imul(t, this.base) >>> 0
      this.top.set(len, t)
    }
    return t
  }

  of(s: string, from: number, len: number): number {
    let h = 0
    for (let i = from; i < from + len; i++) h = (Math.imul(h, this.base) + s.charCodeAt(i)) >>> 0
    return h
  }
}

/**
 * Fingerprints of shares, by wallet. `add` takes a wallet's shares (objects with a string
 * `secretShare`, as the SDK's are); `scan` finds any of them in a value.
 */
export class ShareFingerprints {
  private readonly key = randomBytes(32)
  private readonly rolling = new Rolling()
  /** Rolling hash → keyed fingerprints of the pieces with that hash → whose. */
  private readonly pieces = new Map<number, Map<string, Owner>>()
  private readonly lengths = new Set<number>()
  private readonly wallets = new Set<string>()

  /** Wallets with at least one share remembered. */
  get size(): number {
    return this.wallets.size
  }

  private mac(piece: string): string {
    return createHmac('sha256', this.key).update(piece, 'utf8').digest('base64')
  }

  private remember(piece: string, owner: Owner): void {
    const h = this.rolling.of(piece, 0, piece.length)
    let bucket = this.pieces.get(h)
    if (!bucket) this.pieces.set(h, (bucket = new Map()))
    const mac = this.mac(piece)
    if (!bucket.has(mac)) bucket.set(mac, owner)
    this.lengths.add(piece.length)
  }

  /** Remembers `shares` (an array of share objects) as the shares of `wallet`. */
  add(wallet: string, shares: unknown): void {
    if (!Array.isArray(shares)) return
    shares.forEach((s, share) => {
      let secret: unknown
      try {
        secret = s !== null && typeof s === 'object' ? (s as { secretShare?: unknown }).secretShare : undefined
      } catch {
        return
      }
      if (typeof secret !== 'string' || secret.length < MIN_WHOLE) return
      const owner = { wallet, share }
      this.wallets.add(wallet)
      if (secret.length < CHUNK) return this.remember(secret, owner)
      for (let i = 0; i + CHUNK <= secret.length; i += CHUNK) this.remember(secret.slice(i, i + CHUNK), owner)
      this.remember(secret.slice(secret.length - CHUNK), owner)
    })
  }

  /** Every place in `text` where a remembered piece occurs. */
  private inText(text: string, path: string, encoding: ShareSighting['encoding'], out: ShareSighting[]): void {
    for (const len of this.lengths) {
      if (text.length < len) continue
      const top = this.rolling.topFor(len)
      const base = this.rolling.base
      let h = this.rolling.of(text, 0, len)
      for (let i = 0; ; i++) {
        const bucket = this.pieces.get(h)
        if (bucket) {
          const owner = bucket.get(this.mac(text.slice(i, i + len)))
          if (owner && !out.some((o) => o.wallet === owner.wallet && o.share === owner.share && o.path === path)) out.push({ ...owner, path, encoding })
        }
        if (i + len >= text.length) break
        h = (Math.imul((h - Math.imul(text.charCodeAt(i), top)) >>> 0, base) + text.charCodeAt(i + len)) >>> 0
      }
    }
  }

  /** `text` as it is, and the base64 and hex runs in it decoded (a share logged as bytes). */
  private inString(text: string, path: string, encoding: ShareSighting['encoding'], out: ShareSighting[], layer = 0): void {
    this.inText(text, path, encoding, out)
    if (layer >= MAX_DECODE) return
    for (const [re, enc] of [
      [BASE64_RUN, 'base64'],
      [HEX_RUN, 'hex'],
    ] as const) {
      for (const m of text.matchAll(re)) {
        const decoded = Buffer.from(m[0], enc === 'hex' ? 'hex' : m[0].includes('-') || m[0].includes('_') ? 'base64url' : 'base64').toString('latin1')
        this.inString(decoded, path, enc, out, layer + 1)
      }
    }
  }

  /**
   * Every share of a remembered wallet found in `value`: strings (and the base64 / hex runs in
   * them), bytes (Buffer, typed arrays, ArrayBuffer), and everything reachable from objects,
   * arrays, Maps, Sets and errors (message, stack, cause, own fields, enumerable or not), keys
   * included. A piece of `MIN_FRAGMENT` characters is enough.
   */
  scan(value: unknown): ShareSighting[] {
    const out: ShareSighting[] = []
    if (this.pieces.size === 0) return out
    const seen = new Set<object>()
    const visit = (v: unknown, path: string, depth: number): void => {
      if (typeof v === 'string') return this.inString(v, path, 'text', out)
      if (v === null || (typeof v !== 'object' && typeof v !== 'function') || depth > MAX_DEPTH) return
      if (seen.has(v)) return
      seen.add(v)
      if (ArrayBuffer.isView(v)) return this.inString(Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('latin1'), path, 'bytes', out)
      if (v instanceof ArrayBuffer || v instanceof SharedArrayBuffer) return this.inString(Buffer.from(v).toString('latin1'), path, 'bytes', out)
      if (typeof v === 'function') return
      if (v instanceof Map) {
        let i = 0
        for (const [k, x] of v) {
          visit(k, `${path}<map key ${i}>`, depth + 1)
          visit(x, `${path}<map value ${i++}>`, depth + 1)
        }
        return
      }
      if (v instanceof Set) {
        let i = 0
        for (const x of v) visit(x, `${path}<set ${i++}>`, depth + 1)
        return
      }
      let names: string[]
      try {
        names = Object.getOwnPropertyNames(v)
      } catch {
        return
      }
      if (v instanceof Error) for (const n of ['message', 'stack', 'cause']) if (!names.includes(n)) names.push(n)
      const isArray = Array.isArray(v)
      for (const name of names) {
        if (isArray && name === 'length') continue
        let x: unknown
        try {
          x = (v as Record<string, unknown>)[name]
        } catch {
          continue
        }
        const sub = isArray && /^\d+$/.test(name) ? `${path}[${name}]` : `${path}.${name}`
        if (!isArray) this.inString(name, `${sub}<key>`, 'text', out)
        visit(x, sub, depth + 1)
      }
    }
    visit(value, '$', 0)
    return out
  }
}

/** What can say whose shares it has seen: a test vault, a fake SDK client, a registry. */
export interface ShareSource {
  readonly [SHARES]: ShareFingerprints
}

/** The key under which a source keeps its fingerprints. */
export const SHARES: unique symbol = Symbol.for('sharevault.testing.shares')

export function fingerprintsOf(source: unknown): ShareFingerprints {
  if (source instanceof ShareFingerprints) return source
  const f = source !== null && typeof source === 'object' ? (source as Partial<ShareSource>)[SHARES] : undefined
  if (!(f instanceof ShareFingerprints)) {
    throw new TypeError('not a share source: pass a vault from openTestVault(), a fake client from sharevault/testing, or a ShareFingerprints')
  }
  return f
}

/**
 * The shares of `sources`' wallets found in `value` (empty when none): see `ShareFingerprints.scan`.
 * A source is a vault from `openTestVault()` (every share stored, replaced, sealed or hydrated
 * through it), a fake SDK client (every share it handed out), or a `ShareFingerprints`.
 */
export function findShares(value: unknown, ...sources: (ShareSource | ShareFingerprints)[]): ShareSighting[] {
  if (sources.length === 0) throw new TypeError('findShares needs at least one share source (a test vault or a fake client)')
  return sources.flatMap((s) => fingerprintsOf(s).scan(value))
}

/** Whether any share of `sources`' wallets is in `value` (`findShares(...).length > 0`). */
export function containsShareOf(value: unknown, ...sources: (ShareSource | ShareFingerprints)[]): boolean {
  return findShares(value, ...sources).length > 0
}
