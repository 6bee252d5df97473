// One measured process of `bench/run.js`: one implementation (sharevault or its plain-JS baseline)
// on one backend (SQLite or PostgreSQL). Stores the wallets, then hydrates and reads metadata of
// random ones, and prints one JSON line: per phase, throughput, call latency and the event loop's
// delay from a 1 ms ticker. Run by run.js in alternating child processes, never by hand:
//   node --expose-gc bench/child.js <sharevault|baseline> <sqlite|pg> <json options>
const { mkdtempSync, rmSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')
const { randomBytes } = require('node:crypto')
const { phase, pgDatabase: pgDatabaseNamed } = require('./lib')

const [impl, backend, optionsJson] = process.argv.slice(2)
const o = JSON.parse(optionsJson)

/** A throwaway PostgreSQL database (no TLS on loopback for both implementations: the `pg`
 * package never uses TLS unless told to, so an encrypted connection would measure TLS). */
const pgDatabase = () => pgDatabaseNamed(`sharevault_bench_${impl}_${process.pid}`, { sslmode: 'disable' })

/** `{ store, hydrate, getMetadata, close }` for the implementation under test. */
async function open(key, dir) {
  if (impl === 'sharevault') {
    const { Vault } = require('../dist')
    let drop = async () => undefined
    let database = join(dir, 'sharevault.db')
    if (backend === 'pg') ({ url: database, drop } = await pgDatabase())
    const vault = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key } })
    return {
      concurrency: o.concurrency,
      store: (w) => vault.storeWallet(w),
      hydrate: (address, use) => vault.withWallet(address, use, { purpose: 'sign' }),
      getMetadata: (address) => vault.getMetadata(address),
      stats: () => {
        const s = vault.stats()
        return { cacheHits: s.cacheHits, cacheMisses: s.cacheMisses, memory: s.memory }
      },
      close: async () => { await vault.close(); await drop() },
    }
  }
  if (backend === 'sqlite') {
    // Synchronous: one call at a time, yielding to the event loop between calls, as a server
    // handling requests would.
    const { BaselineVault } = require('./baseline')
    const base = new BaselineVault(join(dir, 'baseline.db'), key)
    const yieldLoop = () => new Promise((r) => setImmediate(r))
    return {
      concurrency: 1,
      store: async (w) => { base.storeWallet(w); await yieldLoop() },
      hydrate: async (address, use) => { base.withWallet(address, use, 'sign'); await yieldLoop() },
      getMetadata: async (address) => { base.getMetadata(address); await yieldLoop() },
      stats: () => ({}),
      close: async () => base.close(),
    }
  }
  const { PgBaselineVault } = require('./pg-baseline')
  const { url, drop } = await pgDatabase()
  const base = await new PgBaselineVault(url, key).init()
  return {
    concurrency: o.concurrency,
    store: (w) => base.storeWallet(w),
    hydrate: (address, use) => base.withWallet(address, use, 'sign'),
    getMetadata: (address) => base.getMetadata(address),
    stats: () => ({}),
    close: async () => { await base.close(); await drop() },
  }
}

async function main() {
  const { fakeCreatedWallet } = require('../dist/testing')
  const wallets = Array.from({ length: o.wallets }, (_, i) =>
    fakeCreatedWallet('EVM', { scheme: i % 2 ? 'TWO_OF_THREE' : 'TWO_OF_TWO', secretShareLength: o.shareBytes }),
  )
  const addresses = wallets.map((w) => w.walletMetadata.accountAddress)
  const pick = (n) => Array.from({ length: n }, () => addresses[Math.floor(Math.random() * addresses.length)])
  const hydrateOrder = pick(o.hydrations)
  const metadataOrder = pick(o.metadataReads)
  const sink = { n: 0 }
  const use = (w) => { sink.n += w.externalServerKeyShares[0].secretShare.length }

  const dir = mkdtempSync(join(tmpdir(), 'sharevault-bench-'))
  const v = await open(randomBytes(32), dir)
  const out = { impl, backend, phases: {} }
  try {
    out.phases.store = await phase(o.wallets, v.concurrency, (i) => v.store(wallets[i]))
    out.phases.hydrate = await phase(o.hydrations, v.concurrency, (i) => v.hydrate(hydrateOrder[i], use))
    out.phases.getMetadata = await phase(o.metadataReads, v.concurrency, (i) => v.getMetadata(metadataOrder[i]))
    out.stats = v.stats()
  } finally {
    await v.close()
    rmSync(dir, { recursive: true, force: true })
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
