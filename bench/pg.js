// PostgreSQL benchmark: sharevault next to the plain-JS baseline (node:crypto + pg, bench/pg-baseline.js)
// in one run, on throwaway databases of the local server (SHAREVAULT_PG_ADMIN_URL), dropped after.
//   - store and hydrate throughput, p50/p99, event-loop delay, 64 calls in flight, 10,000 wallets;
//   - store throughput from four processes at once;
//   - sharevault's hydrate p50 with 10,000 and with 1,000,000 wallets stored (--large N to change,
//     --large 0 to skip; seeded through storeWallet itself, so every row is a real sealed record).
// Writes the table into README.md between <!-- bench-pg:start --> and <!-- bench-pg:end -->.
//   npm run bench:pg        |   node --expose-gc bench/pg.js [--wallets N] [--large N] [--no-readme]
const { readFileSync, writeFileSync } = require('node:fs')
const { cpus } = require('node:os')
const { join } = require('node:path')
const { spawn } = require('node:child_process')
const { randomBytes } = require('node:crypto')
const { Client } = require('pg')
const { Vault } = require('../dist')
const { fakeCreatedWallet } = require('../dist/testing')
const { PgBaselineVault } = require('./pg-baseline')

const { arg, flag, phase, table: renderTable } = require('./lib')
const WALLETS = arg('--wallets', 10_000)
const HYDRATIONS = arg('--hydrations', 50_000)
const LARGE = arg('--large', 1_000_000)
const CONCURRENCY = 64
const SHARE_LEN = arg('--share-bytes', 3000)
const WRITE_README = !flag('--no-readme')
const ADMIN = process.env.SHAREVAULT_PG_ADMIN_URL || 'postgres://postgres@127.0.0.1:5432/postgres'



const created = []
async function database(tag) {
  const name = `sharevault_bench_${tag}_${process.pid}`
  const c = new Client({ connectionString: ADMIN })
  await c.connect()
  await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  await c.query(`CREATE DATABASE ${name}`)
  await c.end()
  created.push(name)
  const u = new URL(ADMIN)
  u.pathname = `/${name}`
  // The same transport for both: the pg package does not use TLS unless told to, while sqlx
  // would take the server's TLS when offered (sslmode=prefer), so both are told: no TLS on
  // loopback (what sharevault's transport rule allows for a loopback host only).
  u.searchParams.set('sslmode', 'disable')
  return u.toString()
}

async function dropAll() {
  const c = new Client({ connectionString: ADMIN })
  await c.connect()
  for (const name of created) await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  await c.end()
}

/** Four processes storing `perProcess` wallets each at once; aggregate stores per second. */
async function fourProcesses(impl, url, key, perProcess) {
  // Create the schema once, before four processes race to create it.
  if (impl === 'sharevault') await (await Vault.open({ database: url, environment: 'test', kms: { provider: 'local', key } })).close()
  else await (await new PgBaselineVault(url, key).init()).close()
  const children = [0, 1, 2, 3].map(() => spawn(process.execPath, [join(__dirname, 'pg-store-child.js'), impl, url, key.toString('base64'), String(perProcess), String(SHARE_LEN)], { stdio: ['pipe', 'pipe', 'inherit'] }))
  const line = (c, want) => new Promise((resolve, reject) => {
    let buf = ''
    c.stdout.on('data', (d) => { buf += d; if (buf.includes(want)) resolve() })
    c.on('exit', (code) => code !== 0 && reject(new Error(`${impl} child exited ${code}`)))
  })
  await Promise.all(children.map((c) => line(c, 'ready')))
  const t0 = process.hrtime.bigint()
  const done = children.map((c) => line(c, 'done'))
  for (const c of children) c.stdin.end('go\n')
  await Promise.all(done)
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  return (4 * perProcess) / secs
}

