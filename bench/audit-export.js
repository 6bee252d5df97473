// `sharevault audit export --jsonl`'s memory against the log's size: a SQLite vault whose log
// grows to each size in turn (hydrates), exported by the command to a file each time; the
// command's peak resident memory (/usr/bin/time) should not grow with the rows.
//   npm run build && node bench/audit-export.js [rows ...]     (default 100000 1000000)
const { spawnSync } = require('node:child_process')
const { mkdtempSync, rmSync, statSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')
const { Vault, ALL_PERMISSIONS } = require('../dist')
const { fakeCreatedWallet } = require('../dist/testing')

const sizes = process.argv.slice(2).map(Number)
if (sizes.length === 0) sizes.push(100_000, 1_000_000)

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'sharevault-export-'))
  const database = join(dir, 'vault.db')
  const key = Buffer.alloc(32, 9)
  const kms = { provider: 'local', key: key.toString('base64') }
  try {
    const open = () => Vault.open({ database, environment: 'bench', kms: { provider: 'local', key }, allow: ALL_PERMISSIONS })
    let vault = await open()
    const wallets = []
    for (let i = 0; i < 100; i++) {
      const w = fakeCreatedWallet('EVM', { secretShareLength: 300 })
      await vault.storeWallet(w)
      wallets.push(w.walletMetadata.accountAddress)
    }
    let rows = (await vault.checkpoint()).seq
    for (const size of sizes) {
      const t = Date.now()
      while (rows < size) {
        const n = Math.min(10_000, size - rows)
        await Promise.all(Array.from({ length: 32 }, async (_, k) => {
          for (let i = k; i < n; i += 32) await vault.withWallet(wallets[i % wallets.length], () => 1, { purpose: 'sign' })
        }))
        rows += n
      }
      console.log(`log at ${rows} rows (${((Date.now() - t) / 1000).toFixed(0)} s to grow it)`)
      await vault.close()
      const out = join(dir, `export-${size}.jsonl`)
      const started = Date.now()
      const res = spawnSync('/usr/bin/time', ['-f', '%M', process.execPath, join(__dirname, '..', 'dist', 'cli.js'), 'audit', 'export', '--jsonl', '--out', out], {
        env: { ...process.env, SHAREVAULT_DATABASE: database, SHAREVAULT_ENVIRONMENT: 'bench', SHAREVAULT_KMS: JSON.stringify(kms) },
        stdio: ['ignore', 'ignore', 'pipe'],
        encoding: 'utf8',
      })
      if (res.status !== 0) throw new Error(`the export failed: ${res.stderr}`)
      const peak = Number(res.stderr.trim().split('\n').pop())
      console.log(`audit export of ${rows} rows: ${((Date.now() - started) / 1000).toFixed(1)} s, ${(statSync(out).size / 1048576).toFixed(0)} MiB written, peak RSS ${(peak / 1024).toFixed(0)} MiB`)
      rmSync(out)
      vault = await open()
    }
    await vault.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((e) => {
  console.error(e)
  process.exitCode = 1
})
