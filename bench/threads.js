// Where the time goes, by thread (Linux): CPU time each thread of the process spends per call,
// from /proc/self/task/*/schedstat (nanoseconds on CPU) read before and after a measured phase,
// grouped by thread name (the JavaScript thread, sharevault's runtime workers and SQLite writer,
// V8's and libuv's helpers). Used for bench/README.md's "Where the time goes".
//   npm run build && node --expose-gc bench/threads.js [hydrate|getMetadata|store] [--calls N]
//     [--wallets N] [--database URL] (default: a SQLite file in a temporary directory)
const { mkdtempSync, readdirSync, readFileSync, rmSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')
const { randomBytes } = require('node:crypto')
const { Vault } = require('../dist')
const { fakeCreatedWallet } = require('../dist/testing')
const { arg, phase } = require('./lib')

const args = process.argv.slice(2)
const mode = args[0] && !args[0].startsWith('--') ? args[0] : 'hydrate'
const CALLS = arg('--calls', 40_000)
const WALLETS = arg('--wallets', 10_000)
const dbArg = args.includes('--database') ? args[args.indexOf('--database') + 1] : undefined

/** Nanoseconds on CPU per thread: tid -> { name, ns }. */
function cpuByThread() {
  const out = new Map()
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const name = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim()
      const ns = Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0])
      out.set(tid, { name, ns })
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out
}

/** Thread names grouped the way the README reports them. */
function group(name, tid) {
  if (tid === String(process.pid)) return 'JavaScript thread'
  if (name.startsWith('sharevault-rt') || name.startsWith('tokio')) return 'sharevault runtime'
  if (name.startsWith('sharevault-wri')) return 'sharevault writer'
  if (name.startsWith('V8') || name.includes('DelayedTask')) return 'V8 helpers (GC)'
  if (name.startsWith('libuv')) return 'libuv pool'
  return 'other'
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'sharevault-threads-'))
  const vault = await Vault.open({ database: dbArg ?? join(dir, 'v.db'), environment: 'test', kms: { provider: 'local', key: randomBytes(32) } })
  const wallets = Array.from({ length: mode === 'store' ? CALLS : WALLETS }, (_, i) =>
    fakeCreatedWallet('EVM', { scheme: i % 2 ? 'TWO_OF_THREE' : 'TWO_OF_TWO', secretShareLength: 3000 }),
  )
  if (mode !== 'store') await phase(wallets.length, 64, (i) => vault.storeWallet(wallets[i]))
  const addresses = wallets.map((w) => w.walletMetadata.accountAddress)
  const at = (i) => addresses[(i * 7919) % addresses.length]
  const use = () => undefined
  const op = {
    hydrate: (i) => vault.withWallet(at(i), use, { purpose: 'sign' }),
    getMetadata: (i) => vault.getMetadata(at(i)),
    store: (i) => vault.storeWallet(wallets[i]),
  }[mode]
  const before = cpuByThread()
  const t0 = process.hrtime.bigint()
  const r = await phase(CALLS, 64, op)
  const wall = Number(process.hrtime.bigint() - t0)
  const after = cpuByThread()
  const s = vault.stats()
  const groups = new Map()
  for (const [tid, { name, ns }] of after) {
    const g = group(name, tid)
    const d = ns - (before.get(tid)?.ns ?? 0)
    const e = groups.get(g) ?? { ns: 0, threads: 0 }
    e.ns += d
    if (d > 0) e.threads++
    groups.set(g, e)
  }
  await vault.close()
  rmSync(dir, { recursive: true, force: true })
  console.log(`${mode}: ${Math.round(r.opsPerSec).toLocaleString('en-US')}/s, call p50 ${r.p50.toFixed(2)} ms${mode === 'hydrate' ? ` (inside the core: p50 ${s.hydrateP50Ms.toFixed(2)} ms)` : ''}, event-loop p99 ${r.loopP99.toFixed(2)} ms; CPU per call by thread (µs), over ${(wall / 1e9).toFixed(1)} s:`)
  let total = 0
  for (const [g, { ns, threads }] of [...groups].sort((a, b) => b[1].ns - a[1].ns)) {
    total += ns
    console.log(`  ${g.padEnd(20)} ${(ns / CALLS / 1000).toFixed(1).padStart(7)}  (${threads} thread${threads === 1 ? '' : 's'} busy, ${((100 * ns) / wall).toFixed(0)}% of a core)`)
  }
  console.log(`  ${'total'.padEnd(20)} ${(total / CALLS / 1000).toFixed(1).padStart(7)}  (${((100 * total) / wall).toFixed(0)}% of a core)`)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
