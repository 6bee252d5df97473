// One of the four processes of the PostgreSQL multi-process store benchmark: opens its vault (or
// the baseline), says "ready", waits for "go" on stdin, stores `count` generated wallets with 64
// calls in flight, and prints "done".
const { Vault } = require('../dist')
const { fakeCreatedWallet } = require('../dist/testing')
const { PgBaselineVault } = require('./pg-baseline')

async function main() {
  const [impl, url, keyB64, countArg, shareLen] = process.argv.slice(2)
  const count = Number(countArg)
  const key = Buffer.from(keyB64, 'base64')
  const wallets = Array.from({ length: count }, () => fakeCreatedWallet('EVM', { secretShareLength: Number(shareLen) }))
  const v = impl === 'sharevault'
    ? await Vault.open({ database: url, environment: 'test', kms: { provider: 'local', key } })
    : await new PgBaselineVault(url, key).init()
  process.stdout.write('ready\n')
  await new Promise((r) => process.stdin.once('data', r))
  process.stdin.destroy() // nothing more to read; an open stdin would keep the process alive
  let next = 0
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (next < count) await v.storeWallet(wallets[next++])
  }))
  await v.close()
  process.stdout.write('done\n')
}

main().catch((e) => {
  process.stderr.write(`${e.code ?? ''} ${e.message}\n`)
  process.exit(1)
})
