// Key rotation benchmark (README, "Key rotation"): re-wrap throughput for N wallets, and hydrate
// throughput and event-loop delay while a rotation runs, against the same process idle.
//   node --expose-gc bench/rotate.js [--wallets 100000] [--pg] [--aws] [--seconds 10] [--readme]
// 1. stores N wallets under key A (64 in flight);
// 2. idle: hydrates of random wallets for --seconds (64 in flight), with a 1 ms loop ticker;
// 3. opens with key B (A in previous) and rotates A -> B while the same hydrate load runs, then
//    measures idle again (the during/idle ratio is against the higher of the two idle figures);
// 4. opens with key C (B in previous) and rotates B -> C alone: re-wrap throughput by itself.
// --pg: PostgreSQL (a throwaway database) instead of SQLite; --aws: keys in moto's KMS instead of
// local keys (AWS to AWS: ReEncrypt). --readme: writes the README's `bench:rotate` block.
const { mkdtempSync, rmSync, readFileSync, writeFileSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')
const { randomBytes } = require('node:crypto')
const { execFileSync } = require('node:child_process')
const { monitorEventLoopDelay } = require('node:perf_hooks')
const { arg, flag, phase, pgDatabase } = require('./lib')
const { Vault, ALL_PERMISSIONS } = require('../dist')
const { fakeCreatedWallet } = require('../dist/testing')

const N = arg('--wallets', 100000)
const SECONDS = arg('--seconds', 10)
const PG = flag('--pg')
const AWS = flag('--aws')
// The library's defaults unless --batch-size or --concurrency say otherwise.
const ROTATE = { batchSize: arg('--batch-size', undefined), concurrency: arg('--concurrency', undefined) }

async function database(dir) {
  if (!PG) return { url: join(dir, 'rotate.db'), drop: async () => undefined }
  return pgDatabase(`sharevault_bench_rotate_${process.pid}`)
}

function keys() {
  if (!AWS) return { make: () => ({ provider: 'local', key: randomBytes(32) }), stop: () => undefined }
  const script = join(__dirname, '..', 'scripts', 'moto.sh')
  const [pid, endpoint] = execFileSync(script, ['start'], { encoding: 'utf8' }).trim().split(' ')
  const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' }
  return {
    make: () => ({ provider: 'aws', keyId: execFileSync(script, ['create-key', endpoint], { encoding: 'utf8' }).trim(), region: 'us-east-1', endpoint, credentials, timeoutMs: 30000 }),
    stop: () => process.kill(Number(pid), 'SIGKILL'),
  }
}

/** Hydrates of random wallets, 64 in flight, until `until()` says stop; ops/s and loop delay. */
async function hydrateLoad(vault, addresses, until) {
  global.gc?.()
  const h = monitorEventLoopDelay({ resolution: 1 })
  h.enable()
  let n = 0
  const t0 = process.hrtime.bigint()
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (!until()) {
      await vault.withWallet(addresses[Math.floor(Math.random() * addresses.length)], () => 1, { purpose: 'sign' })
      n++
    }
  }))
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  h.disable()
  return { opsPerSec: n / secs, loopP99: h.percentile(99) / 1e6, loopMax: h.max / 1e6 }
}

const timed = (seconds) => { const end = Date.now() + seconds * 1000; return () => Date.now() >= end }

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'sv-rotate-'))
  const db = await database(dir)
  const k = keys()
  const [a, b, c] = [k.make(), k.make(), k.make()]
  const base = { database: db.url, environment: 'bench', allow: ALL_PERMISSIONS }
  try {
    let vault = await Vault.open({ ...base, kms: a })
    const addresses = []
    const stored = await phase(N, 64, async () => {
      const w = fakeCreatedWallet('EVM', { secretShareLength: 3000 })
      await vault.storeWallet(w)
      addresses.push(w.walletMetadata.accountAddress)
    })
    await vault.close()
    vault = await Vault.open({ ...base, kms: { ...b, previous: [a] } })
    const idle = await hydrateLoad(vault, addresses, timed(SECONDS))
    let report
    const t0 = Date.now()
    const rotation = vault.rotate(ROTATE).then((r) => { report = r })
    const during = await hydrateLoad(vault, addresses, () => report !== undefined)
    await rotation
    const idleAfter = await hydrateLoad(vault, addresses, timed(SECONDS))
    const underLoad = { secs: (Date.now() - t0) / 1000, report, kms: vault.stats().kmsCalls }
    await vault.close()
    vault = await Vault.open({ ...base, kms: { ...c, previous: [b] } })
    const t1 = Date.now()
    const alone = await vault.rotate(ROTATE)
    const aloneSecs = (Date.now() - t1) / 1000
    const kms = vault.stats().kmsCalls
    await vault.close()
    const result = {
      backend: PG ? 'PostgreSQL' : 'SQLite',
      keys: AWS ? 'AWS KMS (moto)' : 'local keys',
      wallets: N,
      storePerSec: stored.opsPerSec,
      rotateAlone: { secs: aloneSecs, perSec: alone.done / aloneSecs, done: alone.done, failed: alone.failed, kms },
      rotateUnderLoad: { secs: underLoad.secs, perSec: underLoad.report.done / underLoad.secs, done: underLoad.report.done, failed: underLoad.report.failed, kms: underLoad.kms },
      hydrateIdle: idle.opsPerSec >= idleAfter.opsPerSec ? idle : idleAfter,
      hydrateIdleBefore: idle,
      hydrateIdleAfter: idleAfter,
      hydrateDuringRotation: during,
      ratio: during.opsPerSec / Math.max(idle.opsPerSec, idleAfter.opsPerSec),
    }
    process.stdout.write(JSON.stringify(result) + '\n')
    if (flag('--readme')) writeReadme(result)
  } finally {
    k.stop()
    await db.drop()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** One row per backend in the README's `bench:rotate` block (other rows kept). */
function writeReadme(r) {
  const path = join(__dirname, '..', 'README.md')
  const text = readFileSync(path, 'utf8')
  const start = text.indexOf('<!-- bench:rotate -->')
  const end = text.indexOf('<!-- /bench:rotate -->')
  if (start < 0 || end < 0) throw new Error('README has no bench:rotate block')
  const rows = new Map(text.slice(start, end).split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| backend')).map((l) => [l.split('|')[1].trim() + '|' + l.split('|')[2].trim(), l]))
  const n = (x) => Math.round(x).toLocaleString('en-US')
  rows.set(`${r.backend}|${r.keys}`, `| ${r.backend} | ${r.keys} | ${n(r.wallets)} | ${r.rotateAlone.secs.toFixed(1)} s (${n(r.rotateAlone.perSec)}/s) | ${r.rotateUnderLoad.secs.toFixed(1)} s (${n(r.rotateUnderLoad.perSec)}/s) | ${n(r.hydrateIdle.opsPerSec)}/s, p99 ${r.hydrateIdle.loopP99.toFixed(2)} ms | ${n(r.hydrateDuringRotation.opsPerSec)}/s, p99 ${r.hydrateDuringRotation.loopP99.toFixed(2)} ms | ${Math.round(r.ratio * 100)}% |`)
  const block = ['<!-- bench:rotate -->', '| backend | keys | wallets | rotation alone | rotation under hydrate load | hydrates idle (event-loop p99) | hydrates during rotation | during / idle |', '|---|---|---:|---:|---:|---:|---:|---:|', ...rows.values(), ''].join('\n')
  writeFileSync(path, text.slice(0, start) + block + text.slice(end))
}

main().catch((e) => { console.error(e); process.exit(1) })
