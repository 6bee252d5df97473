/**
 * `doctor`: checks the deployment the settings describe and prints each finding with what to do.
 * The process checks (memory locking, core dumps, dumpable) read the service process's
 * `/proc/<pid>` with `--pid`; without it they read this process's limits, which a service started
 * the same way (same user, unit, container) shares, and the dumpable check is skipped.
 */
import { existsSync, readFileSync, statSync } from 'node:fs'
import { dirname } from 'node:path'
import { looksLikeProduction } from '../../index'
import { VaultError } from '../errors'
import type { KmsOptions, OpenOptions } from '../types'
import { Vault } from '../vault'
import { EXIT, openOptions, redact, UsageError, type CliValues } from './config'

export interface Finding {
  check: string
  status: 'ok' | 'fail' | 'warn' | 'skipped'
  detail: string
  /** What to do (for a fail or a warning). */
  fix?: string
}

/** The vault needs about 1 MiB locked (README, "Memory"); below this, secrets may reach swap. */
const MEMLOCK_NEEDED = 4 * 1024 * 1024
const CAP_IPC_LOCK = 14

function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '')
  return h === 'localhost' || h === '::1' || /^127\./.test(h)
}

/** SQLite's file, or undefined for PostgreSQL and ':memory:'. */
function sqlitePath(database: string): string | undefined {
  if (/^postgres(ql)?:\/\//.test(database) || database === ':memory:' || /^sqlite:(\/\/)?:memory:$/.test(database)) return undefined
  return database.replace(/^sqlite:(\/\/)?/, '')
}

function mode(path: string): number | undefined {
  try {
    return statSync(path).mode & 0o777
  } catch {
    return undefined
  }
}

const octal = (m: number) => `0${m.toString(8)}`

function fileChecks(database: string): Finding[] {
  const path = sqlitePath(database)
  if (path === undefined) return []
  const out: Finding[] = []
  const m = mode(path)
  if (m === undefined) out.push({ check: 'database file', status: 'fail', detail: `${path} does not exist`, fix: 'check SHAREVAULT_DATABASE, or run sharevault migrate to create it' })
  else if (m & 0o077) out.push({ check: 'database file', status: 'fail', detail: `${path} is mode ${octal(m)}: others may read the sealed records and the audit log`, fix: `chmod 600 ${path}` })
  else out.push({ check: 'database file', status: 'ok', detail: `${path} is mode ${octal(m)}` })
  const dir = dirname(path)
  const d = mode(dir)
  if (d !== undefined && d & 0o002) out.push({ check: 'database directory', status: 'fail', detail: `${dir} is mode ${octal(d)}: anyone may replace or delete the database`, fix: `chmod o-w ${dir} (0700 is best)` })
  else if (d !== undefined && d & 0o077) out.push({ check: 'database directory', status: 'warn', detail: `${dir} is mode ${octal(d)}: others may list it`, fix: `chmod 700 ${dir}` })
  else if (d !== undefined) out.push({ check: 'database directory', status: 'ok', detail: `${dir} is mode ${octal(d)}` })
  for (const suffix of ['-wal', '-shm']) {
    const s = mode(path + suffix)
    if (s !== undefined && s & 0o077) out.push({ check: `database ${suffix}`, status: 'fail', detail: `${path}${suffix} is mode ${octal(s)}: others may read recent writes`, fix: `chmod 600 ${path}${suffix}` })
  }
  return out
}

/** The file `--kms-file` names may hold a local key or credentials: the operator's alone. */
function kmsFileCheck(file: string | undefined): Finding[] {
  if (file === undefined) return []
  const m = mode(file)
  if (m === undefined) return []
  return m & 0o077
    ? [{ check: 'KMS settings file', status: 'fail', detail: `${file} is mode ${octal(m)}: others may read the KMS settings (a local key, credentials)`, fix: `chmod 600 ${file}` }]
    : [{ check: 'KMS settings file', status: 'ok', detail: `${file} is mode ${octal(m)}` }]
}

function kmsChecks(kms: KmsOptions, environment: string): Finding[] {
  const out: Finding[] = []
  const keys = [kms, ...(kms.previous ?? [])]
  if (keys.some((k) => k.provider === 'local')) {
    const prod = looksLikeProduction(environment)
    out.push(
      prod || kms.allowInProduction
        ? { check: 'local key', status: 'fail', detail: `environment ${JSON.stringify(environment)} uses the local development key${kms.allowInProduction ? ' (allowInProduction)' : ''}: it lives in the process, unprotected by any KMS`, fix: 'use a KMS key (provider "aws" or "transit"), and rotate to it: sharevault rotate' }
        : { check: 'local key', status: 'warn', detail: 'the local development key is configured', fix: 'use a KMS key (provider "aws" or "transit") outside development' },
    )
  }
  for (const k of keys) {
    // AWS's endpoint is optional (the SDK's is https); Transit's address is always given.
    const [endpoint, option] = k.provider === 'aws' ? [k.endpoint, 'kms.endpoint'] : k.provider === 'transit' ? [k.address, 'kms.address'] : [undefined, '']
    if (endpoint === undefined) continue
    let url: URL | undefined
    try {
      url = new URL(endpoint)
    } catch {
      out.push({ check: 'KMS transport', status: 'fail', detail: `${option} is not a URL`, fix: `fix ${option}` })
      continue
    }
    if (url.protocol === 'https:') out.push({ check: 'KMS transport', status: 'ok', detail: `TLS to ${url.host}` })
    else out.push({ check: 'KMS transport', status: isLoopback(url.hostname) ? 'warn' : 'fail', detail: `plain ${url.protocol} to ${url.host}`, fix: 'use https:// (plain http is for an emulator on loopback only)' })
  }
  return out
}

/** A soft limit from /proc/<pid>/limits, in its unit (`unlimited` is Infinity), or undefined. */
function limit(proc: string, name: string): number | undefined {
  try {
    const line = readFileSync(`${proc}/limits`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith(name))
    const soft = line?.slice(name.length).trim().split(/\s+/)[0]
    return soft === undefined ? undefined : soft === 'unlimited' ? Infinity : Number(soft)
  } catch {
    return undefined
  }
}

function hasCapability(proc: string, bit: number): boolean {
  try {
    const eff = /^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync(`${proc}/status`, 'utf8'))?.[1]
    return eff !== undefined && ((BigInt(`0x${eff}`) >> BigInt(bit)) & 1n) === 1n
  } catch {
    return false
  }
}

