// Audit streaming in constant memory: fills a SQLite vault's audit log with N rows (hydrates of
// one wallet), then, in a fresh process for each, measures the peak RSS that verifyAuditChain()
// and a full auditLog() walk (1,000 rows a page) add over the opened vault. Run for two sizes, so
// "constant" is a comparison, not a claim.
//   node bench/audit-memory.js [--rows 1000000] [--small 10000]
const { execFileSync } = require('node:child_process')
const { mkdtempSync, rmSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')

const KEY = Buffer.alloc(32, 7).toString('base64')

async function child() {
  const [mode, path, n] = process.argv.slice(2)
  const { Vault, ALL_PERMISSIONS } = require('../dist')
  const vault = await Vault.open({ database: `sqlite://${path}`, environment: 'bench', kms: { provider: 'local', key: KEY }, allow: ALL_PERMISSIONS })
  if (mode === 'fill') {
    const { fakeCreatedWallet } = require('../dist/testing')
    const w = fakeCreatedWallet('EVM')
    await vault.storeWallet(w)
    const address = w.walletMetadata.accountAddress
    let next = 1
    await Promise.all(Array.from({ length: 256 }, async () => {
      while (next < Number(n)) {
        next++
        await vault.withWallet(address, () => undefined, { purpose: 'sign' })
      }
    }))
    await vault.close()
    return
  }
  global.gc?.()
  const before = process.resourceUsage().maxRSS
  const rssBefore = process.memoryUsage().rss
  const t0 = Date.now()
  let rows = 0
  if (mode === 'verify') {
    const c = await vault.verifyAuditChain()
    if (c.brokenAt !== undefined) throw new Error(`the chain is broken: ${JSON.stringify(c)}`)
    rows = c.rows
  } else {
    let after = 0
    for (;;) {
      const page = await vault.auditLog({ afterSeq: after, limit: 1000 })
      if (page.length === 0) break
      rows += page.length
      after = page[page.length - 1].seq
    }
  }
  const secs = (Date.now() - t0) / 1000
  const peak = (process.resourceUsage().maxRSS - before) / 1024
  // What stays once the JS garbage of the rows handed out is collected.
  global.gc?.()
  const retainedMiB = (process.memoryUsage().rss - rssBefore) / 1024 / 1024
  process.stdout.write(JSON.stringify({ rows, addedMiB: peak, retainedMiB, secs }))
  await vault.close()
}

function run(mode, path, n) {
  return JSON.parse(execFileSync(process.execPath, ['--expose-gc', __filename, '--child', mode, path, String(n)], { encoding: 'utf8', maxBuffer: 1 << 20 }) || 'null')
}

async function main() {
  const args = process.argv.slice(2)
  const arg = (name, d) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : d)
  const sizes = [arg('--small', 10000), arg('--rows', 1000000)]
  const dir = mkdtempSync(join(tmpdir(), 'sv-audit-mem-'))
  const out = [
    '| audit rows | verifyAuditChain: peak RSS added | time | auditLog walk (1,000 a page): peak RSS added | retained after GC | time |',
    '|---:|---:|---:|---:|---:|---:|',
  ]
  try {
    for (const n of sizes) {
      const path = join(dir, `a${n}.db`)
      const t0 = Date.now()
      run('fill', path, n)
      process.stderr.write(`filled ${n} rows in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`)
      const v = run('verify', path, n)
      const l = run('walk', path, n)
      out.push(`| ${v.rows.toLocaleString('en-US')} | ${v.addedMiB.toFixed(1)} MiB | ${v.secs.toFixed(1)} s | ${l.addedMiB.toFixed(1)} MiB | ${l.retainedMiB.toFixed(1)} MiB | ${l.secs.toFixed(1)} s |`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  console.log(out.join('\n'))
}

if (process.argv[2] === '--child') {
  process.argv.splice(2, 1)
  child().catch((e) => {
    process.stderr.write(`${e.stack}\n`)
    process.exit(1)
  })
} else {
  main()
}
