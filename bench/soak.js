// The fault soak (issue 19): worker processes on one database running a mixed load through the
// public API, faults injected on a schedule drawn from a seed, and the database checked against
// the workers' histories (bench/soak-model.js) at the end. Exits 1 on any invariant violation.
//   node bench/soak.js [--seconds 60] [--seed 1] [--backend sqlite|postgres] [--kms local|aws]
//                      [--workers 4] [--concurrency 8] [--json] [--self-test]
//   node bench/soak.js --ci   (npm run test:soak, and .ci/run: 60 s on SQLite with the local key,
//                              60 s on PostgreSQL with AWS KMS, seed 1, then the self-test,
//                              which must fail)
// Faults: SIGKILL of a worker with calls in flight (restarted at once); on PostgreSQL (a cluster
// the soak owns, bench/pg-cluster.js) `pg_terminate_backend` of every connection to the soak's
// database and a crash and restart of the server; on SQLite, run as root, the file system of the
// database file (a tmpfs the soak mounts) full for a while; with --kms aws, moto's KMS
// behind a proxy (bench/kms-proxy.js) refusing, stalling or resetting connections; in every
// worker, a second vault handle closed under its calls and a worker thread terminated with calls
// in flight (bench/soak-worker.js). Invariants: every acknowledged store and replace hydrates to
// exactly its shares (or, for a call whose answer was lost, to the one before it); a write
// refused with a definite error (not a lost answer) is not there; an acknowledged delete never
// comes back; every acknowledged hydrate has its audit row; the audit chain verifies; no share
// byte in any worker's output or in any error a worker received; no worker saw a violation while
// running; a worker that lived five minutes kept its memory flat after warm-up.
const { fork } = require('node:child_process')
const { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, openSync, writeSync, closeSync, copyFileSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')
const { randomBytes } = require('node:crypto')
const { flag, pct, pgDatabase, pgReachable } = require('./lib')
const { applyLine, digest, mulberry32 } = require('./soak-model')
const { Vault, ALL_PERMISSIONS } = require('../dist')
const { fakeCreatedWallet } = require('../dist/testing')
const { startProxy } = require('./kms-proxy')
const { startCluster } = require('./pg-cluster')

const argv = process.argv.slice(2)
const opt = (name, dflt) => {
  const i = argv.indexOf(name)
  return i >= 0 ? argv[i + 1] : dflt
}
const SECONDS = Number(opt('--seconds', 60))
const SEED = Number(opt('--seed', 1))
const BACKEND = opt('--backend', 'sqlite')
const KMS = opt('--kms', 'local')
const WORKERS = Number(opt('--workers', 4))
const CONCURRENCY = Number(opt('--concurrency', 8))
// The checker's own test: worker 1 acknowledges one replace it never makes; the run must fail.
const SELF_TEST = flag('--self-test')
if (!['sqlite', 'postgres'].includes(BACKEND)) throw new Error('--backend is sqlite or postgres')
if (!['local', 'aws'].includes(KMS)) throw new Error('--kms is local or aws')

const pctOf = (xs, p) => (xs.length ? pct([...xs].sort((a, b) => a - b), p) : null)

/** `--ci`: both backends for 60 s with seed 1, then the checker's self-test (which must fail). */
async function ci() {
  const { spawnSync } = require('node:child_process')
  const run = (...a) => spawnSync(process.execPath, [__filename, ...a], { stdio: 'inherit' }).status
  const seconds = opt('--seconds', '60')
  if (run('--seconds', seconds, '--seed', '1', '--backend', 'sqlite') !== 0) return 1
  // PostgreSQL with AWS KMS (moto behind the fault proxy): its connection cuts and the KMS's
  // outages in one run.
  if (await pgReachable()) {
    if (run('--seconds', seconds, '--seed', '1', '--backend', 'postgres', '--kms', 'aws') !== 0) return 1
  } else if (process.env.CI) {
    console.error('fault soak: PostgreSQL is not reachable (SHAREVAULT_PG_ADMIN_URL) and CI is set: it must run')
    return 1
  } else {
    console.log('fault soak: PostgreSQL not reachable, its soak skipped (CI=true makes this a failure); the KMS faults on SQLite instead')
    if (run('--seconds', seconds, '--seed', '1', '--backend', 'sqlite', '--kms', 'aws') !== 0) return 1
  }
  console.log('fault soak: the checker\'s self-test (one acknowledged replace never made: must be caught)')
  const self = spawnSync(process.execPath, [__filename, '--seconds', '5', '--seed', '1', '--self-test', '--json'], { encoding: 'utf8' })
  let caught = false
  try {
    const r = JSON.parse(self.stdout.trim().split('\n').pop())
    // Caught by a hydrate of its worker, or by the final check.
    caught = self.status === 1 && r.violations.some((v) => v.includes('neither its acknowledged ones') || v.includes('that no acknowledged (or unanswered) write of it stored'))
    if (r.kept) rmSync(r.kept, { recursive: true, force: true })
  } catch {
    // No report: the run failed some other way.
  }
  if (!caught) {
    console.error(`fault soak: the checker did not catch the self-test's lost write (exit ${self.status}): ${self.stderr.slice(-2000)}`)
    return 1
  }
  console.log('fault soak: the self-test\'s lost write was caught')
  return 0
}

async function main() {
  if (flag('--ci')) process.exit(await ci())
  const dir = mkdtempSync(join(tmpdir(), 'sv-soak-'))
  // PostgreSQL: a cluster of the soak's own, which it may crash and restart; the shared server
  // (no restart fault) only where no server binaries are installed.
  const cluster = BACKEND === 'postgres' ? await startCluster() : undefined
  if (BACKEND === 'postgres' && !cluster) console.log('fault soak: no PostgreSQL server binaries (initdb): the shared server, without the restart fault')
  const admin = cluster?.adminUrl ?? process.env.SHAREVAULT_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
  // SQLite: on a size-limited tmpfs of the soak's own when run as root, which it fills now and then.
  const disk = BACKEND === 'sqlite' ? mountDisk(dir) : undefined
  const db = BACKEND === 'sqlite' ? { url: join(disk?.path ?? dir, 'soak.db'), drop: async () => undefined } : await pgDatabase(`sharevault_soak_${process.pid}`, { admin })
  const kms = KMS === 'aws' ? await startKms() : { options: { provider: 'local', key: randomBytes(32).toString('hex') }, stop: async () => undefined }
  // Marks every share of the run (see soak-worker.js `marked`): found in captured output, a leak.
  const tag = `Zq${randomBytes(6).toString('hex')}`
  const rand = mulberry32(SEED)
  const report = { backend: BACKEND, kms: KMS, seed: SEED, seconds: SECONDS, workers: WORKERS, ops: {}, faults: {}, errors: {}, violations: [], recoveryMs: { sigkill: [], terminate: [], restart: [], kms: [], diskFull: [] }, rss: {} }
  // The first open creates the schema and the keyring, once, before the workers race to do it.
  const probe = await openVault(db.url, kms.options)

  const workers = new Map()
  const incarnations = []
  // Everything the workers wrote to stdout and stderr, scanned for share bytes at the end.
  const captured = []
  // Operations acknowledged so far, all incarnations, sampled once a second.
  const opsNow = () => incarnations.reduce((n, w) => n + Object.values(w.counts ?? {}).reduce((a, b) => a + b, 0), 0)
  const samples = []
  let stopRequested = false
  function start(id, incarnation) {
    const cfg = { worker: id, incarnation, database: db.url, kms: kms.options, history: join(dir, `history-${id}.jsonl`), seed: SEED * 1000 + id * 100 + incarnation, concurrency: CONCURRENCY, tag, rotator: id === 0, selfTest: SELF_TEST && id === 1, postgres: BACKEND === 'postgres' }
    const child = fork(join(__dirname, 'soak-worker.js'), [JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
    const w = { id, incarnation, child, ready: false, exited: false, firstOk: undefined, rss: [] }
    let out = ''
    child.on('error', (e) => report.violations.push(`worker ${id}: ${e.message}`))
    const capture = (b) => {
      out += b
      captured.push(b.toString())
    }
    child.stdout.on('data', capture)
    child.stderr.on('data', capture)
    child.on('message', (m) => {
      if (m.type === 'ready') w.ready = true
      else if (m.type === 'violation') report.violations.push(`worker ${id}: ${m.what}`)
      else if (m.type === 'rss') Object.assign(w, { counts: m.counts, errors: m.errors }).rss.push(m.rss)
      else if (m.type === 'done') Object.assign(w, { counts: m.counts, errors: m.errors })
    })
    w.exit = new Promise((resolve) => child.on('exit', (code, signal) => {
      w.exited = true
      w.output = out
      if (!w.killed && (code !== 0 || !stopRequested)) report.violations.push(`worker ${id} exited with ${code ?? signal}: ${out.slice(-2000)}`)
      resolve()
    }))
    workers.set(id, w)
    incarnations.push(w)
    return w
  }
  for (let i = 0; i < WORKERS; i++) start(i, 0)
  const waitReady = async (w, from) => {
    while (!w.ready && !w.exited) await new Promise((r) => setTimeout(r, 5))
    return Date.now() - from
  }
  for (const w of workers.values()) await waitReady(w, Date.now())
  const sampler = setInterval(() => samples.push(opsNow()), 1000)

  // The fault schedule: one fault every 2 to 6 s, drawn from the seed.
  const end = Date.now() + SECONDS * 1000
  const kinds = ['sigkill', ...(BACKEND === 'postgres' ? ['terminate'] : []), ...(cluster ? ['restart'] : []), ...(KMS === 'aws' ? ['kms'] : []), ...(disk ? ['diskFull'] : [])]
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, 2000 + rand() * 4000))
    if (Date.now() >= end) break
    const kind = kinds[Math.floor(rand() * kinds.length)]
    report.faults[kind] = (report.faults[kind] ?? 0) + 1
    const t0 = Date.now()
    if (kind === 'sigkill') {
      const id = Math.floor(rand() * WORKERS)
      const old = workers.get(id)
      old.killed = true
      old.child.kill('SIGKILL')
      await old.exit
      const w = start(id, old.incarnation + 1)
      // Recovery: from the kill until the new process has opened its vault and serves calls.
      report.recoveryMs.sigkill.push(await waitReady(w, t0))
    } else if (kind === 'diskFull') {
      // The file system full for 0.5 to 2 s (every write fails: SQLITE_FULL), then room again.
      disk.fill()
      await new Promise((r) => setTimeout(r, 500 + rand() * 1500))
      disk.free()
      report.recoveryMs.diskFull.push(await untilStored(probe))
    } else if (kind === 'kms') {
      // Unreachable (refused), partitioned (stalled) for 0.5 to 3 s, or its connections reset.
      const how = ['refuse', 'stall', 'reset'][Math.floor(rand() * 3)]
      report.faults[`kms ${how}`] = (report.faults[`kms ${how}`] ?? 0) + 1
      kms.proxy.set(how)
      if (how !== 'reset') await new Promise((r) => setTimeout(r, 500 + rand() * 2500))
      kms.proxy.set('pass')
      // Recovery: from the KMS's return until a store (a new data key from the KMS) works again.
      report.recoveryMs.kms.push(await untilStored(probe))
    } else {
      // Every connection cut (terminate), or the server crashed and restarted (restart).
      if (kind === 'terminate') await terminateBackends(admin, db.url)
      else cluster.restart()
      // Recovery: until the coordinator's own vault (its connections cut too) answers again.
      for (;;) {
        const ok = await probe.listWallets({ limit: 1 }).then(() => true, () => false)
        if (ok) break
        await new Promise((r) => setTimeout(r, 10))
      }
      report.recoveryMs[kind].push(Date.now() - t0)
    }
  }
  stopRequested = true
  clearInterval(sampler)
  // Throughput over time: operations per 10 s window (a dip is a fault's cost, a slope a leak's).
  report.throughputPer10s = samples.filter((_, i) => i % 10 === 9).map((n, i, a) => n - (i ? a[i - 1] : 0))
  // A worker that exited by itself has no channel left (its exit was reported as a violation).
  for (const w of workers.values()) if (!w.exited && w.child.connected) w.child.send('stop')
  await Promise.all([...workers.values()].map((w) => w.exit))
  await probe.close()
  for (const w of incarnations) {
    for (const [k, v] of Object.entries(w.counts ?? {})) report.ops[k] = (report.ops[k] ?? 0) + v
    for (const [k, v] of Object.entries(w.errors ?? {})) report.errors[k] = (report.errors[k] ?? 0) + v
  }
  for (const w of workers.values()) {
    const warm = w.rss.slice(Math.floor(w.rss.length / 3))
    if (warm.length > 2) {
      const [from, to] = [warm[0], Math.max(...warm)].map((b) => Math.round(b / 2 ** 20))
      report.rss[`worker ${w.id}`] = { afterWarmUpMiB: from, maxMiB: to, seconds: w.rss.length }
      // Flat after warm-up: judged only on a worker that lived five minutes (a short life is warm-up).
      if (w.rss.length >= 300 && to - from > Math.max(64, from / 2)) report.violations.push(`worker ${w.id}'s memory grew from ${from} MiB after warm-up to ${to} MiB`)
    }
  }

  await check(db.url, kms.options, dir, report)
  await kms.stop()
  const leaked = captured.join('').split(tag).length - 1
  if (leaked) report.violations.push(`share bytes in the workers' captured output: ${leaked} places`)
  report.capturedBytes = captured.reduce((n, b) => n + b.length, 0)
  report.recovery = {
    sigkill: { p50: pctOf(report.recoveryMs.sigkill, 50), max: pctOf(report.recoveryMs.sigkill, 100) },
    terminate: { p50: pctOf(report.recoveryMs.terminate, 50), max: pctOf(report.recoveryMs.terminate, 100) },
    restart: { p50: pctOf(report.recoveryMs.restart, 50), max: pctOf(report.recoveryMs.restart, 100) },
    diskFull: { p50: pctOf(report.recoveryMs.diskFull, 50), max: pctOf(report.recoveryMs.diskFull, 100) },
    kms: { p50: pctOf(report.recoveryMs.kms, 50), max: pctOf(report.recoveryMs.kms, 100) },
  }
  delete report.recoveryMs
  if (report.violations.length) {
    // Kept for the post-mortem: the histories (digests only, no share) and, on SQLite, the file.
    report.kept = dir
    if (cluster) report.keptCluster = cluster.stop({ keep: true })
    disk?.unmount({ keepIn: dir })
  } else {
    disk?.unmount()
    if (cluster) cluster.stop()
    else await db.drop()
    rmSync(dir, { recursive: true, force: true })
  }
  if (flag('--json')) process.stdout.write(JSON.stringify(report) + '\n')
  else print(report)
  process.exit(report.violations.length ? 1 : 0)
}

