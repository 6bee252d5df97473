/**
 * `audit export --jsonl`: the environment's audit rows as JSON lines, a page at a time with the
 * output's backpressure respected (constant memory, whatever the log's size), ending with a
 * checkpoint line. The checkpoint is taken first and the export stops at it: rows written
 * meanwhile are for the next export (`--since-seq` the last line's `lastSeq`). The chain is
 * verified too; a log that does not verify is still exported (it is the evidence), and the
 * command exits 1 saying where it breaks.
 */
import { createWriteStream, openSync } from 'node:fs'
import { once } from 'node:events'
import type { Writable } from 'node:stream'
import { Vault } from '../vault'
import type { AuditRecord } from '../types'
import { EXIT, openOptions, UsageError, type CliValues } from './config'

const PAGE = 1000

function seqFlag(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined
  if (!/^\d+$/.test(v)) throw new UsageError(`${flag} must be a seq (a whole number)`)
  return Number(v)
}

/** `--until`: a seq, or a time (ISO 8601); rows after it are not exported. */
function untilFlag(v: string | undefined): ((r: AuditRecord) => boolean) | undefined {
  if (v === undefined) return undefined
  if (/^\d+$/.test(v)) {
    const seq = Number(v)
    return (r) => r.seq > seq
  }
  const t = Date.parse(v)
  if (Number.isNaN(t)) throw new UsageError('--until must be a seq or an ISO 8601 time')
  return (r) => r.at.getTime() > t
}

function line(r: AuditRecord): string {
  return `${JSON.stringify({ seq: r.seq, at: r.at.toISOString(), environment: r.environment, actor: r.actor, action: r.action, address: r.address, ...(r.walletId !== undefined ? { walletId: r.walletId } : {}), ...(r.purpose !== undefined ? { purpose: r.purpose } : {}), outcome: r.outcome, hash: r.hash })}\n`
}

async function write(out: Writable, text: string): Promise<void> {
  if (!out.write(text)) await once(out, 'drain')
}

export async function auditExport(values: CliValues): Promise<number> {
  if (values.jsonl !== true) throw new UsageError('audit export needs --jsonl (the one format: JSON lines)')
  const since = seqFlag(values['since-seq'] as string | undefined, '--since-seq')
  const after = untilFlag(values.until as string | undefined)
  const file = values.out as string | undefined
  const vault = await Vault.open(openOptions(values, ['audit:read']))
  let out: Writable = process.stdout
  try {
    if (file !== undefined) {
      // Created for the operator alone (it names actors and addresses), never over a file.
      let fd: number
      try {
        fd = openSync(file, 'wx', 0o600)
      } catch (e) {
        throw new UsageError(`cannot create --out ${file}: ${(e as NodeJS.ErrnoException).code ?? 'error'} (it must not exist yet)`)
      }
      out = createWriteStream('', { fd })
    }
    const checkpoint = await vault.checkpoint()
    let rows = 0
    let firstSeq: number | undefined
    let lastSeq: number | undefined
    let lastHash: string | undefined
    for (let afterSeq = since; ; ) {
      const page = await vault.auditLog({ ...(afterSeq !== undefined ? { afterSeq } : {}), limit: PAGE })
      let stop = page.length < PAGE
      for (const r of page) {
        if (r.seq > checkpoint.seq || (after && after(r))) {
          stop = true
          break
        }
        await write(out, line(r))
        rows++
        firstSeq ??= r.seq
        lastSeq = r.seq
        lastHash = r.hash
      }
      if (stop || page.length === 0) break
      afterSeq = page[page.length - 1].seq
    }
    const check = await vault.verifyAuditChain()
    const verified = check.brokenAt === undefined
    await write(out, `${JSON.stringify({ checkpoint, rows, firstSeq: firstSeq ?? null, lastSeq: lastSeq ?? null, lastHash: lastHash ?? null, verified, ...(verified ? {} : { brokenAt: check.brokenAt, reason: check.reason }) })}\n`)
    if (out !== process.stdout) {
      out.end()
      await once(out, 'finish')
    }
    process.stderr.write(`exported ${rows} audit rows${lastSeq !== undefined ? ` (seq ${firstSeq} to ${lastSeq})` : ''}, up to the checkpoint at seq ${checkpoint.seq}\n`)
    if (!verified) {
      process.stderr.write(`audit chain BROKEN at seq ${check.brokenAt}: ${check.reason ?? 'no reason given'} (the rows are exported as they are)\n`)
      return EXIT.failed
    }
    return EXIT.ok
  } finally {
    if (out !== process.stdout && !out.writableFinished) out.destroy()
    await vault.close()
  }
}
