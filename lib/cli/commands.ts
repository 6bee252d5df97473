/**
 * The operator's commands that read the vault: `keys`, `checkpoint`, `audit verify`. Each opens
 * the vault with only the permission it needs and never runs DDL; each prints for a person, or
 * with `--json` for a program, and returns its exit code.
 */
import { readFileSync } from 'node:fs'
import { Vault } from '../vault'
import type { AuditCheckpoint, KeyStatus, VaultSummary } from '../types'
import { cacheOf, EXIT, openOptions, UsageError, type CliValues as Values } from './config'

async function withVault<T>(values: Values, allow: Parameters<typeof openOptions>[1], use: (vault: Vault) => Promise<T>, cache: Parameters<typeof openOptions>[2] = false): Promise<T> {
  const vault = await Vault.open(openOptions(values, allow, cache))
  try {
    return await use(vault)
  } finally {
    await vault.close()
  }
}

function print(values: Values, json: unknown, text: string): void {
  process.stdout.write(values.json ? `${JSON.stringify(json, null, 2)}\n` : `${text}\n`)
}

const day = (d: Date | null) => (d ? d.toISOString().slice(0, 10) : '-')

/** `keys`: the environment's keyring, with each key's state and record count. */
export async function keys(values: Values): Promise<number> {
  const status: KeyStatus = await withVault(values, ['audit:read'], (v) => v.keyStatus())
  const rows = status.keys.map(
    (k) =>
      `  ${k.state.padEnd(12)} ${k.provider}:${k.keyId}  records ${k.records}  added ${day(k.addedAt)}${k.due ? '  ROTATION DUE' : ''}${k.tampered ? `  TAMPERED: ${k.tampered}` : ''}`,
  )
  print(
    values,
    status,
    [`keyring of ${values.environment ?? process.env.SHAREVAULT_ENVIRONMENT}: ${status.keys.length} key(s)`, ...rows, `records behind the primary: ${status.behind}; rows that do not verify: ${status.tampered}; rotation ${status.due ? 'due' : 'not due'} (after ${status.rotateAfterDays} days)`].join('\n'),
  )
  return status.tampered > 0 ? EXIT.failed : EXIT.ok
}

/** `checkpoint`: the authenticated audit head, as JSON (to keep outside the database). */
export async function checkpoint(values: Values): Promise<number> {
  const c = await withVault(values, ['audit:read'], (v) => v.checkpoint())
  process.stdout.write(`${JSON.stringify(c)}\n`)
  return EXIT.ok
}

function readCheckpoint(path: string): AuditCheckpoint {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (e) {
    throw new UsageError(`cannot read --since ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  try {
    return JSON.parse(text) as AuditCheckpoint
  } catch {
    throw new UsageError(`--since ${path} is not JSON (the output of sharevault checkpoint)`)
  }
}

/** `audit verify [--since checkpoint.json]`: exit 1 with the first bad seq and the reason. */
export async function auditVerify(values: Values): Promise<number> {
  const since = typeof values.since === 'string' ? readCheckpoint(values.since) : undefined
  const check = await withVault(values, ['audit:read'], (v) => v.verifyAuditChain(since ? { since } : {}))
  const acknowledged = check.acknowledged?.length ? `; acknowledged breaks recorded at seq ${check.acknowledged.join(', ')}` : ''
  if (check.brokenAt !== undefined) {
    print(values, { ok: false, ...check }, `audit chain BROKEN at seq ${check.brokenAt}: ${check.reason ?? 'no reason given'} (${check.rows} rows read)${acknowledged}`)
    return EXIT.failed
  }
  print(values, { ok: true, ...check }, `audit chain intact: ${check.rows} rows${since ? `, and it still reaches the checkpoint at seq ${since.seq}` : ''}${acknowledged}`)
  return EXIT.ok
}

/** What the cache settings mean for this environment's wallets, in one line. */
function cacheLine(cache: VaultSummary['cache'], wallets: number): string {
  if (cache === null) return 'data-key cache: off (every hydrate is a KMS unwrap)'
  const minutes = cache.maxAgeMs % 60000 === 0 ? `${cache.maxAgeMs / 60000} min` : `${cache.maxAgeMs} ms`
  const fits = wallets > cache.maxEntries ? `; ${wallets} wallets do not fit: a hydrate past the working set is a KMS unwrap (README, "Sizing the data-key cache")` : ''
  return `data-key cache: ${cache.maxEntries} entries, ${minutes} per key, ${cache.maxUses} uses per key${fits}`
}

/**
 * `status`: schema, wallets per chain, the keyring, rotation due or not, the audit head, and the
 * data-key cache settings (`--cache` / `SHAREVAULT_CACHE`, validated by the vault itself).
 */
export async function status(values: Values): Promise<number> {
  const { summary, keys, head, at } = await withVault(
    values,
    ['audit:read'],
    async (v) => {
      const [summary, keys, head] = [await v.summary(), await v.keyStatus(), await v.checkpoint()]
      const row = head.seq > 0 ? (await v.auditLog({ afterSeq: head.seq - 1, limit: 1 }))[0] : undefined
      return { summary, keys, head, at: row?.seq === head.seq ? row.at : null }
    },
    cacheOf(values),
  )
  const json = { ...summary, keys, audit: { headSeq: head.seq, headAt: at, checkpoint: head } }
  const chains = Object.entries(summary.walletsByChain)
    .map(([c, n]) => `${c} ${n}`)
    .join(', ')
  print(
    values,
    json,
    [
      `environment ${head.environment}: ${summary.backend}, schema version ${summary.schemaVersion}`,
      `wallets: ${summary.wallets}${chains ? ` (${chains})` : ''}`,
      `keyring: ${keys.keys.map((k) => `${k.provider}:${k.keyId} ${k.state} (${k.records} records)`).join('; ')}`,
      `rotation: ${keys.due ? 'DUE' : 'not due'} (after ${keys.rotateAfterDays} days); ${keys.behind} records behind the primary`,
      `audit head: seq ${head.seq}${at ? `, ${at.toISOString()}` : ''}`,
      cacheLine(summary.cache, summary.wallets),
    ].join('\n'),
  )
  return EXIT.ok
}

/** `compact`: reclaims freed space and says what that promises about the freed bytes. */
export async function compact(values: Values): Promise<number> {
  const c = await withVault(values, ['delete', 'audit:read'], (v) => v.compact())
  const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`
  print(values, c, `compacted: ${mib(c.bytesBefore)} before, ${mib(c.bytesAfter)} after\n${c.promise}`)
  return EXIT.ok
}