/** A vault on the soak's database and key (`kmsOptions` as the workers get them: JSON). */
function openVault(database, kmsOptions) {
  const kms = kmsOptions.provider === 'local' ? { provider: 'local', key: Buffer.from(kmsOptions.key, 'hex') } : kmsOptions
  return Vault.open({ database, environment: 'soak', kms, allow: ALL_PERMISSIONS })
}

/**
 * moto's KMS (scripts/moto.sh) with a key of its own, behind the fault proxy (bench/kms-proxy.js):
 * the workers reach the KMS only through the proxy. A 2 s timeout per call, so a stall ends calls.
 */
async function startKms() {
  const { execFileSync } = require('node:child_process')
  const script = join(__dirname, '..', 'scripts', 'moto.sh')
  const [pid, endpoint] = execFileSync(script, ['start'], { encoding: 'utf8' }).trim().split(' ')
  const keyId = execFileSync(script, ['create-key', endpoint], { encoding: 'utf8' }).trim()
  const proxy = await startProxy(endpoint)
  const options = { provider: 'aws', keyId, region: 'us-east-1', endpoint: proxy.endpoint, credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' }, timeoutMs: 2000 }
  return { options, proxy, stop: async () => {
    await proxy.close()
    execFileSync(script, ['stop', pid])
  } }
}

/**
 * Milliseconds until `vault` stores a wallet again (a write to the database, a new data key from
 * the KMS); the wallet is deleted at once (it is in no worker's history).
 */
async function untilStored(vault) {
  const t0 = Date.now()
  for (;;) {
    const w = fakeCreatedWallet('EVM', { secretShareLength: 300 })
    if (await vault.storeWallet(w).then(() => true, () => false)) {
      await vault.deleteWallet(w.walletMetadata.accountAddress).catch(() => undefined)
      return Date.now() - t0
    }
    await new Promise((r) => setTimeout(r, 10))
  }
}

/**
 * A 512 MiB tmpfs under `dir` for the SQLite file, mounted when run as root (undefined, with a
 * message, otherwise): `fill()` writes a file until the file system is full, `free()` removes it.
 */
function mountDisk(dir) {
  const { execFileSync } = require('node:child_process')
  if (process.getuid?.() !== 0) {
    console.log('fault soak: not root, so no tmpfs of its own: the disk-full fault is skipped')
    return undefined
  }
  const path = join(dir, 'disk')
  mkdirSync(path)
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512m,mode=0700', 'tmpfs', path], { stdio: 'pipe' })
  } catch (e) {
    console.log(`fault soak: mounting a tmpfs failed (${e.stderr?.toString().trim() || e.message}): the disk-full fault is skipped`)
    rmSync(path, { recursive: true, force: true })
    return undefined
  }
  const filler = join(path, 'filler')
  return {
    path,
    fill() {
      const fd = openSync(filler, 'w')
      const chunk = Buffer.alloc(1 << 20)
      try {
        for (;;) writeSync(fd, chunk)
      } catch (e) {
        if (e.code !== 'ENOSPC') throw e
      } finally {
        closeSync(fd)
      }
    },
    free: () => rmSync(filler, { force: true }),
    /** Unmounts it; `keepIn`: the database files copied there first (a failed run's post-mortem). */
    unmount({ keepIn } = {}) {
      rmSync(filler, { force: true })
      if (keepIn) for (const f of readdirSync(path)) copyFileSync(join(path, f), join(keepIn, f))
      execFileSync('umount', [path])
      rmSync(path, { recursive: true, force: true })
    },
  }
}

