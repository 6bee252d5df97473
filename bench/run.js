// sharevault's main benchmark: sharevault next to its plain-JS baseline, on SQLite and on
// PostgreSQL, in alternating child processes (bench/child.js), several rounds, so both see the
// same machine at nearly the same time. Per backend and phase (store, hydrate, getMetadata):
// throughput, the ratio to the baseline of the same round, and the event loop's delay (p50, p99,
// max) from a 1 ms ticker, each as the median over the rounds with the spread (min-max).
// Writes the table into README.md between the `bench:` markers.
//   npm run bench     |   node bench/run.js [--backend sqlite|pg|all] [--rounds N] [--wallets N]
//                       [--hydrations N] [--metadata-reads N] [--concurrency N] [--share-bytes N] [--no-readme]
const { readFileSync, writeFileSync } = require('node:fs')
const { cpus } = require('node:os')
const { join } = require('node:path')
const { execFileSync } = require('node:child_process')
const { arg, flag, pgReachable } = require('./lib')

const args = process.argv.slice(2)
const backendArg = args.includes('--backend') ? args[args.indexOf('--backend') + 1] : 'all'
const BACKENDS = backendArg === 'all' ? ['sqlite', 'pg'] : [backendArg]
const ROUNDS = arg('--rounds', 3)
const options = {
  wallets: arg('--wallets', 10_000),
  hydrations: arg('--hydrations', 20_000),
  metadataReads: arg('--metadata-reads', 40_000),
  concurrency: arg('--concurrency', 64),
  shareBytes: arg('--share-bytes', 3000),
}
const WRITE_README = !flag('--no-readme')
const PHASES = ['store', 'hydrate', 'getMetadata']
const IMPLS = ['sharevault', 'baseline']

function child(impl, backend) {
  const out = execFileSync(process.execPath, ['--expose-gc', join(__dirname, 'child.js'), impl, backend, JSON.stringify(options)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 24,
  })
  return JSON.parse(out.toString().trim().split('\n').pop())
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const int = (x) => Math.round(x).toLocaleString('en-US')
const ms = (x) => x.toFixed(2)
/** "median (min-max)" over the rounds. */
const spread = (xs, f) => (xs.length === 1 ? f(xs[0]) : `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`)

async function main() {
  if (BACKENDS.includes('pg') && !(await pgReachable())) {
    if (backendArg === 'pg') throw new Error('PostgreSQL is not reachable (SHAREVAULT_PG_ADMIN_URL); start it with scripts/postgres.sh ensure')
    console.error('PostgreSQL is not reachable: its rounds are skipped (scripts/postgres.sh ensure starts it)')
    BACKENDS.splice(BACKENDS.indexOf('pg'), 1)
  }
  const runs = {} // runs[backend][impl] = [child output per round]
  for (const backend of BACKENDS) {
    runs[backend] = { sharevault: [], baseline: [] }
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate which goes first, so neither always runs on a warmer (or busier) machine.
      const order = r % 2 ? [...IMPLS].reverse() : IMPLS
      for (const impl of order) {
        process.stderr.write(`${backend} round ${r + 1}/${ROUNDS}: ${impl}…\n`)
        runs[backend][impl].push(child(impl, backend))
      }
    }
  }

  const rows = [
    '| backend | phase | implementation | ops/s | × baseline | event-loop p50 ms | event-loop p99 ms | event-loop max ms |',
    '|---|---|---|---:|---:|---:|---:|---:|',
  ]
  for (const backend of BACKENDS) {
    for (const ph of PHASES) {
      for (const impl of IMPLS) {
        const rs = runs[backend][impl].map((o) => o.phases[ph])
        const ratio =
          impl === 'sharevault'
            ? spread(rs.map((x, i) => x.opsPerSec / runs[backend].baseline[i].phases[ph].opsPerSec), (x) => `${x.toFixed(2)}×`)
            : ''
        const name = impl === 'sharevault' ? 'sharevault' : backend === 'pg' ? 'JS baseline (pg, pool 16)' : 'JS baseline (better-sqlite3)'
        rows.push(
          `| ${backend === 'pg' ? 'PostgreSQL' : 'SQLite'} | ${ph} | ${name} | ${spread(rs.map((x) => x.opsPerSec), int)} | ${ratio} | ${spread(rs.map((x) => x.loopP50), ms)} | ${spread(rs.map((x) => x.loopP99), ms)} | ${spread(rs.map((x) => x.loopMax), ms)} |`,
        )
      }
    }
  }
  const hit = BACKENDS.map((b) => {
    const s = runs[b].sharevault.map((o) => o.stats.cacheHits / Math.max(1, o.stats.cacheHits + o.stats.cacheMisses))
    return `${b === 'pg' ? 'PostgreSQL' : 'SQLite'} ${spread(s, (x) => `${(x * 100).toFixed(0)}%`)}`
  }).join(', ')
  const table = rows.join('\n')
  const meta =
    `${ROUNDS} rounds, each implementation in its own process, alternating; median (min–max) over the rounds. ` +
    `${int(options.wallets)} wallets stored, then ${int(options.hydrations)} hydrates and ${int(options.metadataReads)} \`getMetadata\` of random ones; ` +
    `secretShare ${options.shareBytes} chars (EVM 2/2 and 2/3 alternating), local key; ${options.concurrency} calls in flight ` +
    `(the synchronous SQLite baseline runs one at a time and yields between calls); event loop: \`monitorEventLoopDelay\` at 1 ms resolution, ` +
    `so an idle loop reads about 1 ms. Data-key cache hit rate in the hydrate phase (default 1,000 entries): ${hit}. ` +
    `${cpus().length} cores, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}. Reproduce: \`npm run bench\`.`
  console.log('\n' + table + '\n\n' + meta)
  if (WRITE_README) {
    const readme = join(__dirname, '..', 'README.md')
    const text = readFileSync(readme, 'utf8')
    const block = `<!-- bench:start -->\n${table}\n\n${meta}\n<!-- bench:end -->`
    writeFileSync(readme, text.replace(/<!-- bench:start -->[\s\S]*?<!-- bench:end -->/, block))
    console.log('README.md table updated')
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
