/**
 * The key lifecycle's facade: `keyStatus`, `retireKey` and `rotate`. Every row moves in Rust, a
 * batch at a time; the loop is here so that progress and aborting are JavaScript's. A rotation
 * needs no cursor to resume: a killed or aborted run leaves every wallet readable, and the next
 * run finds exactly what is left.
 */
import type { NativeKeyStatus, NativeVault } from '../index'
import { invalid } from './errors'
import type { KeyCount, KeyStatus, RotateOptions, RotationReport } from './types'

type Call = <T>(f: () => Promise<T>) => Promise<T>

const date = (ms: number | null | undefined): Date | null => (ms == null ? null : new Date(ms))

export function keyStatusOf(s: NativeKeyStatus): KeyStatus {
  const keys = s.keys.map((k) => ({
    provider: k.provider,
    keyId: k.keyId,
    keyVersion: k.keyVersion,
    state: k.state as KeyStatus['keys'][number]['state'],
    addedAt: date(k.addedAtMs),
    changedAt: date(k.changedAtMs),
    records: k.records,
    byVersion: k.byVersion.map((v) => ({ version: v.version, records: v.records })),
    oldestWrap: date(k.oldestWrapMs),
    newestWrap: date(k.newestWrapMs),
    unknownWrapTime: k.unknownWrapTime,
    integrityKey: k.integrityKey,
    configured: k.configured,
    due: k.due,
    providerRotation: k.providerRotation
      ? { enabled: k.providerRotation.enabled, periodDays: k.providerRotation.periodDays ?? null, nextRotation: date(k.providerRotation.nextRotationMs), minDecryptionVersion: k.providerRotation.minDecryptionVersion ?? null }
      : null,
    tampered: k.tampered ?? null,
  }))
  return {
    keys,
    behind: s.behind,
    tampered: s.tampered,
    rotateAfterDays: s.rotateAfterDays,
    reencryptBefore: date(s.reencryptBeforeMs),
    due: keys.some((k) => k.due),
  }
}

const counts = (s: NativeKeyStatus): KeyCount[] =>
  s.keys.map((k) => ({ provider: k.provider, keyId: k.keyId, state: k.state as KeyCount['state'], records: k.records }))

function abortError(signal: AbortSignal): Error {
  const e = new Error('the rotation was aborted: every wallet stays readable; run rotate() again to finish it')
  e.name = 'AbortError'
  ;(e as Error & { cause?: unknown }).cause = signal.reason
  return e
}

export interface RotateArgs {
  reencrypt: boolean
  batchSize?: number
  concurrency?: number
  signal?: AbortSignal
  onProgress?: RotateOptions['onProgress']
  actor?: string
}

/**
 * Reads `rotate()`'s options (own properties only, as everywhere): JS types here, with the
 * facade's `num` reader; every range is the core's to check.
 */
export function rotateArgs(own: (k: string) => unknown, actor: string | undefined, num: (v: unknown, path: string) => number | undefined): RotateArgs {
  const reencrypt = own('reencrypt')
  if (reencrypt !== undefined && typeof reencrypt !== 'boolean') throw invalid('reencrypt', 'must be a boolean')
  const signal = own('signal')
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid('signal', 'must be an AbortSignal')
  const onProgress = own('onProgress')
  if (onProgress !== undefined && typeof onProgress !== 'function') throw invalid('onProgress', 'must be a function')
  return {
    reencrypt: reencrypt === true,
    batchSize: num(own('batchSize'), 'batchSize'),
    concurrency: num(own('concurrency'), 'concurrency'),
    signal: signal as AbortSignal | undefined,
    onProgress: onProgress as RotateOptions['onProgress'],
    actor,
  }
}

export async function rotate(native: NativeVault, call: Call, a: RotateArgs): Promise<RotationReport> {
  if (a.signal?.aborted) throw abortError(a.signal)
  const started = Date.now()
  const plan = await call(() => native.beginRotation(a.reencrypt, a.actor))
  const total = plan.before.behind
  let done = 0
  let skipped = 0
  const failures: Record<string, number> = {}
  let after: string | undefined
  try {
    // Sweeps in address order (a row written meanwhile is written under the primary already).
    // A sweep that ends with rows another rotator's lease holds (one at work, or one that died
    // with its batch claimed: the lease runs out within 20 s) waits and sweeps again, so the run
    // ends with every row done; it gives up waiting when those rows stop moving for a minute.
    let held = 0
    let stuckSince = 0
    for (;;) {
      if (a.signal?.aborted) throw abortError(a.signal)
      const b = await call(() => native.rotateBatch(plan.id, after, a.batchSize, a.concurrency, a.actor))
      done += b.done
      skipped += b.skipped
      for (const [code, n] of Object.entries(b.failed)) failures[code] = (failures[code] ?? 0) + n
      const failed = Object.values(failures).reduce((x, y) => x + y, 0)
      a.onProgress?.({ done, total, failed })
      if (b.claimed > 0 && b.last != null) {
        after = b.last
        continue
      }
      if (b.held === 0) break
      if (b.held !== held || b.done > 0) [held, stuckSince] = [b.held, Date.now()]
      if (Date.now() - stuckSince > 60_000) break
      after = undefined
      await new Promise((r) => setTimeout(r, 1000))
    }
  } catch (e) {
    // The native plan is dropped; the work done stays done.
    await call(() => native.finishRotation(plan.id, a.actor)).catch(() => undefined)
    throw e
  }
  const end = await call(() => native.finishRotation(plan.id, a.actor))
  return {
    reencrypt: a.reencrypt,
    total,
    done,
    skipped,
    failed: Object.values(failures).reduce((x, y) => x + y, 0),
    failures,
    remaining: end.behind,
    before: counts(plan.before),
    after: counts(end),
    durationMs: Date.now() - started,
  }
}