/** Cuts every connection to the soak's database (the vault's pools reconnect). */
async function terminateBackends(admin, url) {
  const { Client } = require('pg')
  const name = new URL(url).pathname.slice(1)
  const c = new Client({ connectionString: admin })
  await c.connect()
  try {
    await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name])
  } finally {
    await c.end()
  }
}

/** The database against every worker's history. */
async function check(url, kmsOptions, dir, report) {
  const vault = await openVault(url, kmsOptions)
  const bad = (what) => report.violations.push(`final check: ${what}`)
  try {
    const all = new Map()
    // Every worker's history, and those of the threads its in-process faults terminated.
    for (const name of readdirSync(dir).filter((f) => /^history-.*\.jsonl$/.test(f))) {
      const path = join(dir, name)
      const wallets = new Map()
      {
        for (const line of readFileSync(path, 'utf8').split('\n')) {
          if (!line) continue
          try {
            applyLine(wallets, JSON.parse(line))
          } catch {
            // The last line of a killed worker may be cut: it was never acted on.
          }
        }
      }
      for (const [a, w] of wallets) all.set(a, w)
    }
    report.wallets = { total: all.size, live: 0, deleted: 0, uncertain: 0 }
    const audited = new Map()
    for (let after = 0; ;) {
      const page = await vault.auditLog({ afterSeq: after, limit: 1000 })
      if (!page.length) break
      for (const r of page) if (r.action === 'hydrate' && r.outcome === 'ok' && r.purpose === 'sign') audited.set(r.address.toLowerCase(), (audited.get(r.address.toLowerCase()) ?? 0) + 1)
      after = page[page.length - 1].seq
    }
    for (const [a, w] of all) {
      if (w.state === 'live' && (w.accept.length > 1 || w.absentOk)) report.wallets.uncertain++
      if (w.state === 'deleted') {
        report.wallets.deleted++
        // An acknowledged delete (or a wallet seen missing): it must never come back.
        const e = await vault.getMetadata(a).then(() => undefined, (err) => err)
        if (e?.code !== 'ERR_NOT_FOUND') bad(`wallet ${a} was deleted and is there: ${e ? e.code : 'its metadata is readable'}`)
        continue
      }
      report.wallets.live++
      const seen = await vault.withWallet(a, (h) => digest(h.externalServerKeyShares), { purpose: 'soak-check' }).catch((e) => e)
      if (seen instanceof Error) {
        if (!(seen.code === 'ERR_NOT_FOUND' && w.absentOk)) bad(`wallet ${a}: ${seen.code} ${seen.message}`)
      } else if (!w.accept.includes(seen)) {
        bad(`wallet ${a} hydrates to shares that no acknowledged (or unanswered) write of it stored`)
      }
      // EVM addresses are case-insensitive: the log holds them lowercased.
      const rows = audited.get(a.toLowerCase()) ?? 0
      if ((w.hydrates ?? 0) > rows) bad(`wallet ${a}: ${w.hydrates} acknowledged hydrates, ${rows} audit rows`)
    }
    const chain = await vault.verifyAuditChain()
    report.auditRows = chain.rows
    if (chain.brokenAt !== undefined) bad(`the audit chain is broken at ${chain.brokenAt}: ${chain.reason}`)
  } finally {
    await vault.close()
  }
}

