/**
 * `rotate` and `retire-key`: the key lifecycle from the shell. `rotate` draws a progress bar
 * (cli-progress) with rate and ETA on a terminal, and a plain line every few seconds otherwise
 * (CI logs); Ctrl-C stops it at a batch boundary (every wallet stays readable) and running it
 * again resumes, since a rotation finds what is left.
 */
import { Presets, SingleBar } from 'cli-progress'
import type { RotateProgress, RotationReport } from '../types'
import { Vault } from '../vault'
import { EXIT, openOptions, UsageError, type CliValues } from './config'

/** Exit code of a rotation stopped by Ctrl-C (128 + SIGINT, as shells report it). */
export const INTERRUPTED = 130
/** How often the plain form prints a line. */
const PLAIN_EVERY_MS = 3000

function whole(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined
  if (!/^\d+$/.test(v)) throw new UsageError(`${flag} must be a whole number`)
  return Number(v)
}

function seconds(ms: number): string {
  const s = Math.round(ms / 1000)
  return s < 90 ? `${s} s` : `${Math.round(s / 60)} min`
}

/** What a person sees: a bar on a terminal, a line every few seconds elsewhere. */
function progressView(tty: boolean) {
  const started = Date.now()
  const rate = (done: number) => Math.round(done / Math.max(0.001, (Date.now() - started) / 1000))
  if (tty) {
    const bar = new SingleBar(
      { format: 'rotate [{bar}] {percentage}% | {value}/{total} records | {rate}/s | ETA {eta_formatted}', hideCursor: true, stream: process.stderr, etaBuffer: 50 },
      Presets.shades_classic,
    )
    let started = false
    return {
      update(p: RotateProgress) {
        if (!started) {
          bar.start(Math.max(p.total, p.done), 0, { rate: 0 })
          started = true
        }
        bar.setTotal(Math.max(p.total, p.done))
        bar.update(p.done, { rate: rate(p.done) })
      },
      stop() {
        if (started) bar.stop()
      },
    }
  }
  let last = 0
  return {
    update(p: RotateProgress) {
      const now = Date.now()
      if (now - last < PLAIN_EVERY_MS && p.done < p.total) return
      last = now
      const r = rate(p.done)
      const left = p.total > p.done && r > 0 ? `, about ${seconds(((p.total - p.done) / r) * 1000)} left` : ''
      process.stderr.write(`rotate: ${p.done} of ${p.total} records (${p.total ? Math.floor((100 * p.done) / p.total) : 100}%), ${r}/s${left}${p.failed ? `, ${p.failed} failed` : ''}\n`)
    },
    stop() {},
  }
}

function summary(r: RotationReport): string {
  const keys = r.after.map((k) => `  ${k.state.padEnd(12)} ${k.provider}:${k.keyId}  records ${k.records}`).join('\n')
  const failures = Object.entries(r.failures)
    .map(([code, n]) => `${code} ${n}`)
    .join(', ')
  return [
    `${r.reencrypt ? 're-encrypted' : 're-wrapped'} ${r.done} of ${r.total} records in ${seconds(r.durationMs)} (${r.skipped} needed nothing, ${r.failed} failed${failures ? `: ${failures}` : ''}); ${r.remaining} still behind the primary`,
    keys,
  ].join('\n')
}

/** `rotate [--reencrypt] [--batch N] [--concurrency N]`. */
export async function rotateCommand(values: CliValues): Promise<number> {
  const batchSize = whole(values.batch as string | undefined, '--batch')
  const concurrency = whole(values.concurrency as string | undefined, '--concurrency')
  const controller = new AbortController()
  let done = 0
  const onSigint = () => {
    if (controller.signal.aborted) process.exit(INTERRUPTED)
    controller.abort()
    process.stderr.write('\nstopping at the next batch boundary (Ctrl-C again to quit at once)\n')
  }
  const view = progressView(process.stderr.isTTY === true && !values.json)
  const vault = await Vault.open(openOptions(values, ['keys:admin', 'audit:read']))
  process.on('SIGINT', onSigint)
  try {
    const report = await vault.rotate({
      reencrypt: values.reencrypt === true,
      ...(batchSize !== undefined ? { batchSize } : {}),
      ...(concurrency !== undefined ? { concurrency } : {}),
      signal: controller.signal,
      onProgress: (p) => {
        done = p.done
        view.update(p)
      },
    })
    view.stop()
    process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${summary(report)}\n`)
    return report.failed > 0 || report.remaining > 0 ? EXIT.failed : EXIT.ok
  } catch (e) {
    view.stop()
    if ((e as Error).name === 'AbortError') {
      process.stderr.write(`rotation stopped at a batch boundary after ${done} records; every wallet stays readable. Run the same command again to resume: it moves what is left.\n`)
      return INTERRUPTED
    }
    throw e
  } finally {
    process.off('SIGINT', onSigint)
    await vault.close()
  }
}

/** `retire-key <provider>:<keyId>`: the key stops being trusted for anything. */
export async function retireKeyCommand(values: CliValues, positionals: string[]): Promise<number> {
  const [ref] = positionals
  const at = ref?.indexOf(':') ?? -1
  if (positionals.length !== 1 || at <= 0) throw new UsageError('retire-key takes one key, as <provider>:<keyId> (as `sharevault keys` lists it)')
  const key = { provider: ref.slice(0, at), keyId: ref.slice(at + 1) }
  const vault = await Vault.open(openOptions(values, ['keys:admin', 'audit:read']))
  try {
    await vault.retireKey(key)
  } finally {
    await vault.close()
  }
  process.stdout.write(values.json ? `${JSON.stringify({ retired: key })}\n` : `retired ${ref}: it unwraps nothing from now on\n`)
  return EXIT.ok
}
