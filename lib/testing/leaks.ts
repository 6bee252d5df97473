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
import { types } from 'node:util'

/**
 * Read once: inside jest's sandbox every read of a global (`Math`) goes through the context's
 * interceptors, which made the scan loop a hundred times slower.
 */
const imul = Math.imul

/** A share is found from any piece of it this long or longer (twice the chunk, less one). */
export const MIN_FRAGMENT = 63
/** Fingerprinted pieces: every `CHUNK` characters from the start, and the last `CHUNK`. */
const CHUNK = 32
/** Shorter shares (a test's own, hand-made) are fingerprinted whole, down to this length. */
const MIN_WHOLE = 8
/** How many encoded layers `scan` decodes (base64 of JSON of base64…). */
const MAX_DECODE = 2
/** Runs this long are also read as base64 / hex (long enough to hold a piece). */
const BASE64_MIN = 44
const HEX_MIN = 64
/** Bytes are read in slices (a string has a length limit), overlapping by more than a piece in any encoding. */
const BYTES_SLICE = 16 * 1024 * 1024
const BYTES_OVERLAP = 64 * 1024
/** Entries read from one iterable that is not an array, Map or Set. */
const MAX_ITERATED = 100_000

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

/** Marks a registry from any copy of the kit (a jest module reset loads another). */
const BRAND = Symbol.for('sharevault.testing.fingerprints')

/** Where in a scanned value: built into a path only when something is found there. */
interface Where {
  up: Where | null
  step: string
}

function at(up: Where | null, step: string): Where {
  return { up, step }
}

function pathOf(w: Where): string {
  const steps: string[] = []
  for (let x: Where | null = w; x; x = x.up) steps.push(x.step)
  return steps.reverse().join('')
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
      for (let i = 1; i < len; i++) t = imul(t, this.base) >>> 0
      this.top.set(len, t)
    }
    return t
  }

  of(s: string, from: number, len: number): number {
    let h = 0
    for (let i = from; i < from + len; i++) h = (imul(h, this.base) + s.charCodeAt(i)) >>> 0
    return h
  }
}

/**
 * Fingerprints of shares, by wallet. `add` takes a wallet's shares (objects with a string
 * `secretShare`, as the SDK's are); `scan` finds any of them in a value.
 */
export class ShareFingerprints {
  readonly [BRAND] = true
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
  private inText(text: string, where: Where, encoding: ShareSighting['encoding'], out: ShareSighting[]): void {
    for (const len of this.lengths) {
      if (text.length < len) continue
      const top = this.rolling.topFor(len)
      const base = this.rolling.base
      let h = this.rolling.of(text, 0, len)
      for (let i = 0; ; i++) {
        const bucket = this.pieces.get(h)
        if (bucket) {
          const owner = bucket.get(this.mac(text.slice(i, i + len)))
          if (owner) {
            const path = pathOf(where)
            if (!out.some((o) => o.wallet === owner.wallet && o.share === owner.share && o.path === path)) out.push({ ...owner, path, encoding })
          }
        }
        if (i + len >= text.length) break
        h = (imul((h - imul(text.charCodeAt(i), top)) >>> 0, base) + text.charCodeAt(i + len)) >>> 0
      }
    }
  }

  /**
   * `text` as it is, and the base64 and hex runs in it decoded (a share logged as bytes): each
   * run from every alignment (a run may start with characters that are not its encoding, an
   * `id_` before base64). Runs are found by a loop, not a regex (a long run overflows the regex
   * engine's stack).
   */
  private inString(text: string, where: Where, encoding: ShareSighting['encoding'], out: ShareSighting[], layer = 0): void {
    this.inText(text, where, encoding, out)
    if (layer >= MAX_DECODE) return
    for (const [start, end] of runs(text, isBase64Char, BASE64_MIN)) {
      for (let shift = 0; shift < 4 && end - start - shift >= BASE64_MIN; shift++) {
        // Node's base64 decoder takes the URL-safe alphabet too.
        this.inString(Buffer.from(text.slice(start + shift, end), 'base64').toString('latin1'), where, 'base64', out, layer + 1)
      }
    }
    for (const [start, end] of runs(text, isHexChar, HEX_MIN)) {
      for (let shift = 0; shift < 2; shift++) {
        this.inString(Buffer.from(text.slice(start + shift, end - ((end - start - shift) % 2)), 'hex').toString('latin1'), where, 'hex', out, layer + 1)
      }
    }
  }

  /** Bytes as latin1 text, in slices that overlap by more than any piece (no string limit). */
  private inBytes(bytes: Uint8Array, where: Where, out: ShareSighting[]): void {
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    for (let at = 0; at < buf.length; at += BYTES_SLICE) {
      this.inString(buf.subarray(at, Math.min(buf.length, at + BYTES_SLICE + BYTES_OVERLAP)).toString('latin1'), where, 'bytes', out)
    }
  }

