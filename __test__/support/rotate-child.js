// Child process for the rotation tests. `store <n>`: stores n generated wallets under key A and
// prints "stored <address> <sha256 of its first secretShare>" for each. `rotate`: opens with key B
// as primary and key A in previous, runs vault.rotate() and prints "progress <done>" after every
// batch and, at the end, "report <json>" (the report and the KMS counters). Killed at will.
const { createHash } = require('node:crypto')
const { Vault, ALL_PERMISSIONS } = require('../../dist')
const { fakeCreatedWallet } = require('../../dist/testing')

async function main() {
  const [database, keyA, keyB, mode, n, batch] = process.argv.slice(2)
  const say = (line) => process.stdout.write(`${line}\n`)
  if (mode === 'store') {
    const vault = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key: keyA } })
    let left = Number(n)
    const worker = async () => {
      while (left > 0) {
        left--
        const w = fakeCreatedWallet('EVM', { secretShareLength: 200 })
        await vault.storeWallet(w)
        say(`stored ${w.walletMetadata.accountAddress} ${createHash('sha256').update(w.externalServerKeyShares[0].secretShare).digest('hex')}`)
      }
    }
    await Promise.all(Array.from({ length: 16 }, worker))
    await vault.close()
    return
  }
  const vault = await Vault.open({
    database,
    environment: 'test',
    kms: { provider: 'local', key: keyB, previous: [{ provider: 'local', key: keyA }] },
    allow: ALL_PERMISSIONS,
  })
  say('ready')
  const report = await vault.rotate({ batchSize: Number(batch || 100), onProgress: (p) => say(`progress ${p.done}`) })
  say(`report ${JSON.stringify({ ...report, kmsCalls: vault.stats().kmsCalls })}`)
  await vault.close()
}

main().catch((e) => {
  process.stderr.write(`${e.code ?? ''} ${e.message}\n`)
  process.exit(1)
})
