// Shared by the benchmark scripts: argument parsing and one measured phase.
const { monitorEventLoopDelay } = require('node:perf_hooks')

const args = process.argv.slice(2)
const arg = (name, dflt) => {
  const i = args.indexOf(name)
  return i >= 0 ? Number(args[i + 1]) : dflt
}
const flag = (name) => args.includes(name)

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]

/** Runs `total` calls of `op(i)` with `concurrency` in flight; measures latency and loop delay. */
async function phase(total, concurrency, op) {
  global.gc?.()
  const lat = new Float64Array(total)
  const h = monitorEventLoopDelay({ resolution: 1 })
  h.enable()
  let next = 0
  const t0 = process.hrtime.bigint()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) {
      const i = next++
      const s = process.hrtime.bigint()
      await op(i)
      lat[i] = Number(process.hrtime.bigint() - s) / 1e6
    }
  }))
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  h.disable()
  const sorted = Array.from(lat).sort((a, b) => a - b)
  return { opsPerSec: total / secs, p50: pct(sorted, 50), p99: pct(sorted, 99), loopP50: h.percentile(50) / 1e6, loopP99: h.percentile(99) / 1e6, loopMax: h.max / 1e6 }
}

/** The table every benchmark writes: one row per implementation and phase. */
function table(rows) {
  const f = (x, d = 2) => x.toFixed(d)
  return [
    '| implementation | phase | ops/s | p50 ms | p99 ms | event-loop p99 ms | event-loop max ms |',
    '|---|---|---:|---:|---:|---:|---:|',
    ...rows.map(([impl, ph, r]) => `| ${impl} | ${ph} | ${Math.round(r.opsPerSec).toLocaleString('en-US')} | ${f(r.p50)} | ${f(r.p99)} | ${f(r.loopP99)} | ${f(r.loopMax)} |`),
  ].join('\n')
}

/** Whether the PostgreSQL server the benchmarks would use answers. */
async function pgReachable() {
  const { Client } = require('pg')
  const c = new Client({ connectionString: process.env.SHAREVAULT_PG_ADMIN_URL || 'postgres://postgres@127.0.0.1:5432/postgres', connectionTimeoutMillis: 3000 })
  try {
    await c.connect()
    await c.end()
    return true
  } catch {
    return false
  }
}

/** A throwaway PostgreSQL database named `name` (dropped first if it exists) on the server `admin` names: `{ url, drop }`. */
async function pgDatabase(name, { sslmode, admin = process.env.SHAREVAULT_PG_ADMIN_URL || 'postgres://postgres@127.0.0.1:5432/postgres' } = {}) {
  const { Client } = require('pg')
  const run = async (sql) => {
    const c = new Client({ connectionString: admin })
    await c.connect()
    try {
      await c.query(sql)
    } finally {
      await c.end()
    }
  }
  await run(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  await run(`CREATE DATABASE ${name}`)
  const u = new URL(admin)
  u.pathname = `/${name}`
  if (sslmode) u.searchParams.set('sslmode', sslmode)
  return { url: u.toString(), drop: () => run(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) }
}

module.exports = { arg, flag, pct, phase, table, pgDatabase, pgReachable }