  /**
   * Every share of a remembered wallet found in `value`: strings (and the base64 / hex runs in
   * them), bytes (Buffer, typed arrays, ArrayBuffer), boxed strings, and everything reachable
   * from objects, arrays, Maps, Sets, other iterables (Headers, URLSearchParams) and errors
   * (message, stack, cause, own fields, enumerable or not, symbol-keyed), keys included, and
   * an object's own `toString()` (a URL), from any realm, at any depth. A piece of
   * `MIN_FRAGMENT` characters is enough. What it cannot read (a revoked Proxy, a throwing trap
   * or getter, a detached buffer) it skips. Getters on a prototype are not called.
   */
  scan(value: unknown): ShareSighting[] {
    const out: ShareSighting[] = []
    if (this.pieces.size === 0) return out
    const seen = new Set<object>()
    // Depth-first with a stack of its own: any depth, no recursion limit.
    const stack: [unknown, Where][] = [[value, at(null, '$')]]
    while (stack.length > 0) {
      const [v, where] = stack.pop() as [unknown, Where]
      try {
        this.visit(v, where, seen, out, (x, step) => stack.push([x, at(where, step)]))
      } catch {
        // Unreadable: skipped.
      }
    }
    return out
  }

  private visit(v: unknown, where: Where, seen: Set<object>, out: ShareSighting[], push: (v: unknown, step: string) => void): void {
    if (typeof v === 'string') return this.inString(v, where, 'text', out)
    if (v === null || typeof v !== 'object') return
    if (seen.has(v)) return
    seen.add(v)
    if (types.isProxy(v)) {
      // Read through its traps like any object (each read may throw: caught per property).
    } else if (ArrayBuffer.isView(v)) {
      return this.inBytes(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), where, out)
    } else if (types.isAnyArrayBuffer(v)) {
      return this.inBytes(new Uint8Array(v), where, out)
    } else if (types.isBoxedPrimitive(v)) {
      return push((v as { valueOf(): unknown }).valueOf(), '')
    } else if (types.isMap(v)) {
      let i = 0
      for (const [k, x] of Map.prototype.entries.call(v) as IterableIterator<[unknown, unknown]>) {
        push(k, `<map key ${i}>`)
        push(x, `<map value ${i++}>`)
      }
      return
    } else if (types.isSet(v)) {
      let i = 0
      for (const x of Set.prototype.values.call(v) as IterableIterator<unknown>) push(x, `<set ${i++}>`)
      return
    }
    const isArray = Array.isArray(v)
    const keys = Reflect.ownKeys(v)
    if (types.isNativeError(v) || v instanceof Error) for (const n of ['message', 'stack', 'cause']) if (!keys.includes(n)) keys.push(n)
    for (const key of keys) {
      if (isArray && key === 'length') continue
      const name = typeof key === 'symbol' ? `[${String(key.description)}]` : key
      const step = isArray && typeof key === 'string' && /^\d+$/.test(key) ? `[${key}]` : `.${name}`
      if (!isArray) this.inString(name, at(where, `${step}<key>`), 'text', out)
      let x: unknown
      try {
        x = (v as Record<PropertyKey, unknown>)[key]
      } catch {
        continue
      }
      push(x, step)
    }
    // What a class keeps out of own properties: its own toString (URL, URLSearchParams), and
    // the entries of an iterable (Headers).
    let proto: object | null = null
    try {
      proto = Object.getPrototypeOf(v) as object | null
    } catch {
      return
    }
    if (proto === null || proto === Object.prototype || isArray) return
    const toString = (v as { toString?: unknown }).toString
    if (typeof toString === 'function' && toString !== Object.prototype.toString && toString !== Error.prototype.toString && !types.isNativeError(v)) {
      const text: unknown = toString.call(v)
      if (typeof text === 'string') this.inString(text, at(where, '<string>'), 'text', out)
    }
    const iterator = (v as { [Symbol.iterator]?: unknown })[Symbol.iterator]
    // Not an iterator itself (a generator would be used up by reading it).
    if (typeof iterator === 'function' && typeof (v as { next?: unknown }).next !== 'function') {
      let i = 0
      for (const x of { [Symbol.iterator]: () => iterator.call(v) as Iterator<unknown> }) {
        if (i >= MAX_ITERATED) break
        push(x, `<entry ${i++}>`)
      }
    }
  }
}

/** Whether a code unit is one base64 (either alphabet) or hex may use. */
function isBase64Char(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 43 || c === 47 || c === 45 || c === 95 || c === 61
}
function isHexChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102)
}

/** The [start, end) of every run of `min` or more characters `isChar` accepts. */
function* runs(text: string, isChar: (c: number) => boolean, min: number): Generator<[number, number]> {
  let start = -1
  for (let i = 0; i <= text.length; i++) {
    const inRun = i < text.length && isChar(text.charCodeAt(i))
    if (inRun && start < 0) start = i
    else if (!inRun && start >= 0) {
      if (i - start >= min) yield [start, i]
      start = -1
    }
  }
}

/** What can say whose shares it has seen: a test vault, a fake SDK client, a registry. */
export interface ShareSource {
  readonly [SHARES]: ShareFingerprints
}

/** The key under which a source keeps its fingerprints. */
export const SHARES: unique symbol = Symbol.for('sharevault.testing.shares')

function isRegistry(f: unknown): f is ShareFingerprints {
  return f !== null && typeof f === 'object' && (f as { [BRAND]?: unknown })[BRAND] === true && typeof (f as { scan?: unknown }).scan === 'function'
}

export function fingerprintsOf(source: unknown): ShareFingerprints {
  if (isRegistry(source)) return source
  const f = source !== null && typeof source === 'object' ? (source as Partial<ShareSource>)[SHARES] : undefined
  if (!isRegistry(f)) {
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