async function main() {
  const key = randomBytes(32)
  console.log(`generating ${WALLETS} wallets (shares of ${SHARE_LEN} chars)…`)
  const wallets = Array.from({ length: WALLETS }, (_, i) => fakeCreatedWallet('EVM', { scheme: i % 2 ? 'TWO_OF_THREE' : 'TWO_OF_TWO', secretShareLength: SHARE_LEN }))
  const order = Array.from({ length: HYDRATIONS }, () => Math.floor(Math.random() * WALLETS))
  const sink = { n: 0 }
  const use = (w) => { sink.n += w.externalServerKeyShares[0].secretShare.length }
  const rows = []
  const extra = []
  try {
    const vault = await Vault.open({ database: await database('sv'), environment: 'test', kms: { provider: 'local', key } })
    rows.push(['sharevault (PostgreSQL)', 'store', await phase(WALLETS, CONCURRENCY, (i) => vault.storeWallet(wallets[i]))])
    const hydrate10k = await phase(HYDRATIONS, CONCURRENCY, (i) => vault.withWallet(wallets[order[i]].walletMetadata.accountAddress, use, { purpose: 'sign' }))
    rows.push(['sharevault (PostgreSQL)', 'hydrate', hydrate10k])
    await vault.close()

    const base = await new PgBaselineVault(await database('js'), key).init()
    rows.push(['JS baseline (pg)', 'store', await phase(WALLETS, CONCURRENCY, (i) => base.storeWallet(wallets[i]))])
    rows.push(['JS baseline (pg)', 'hydrate', await phase(HYDRATIONS, CONCURRENCY, (i) => base.withWallet(wallets[order[i]].walletMetadata.accountAddress, use, 'sign'))])
    await base.close()

    const per = Math.floor(WALLETS / 4)
    const sv4 = await fourProcesses('sharevault', await database('sv4'), key, per)
    const js4 = await fourProcesses('baseline', await database('js4'), key, per)
    extra.push(`Stores from four processes at once (${(4 * per).toLocaleString('en-US')} wallets, 64 in flight each): sharevault ${Math.round(sv4).toLocaleString('en-US')}/s, JS baseline ${Math.round(js4).toLocaleString('en-US')}/s.`)

    if (LARGE > 0) {
      const big = await Vault.open({ database: await database('large'), environment: 'test', kms: { provider: 'local', key }, cache: false })
      const t0 = Date.now()
      const addresses = []
      for (let done = 0; done < LARGE; done += 10_000) {
        const batch = Array.from({ length: Math.min(10_000, LARGE - done) }, () => fakeCreatedWallet('EVM', { secretShareLength: SHARE_LEN }))
        await phase(batch.length, CONCURRENCY, (i) => big.storeWallet(batch[i]))
        for (let j = 0; j < batch.length; j += 100) addresses.push(batch[j].walletMetadata.accountAddress)
        if ((done / 10_000) % 10 === 0) console.log(`  seeded ${(done + batch.length).toLocaleString('en-US')} wallets (${Math.round((Date.now() - t0) / 1000)} s)`)
      }
      const r = await phase(HYDRATIONS, CONCURRENCY, (i) => big.withWallet(addresses[i % addresses.length], use, { purpose: 'sign' }))
      rows.push([`sharevault (PostgreSQL), ${LARGE.toLocaleString('en-US')} wallets stored`, 'hydrate', r])
      extra.push(`Hydrate p50 with ${WALLETS.toLocaleString('en-US')} wallets stored: ${hydrate10k.p50.toFixed(2)} ms; with ${LARGE.toLocaleString('en-US')}: ${r.p50.toFixed(2)} ms (${(r.p50 / hydrate10k.p50).toFixed(2)}×; the large run has the data-key cache off, so every hydrate unwraps, and reads cold rows); seeded through storeWallet in ${Math.round((Date.now() - t0) / 1000)} s.`)
      await big.close()
    }
  } finally {
    await dropAll()
  }

  const table = renderTable(rows)
  const meta = `${WALLETS.toLocaleString('en-US')} wallets, ${HYDRATIONS.toLocaleString('en-US')} hydrations of random wallets, secretShare ${SHARE_LEN} chars, ${CONCURRENCY} calls in flight for both, PostgreSQL on the same host (loopback, no TLS for either); ${extra.join(' ')} ${cpus().length} cores, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}. Reproduce: \`npm run bench:pg\`.`
  console.log('\n' + table + '\n\n' + meta)
  if (WRITE_README) {
    const readme = join(__dirname, '..', 'README.md')
    const text = readFileSync(readme, 'utf8')
    const block = `<!-- bench-pg:start -->\n${table}\n\n${meta}\n<!-- bench-pg:end -->`
    writeFileSync(readme, text.replace(/<!-- bench-pg:start -->[\s\S]*?<!-- bench-pg:end -->/, block))
    console.log('README.md table updated')
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