/**
 * Whether the process may be dumped or read by a same-user process (ptrace, `/proc/<pid>/mem`).
 * The kernel makes a non-dumpable process's `/proc/<pid>` files root's; a dumpable one's are its
 * effective user's. A process running as root looks the same either way.
 */
function dumpableCheck(pid: string | undefined): Finding {
  const check = 'process dumpable'
  if (pid === undefined) return { check, status: 'skipped', detail: 'no --pid: the service process is not examined', fix: 'sharevault doctor --pid <the service pid>, as root or the service user' }
  const proc = `/proc/${pid}`
  let euid: number | undefined
  let owner: number
  try {
    euid = Number(/^Uid:\s*\d+\s+(\d+)/m.exec(readFileSync(`${proc}/status`, 'utf8'))?.[1])
    owner = statSync(`${proc}/status`).uid
  } catch {
    return { check, status: 'skipped', detail: `could not read ${proc}/status` }
  }
  if (euid === 0) return { check, status: 'warn', detail: `process ${pid} runs as root: its dumpability cannot be seen from outside, and root may read its memory anyway`, fix: 'run the service as an unprivileged user, and open the vault with hardenProcess: true' }
  if (owner === 0) return { check, status: 'ok', detail: `process ${pid} is not dumpable (hardenProcess)` }
  return { check, status: 'fail', detail: `process ${pid} is dumpable: another process of its user may read its memory (ptrace, /proc/${pid}/mem), and a crash may dump it`, fix: 'open the vault with hardenProcess: true (PR_SET_DUMPABLE 0)' }
}

function processChecks(pid: string | undefined): Finding[] {
  if (process.platform !== 'linux') return [{ check: 'process limits', status: 'skipped', detail: `memory locking and dump checks are Linux only (${process.platform})` }]
  const proc = `/proc/${pid ?? 'self'}`
  const of = pid === undefined ? '' : ` (process ${pid})`
  const out: Finding[] = []
  const memlock = limit(proc, 'Max locked memory')
  if (memlock === undefined) out.push({ check: 'RLIMIT_MEMLOCK', status: 'skipped', detail: `could not read ${proc}/limits` })
  else if (memlock >= MEMLOCK_NEEDED || hasCapability(proc, CAP_IPC_LOCK)) out.push({ check: 'RLIMIT_MEMLOCK', status: 'ok', detail: `${memlock === Infinity ? 'unlimited' : `${Math.round(memlock / 1024)} KiB`}${of}` })
  else out.push({ check: 'RLIMIT_MEMLOCK', status: 'fail', detail: `${Math.round(memlock / 1024)} KiB${of}: pages holding shares and data keys may not be locked, and may reach swap`, fix: 'raise it to at least 4 MiB (ulimit -l 4096, LimitMEMLOCK= in the systemd unit) or grant CAP_IPC_LOCK' })
  const core = limit(proc, 'Max core file size')
  if (core === undefined) out.push({ check: 'core dumps', status: 'skipped', detail: `could not read ${proc}/limits` })
  else if (core === 0) out.push({ check: 'core dumps', status: 'ok', detail: `disabled (RLIMIT_CORE 0)${of}` })
  else out.push({ check: 'core dumps', status: 'fail', detail: `enabled (RLIMIT_CORE ${core === Infinity ? 'unlimited' : core})${of}: a crash dump holds whatever the JavaScript heap held (strings the SDK needs)`, fix: 'ulimit -c 0 (LimitCORE=0), and open the vault with hardenProcess: true (non-dumpable)' })
  out.push(dumpableCheck(pid))
  return out
}