function print(r) {
  const lines = [
    `fault soak: ${r.backend}, ${r.kms} KMS, seed ${r.seed}, ${r.seconds} s, ${r.workers} workers`,
    `  operations: ${Object.entries(r.ops).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `  faults: ${Object.entries(r.faults).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`,
    `  errors by code (expected under the faults; any other code is also a violation): ${Object.entries(r.errors).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`,
    `  recovery ms (p50 / max): SIGKILL ${r.recovery.sigkill.p50} / ${r.recovery.sigkill.max}; connections cut ${r.recovery.terminate.p50} / ${r.recovery.terminate.max}; disk full ${r.recovery.diskFull.p50} / ${r.recovery.diskFull.max}; server restarted ${r.recovery.restart.p50} / ${r.recovery.restart.max}; KMS back ${r.recovery.kms.p50} / ${r.recovery.kms.max}`,
    `  wallets at the end: ${JSON.stringify(r.wallets)}; audit rows ${r.auditRows}`,
    `  throughput (operations per 10 s): ${r.throughputPer10s.join(' ')}`,
    `  captured worker output scanned for share bytes: ${r.capturedBytes} bytes`,
    `  RSS of the last incarnations (after warm-up -> max, over their lives): ${Object.entries(r.rss).map(([k, v]) => `${k} ${v.afterWarmUpMiB} -> ${v.maxMiB} MiB (${v.seconds} s)`).join(', ')}`,
    `  invariant violations: ${r.violations.length}${r.kept ? ` (histories kept in ${r.kept}${r.keptCluster ? `, the database cluster in ${r.keptCluster}` : ''})` : ''}`,
    ...r.violations.slice(0, 20).map((v) => `    - ${v}`),
  ]
  process.stdout.write(lines.join('\n') + '\n')
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
