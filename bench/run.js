// sharevault benchmark: store and hydrate 10,000 wallets with realistic share sizes, next to the
// plain-JS baseline (node:crypto + better-sqlite3) in the same run. Reports throughput, p50/p99
// latency, and the event loop's p99 delay during each phase. Writes the table into README.md.
//   npm run bench                 (builds first)   |   node --expose-gc bench/run.js [--wallets N]
const { mkdtempSync, rmSync, readFileSync, writeFileSync } = require('node:fs')
const { tmpdir, cpus } = require('node:os')
const { join } = require('node:path')
const { randomBytes } = require('node:crypto')
const { Vault } = require('../dist')
const { fakeCreatedWallet } = require('../dist-demo/fixtures')
const { BaselineVault } = require('./baseline')

const { arg, flag, phase, table: renderTable } = require('./lib')
const WALLETS = arg('--wallets', 10_000)
const HYDRATIONS = arg('--hydrations', 10_000)
const CONCURRENCY = arg('--concurrency', 64)
const SHARE_LEN = arg('--share-bytes', 3000)
const WRITE_README = !flag('--no-readme')



/** The baseline is synchronous; it yields to the event loop between calls, as a server would. */
const yieldLoop = () => new Promise((r) => setImmediate(r))

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'sharevault-bench-'))
  const key = randomBytes(32)
  console.log(`generating ${WALLETS} wallets (shares of ${SHARE_LEN} chars, EVM 2/2 and 2/3 alternating)…`)
  const wallets = Array.from({ length: WALLETS }, (_, i) =>
    fakeCreatedWallet('EVM', { scheme: i % 2 ? 'TWO_OF_THREE' : 'TWO_OF_TWO', secretShareLength: SHARE_LEN }),
  )
  const order = Array.from({ length: HYDRATIONS }, () => Math.floor(Math.random() * WALLETS))
  const rows = []
  const sink = { n: 0 }
  const use = (w) => {
    sink.n += w.externalServerKeyShares[0].secretShare.length
  }

  // sharevault
  const vault = await Vault.open({ database: join(dir, 'sharevault.db'), environment: 'test', kms: { provider: 'local', key } })
  rows.push(['sharevault', 'store', await phase(WALLETS, CONCURRENCY, (i) => vault.storeWallet(wallets[i]))])
  rows.push(['sharevault', 'hydrate', await phase(HYDRATIONS, CONCURRENCY, (i) => vault.withWallet(wallets[order[i]].walletMetadata.accountAddress, use, { purpose: 'sign' }))])
  await vault.close()

  // Baseline, same envelope and durability; hydrate audited like sharevault, and (for
  // reference) without the audit write.
  const base = new BaselineVault(join(dir, 'baseline.db'), key)
  rows.push(['JS baseline', 'store', await phase(WALLETS, 1, async (i) => { base.storeWallet(wallets[i]); await yieldLoop() })])
  rows.push(['JS baseline', 'hydrate', await phase(HYDRATIONS, 1, async (i) => { base.withWallet(wallets[order[i]].walletMetadata.accountAddress, use, 'sign'); await yieldLoop() })])
  base.auditHydrate = false
  rows.push(['JS baseline, no hydrate audit', 'hydrate', await phase(HYDRATIONS, 1, async (i) => { base.withWallet(wallets[order[i]].walletMetadata.accountAddress, use, 'sign'); await yieldLoop() })])
  base.close()
  rmSync(dir, { recursive: true, force: true })

  const table = renderTable(rows)
  const meta = `${WALLETS.toLocaleString('en-US')} wallets, ${HYDRATIONS.toLocaleString('en-US')} hydrations of random wallets, secretShare ${SHARE_LEN} chars (1 or 2 shares), sharevault with ${CONCURRENCY} calls in flight; ${cpus().length} cores, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}. Reproduce: \`npm run bench\`.`
  console.log('\n' + table + '\n\n' + meta)
  if (WRITE_README) {
    const readme = join(__dirname, '..', 'README.md')
    const text = readFileSync(readme, 'utf8')
    const block = `<!-- bench:start -->\n${table}\n\n${meta}\n<!-- bench:end -->`
    const out = text.replace(/<!-- bench:start -->[\s\S]*?<!-- bench:end -->|BENCH_TABLE/, block)
    writeFileSync(readme, out)
    console.log('README.md table updated')
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