const UNAVAILABLE = new Set(['ERR_DB_UNAVAILABLE', 'ERR_KMS_UNAVAILABLE'])

async function vaultChecks(options: OpenOptions, rotateAfterDays: number | undefined): Promise<{ findings: Finding[]; unavailable: boolean }> {
  const out: Finding[] = []
  let vault: Vault
  try {
    vault = await Vault.open(options)
  } catch (e) {
    if (e instanceof VaultError && e.code === 'ERR_STORAGE' && /migrate/.test(e.message)) {
      return { findings: [{ check: 'schema', status: 'fail', detail: e.message, fix: 'run sharevault migrate (with a role allowed to create tables)' }], unavailable: false }
    }
    if (!(e instanceof VaultError)) throw e
    return { findings: [{ check: 'open', status: 'fail', detail: `the vault does not open: ${e.code}: ${redact(e.message)}`, fix: UNAVAILABLE.has(e.code) ? 'check the database and KMS are reachable from here' : 'see the message' }], unavailable: UNAVAILABLE.has(e.code) }
  }
  try {
    out.push({ check: 'schema', status: 'ok', detail: 'current' })
    const tls = vault.stats().database.tls
    if (/^postgres(ql)?:\/\//.test(options.database)) {
      const host = new URL(options.database).hostname
      out.push(tls ? { check: 'database TLS', status: 'ok', detail: tls } : { check: 'database TLS', status: isLoopback(host) || host === '' ? 'warn' : 'fail', detail: `no TLS to ${host || 'the local socket'}`, fix: 'sslmode=verify-full in the URL (plain connections are for loopback only)' })
    }
    const keys = await vault.keyStatus(rotateAfterDays !== undefined ? { rotateAfterDays } : {})
    const due = keys.keys.filter((k) => k.due)
    out.push(
      due.length
        ? { check: 'rotation', status: 'fail', detail: `due for ${due.map((k) => `${k.provider}:${k.keyId}`).join(', ')} (after ${keys.rotateAfterDays} days); ${keys.behind} records behind the primary`, fix: 'register a new primary key and run sharevault rotate' }
        : { check: 'rotation', status: 'ok', detail: `not due (after ${keys.rotateAfterDays} days); ${keys.behind} records behind the primary` },
    )
    const chain = await vault.verifyAuditChain()
    out.push(
      chain.brokenAt === undefined
        ? { check: 'audit chain', status: 'ok', detail: `intact, ${chain.rows} rows` }
        : { check: 'audit chain', status: 'fail', detail: `broken at seq ${chain.brokenAt}: ${chain.reason ?? ''}`, fix: 'follow SECURITY.md, "The audit chain verification fails"' },
    )
  } finally {
    await vault.close()
  }
  return { findings: out, unavailable: false }
}

const MARK = { ok: 'ok  ', fail: 'FAIL', warn: 'warn', skipped: 'skip' } as const

export async function doctor(values: CliValues): Promise<number> {
  const options = openOptions(values, ['audit:read'])
  const days = values['rotate-after-days'] as string | undefined
  if (days !== undefined && !/^\d+$/.test(days)) throw new UsageError('--rotate-after-days must be a whole number')
  const pid = values.pid as string | undefined
  if (pid !== undefined && (!/^[1-9]\d*$/.test(pid) || !existsSync(`/proc/${pid}`))) throw new UsageError(`--pid ${/^\d{1,10}$/.test(pid) ? pid : '(not a number)'}: no such process here`)
  const opened = await vaultChecks(options, days === undefined ? undefined : Number(days))
  const findings = [...fileChecks(options.database), ...kmsFileCheck(values['kms-file'] as string | undefined), ...kmsChecks(options.kms, options.environment), ...processChecks(pid), ...opened.findings]
  const failed = findings.some((f) => f.status === 'fail')
  if (values.json) process.stdout.write(`${JSON.stringify({ ok: !failed, findings }, null, 2)}\n`)
  else {
    for (const f of findings) process.stdout.write(`${MARK[f.status]}  ${f.check}: ${f.detail}${f.fix && f.status !== 'ok' ? `\n        fix: ${f.fix}` : ''}\n`)
    process.stdout.write(failed ? 'doctor: some checks failed\n' : 'doctor: no check failed\n')
  }
  return opened.unavailable ? EXIT.unavailable : failed ? EXIT.failed : EXIT.ok
}
