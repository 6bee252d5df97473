// The testing kit's costs, for the README's "Testing your code": resident memory while test
// vaults are opened and closed (200 per round, a quarter on temporary files, one wallet stored in
// each), and the time findShares takes over a large value.
//   npm run build && node bench/testing-kit.js
const { openTestVault, fakeCreatedWallet, findShares } = require('../dist/testing')

const cycle = async (n) => {
  for (let i = 0; i < n; i++) {
    const vault = await openTestVault({ storage: i % 4 === 0 ? 'file' : 'memory' })
    await vault.storeWallet(fakeCreatedWallet('EVM'))
    await vault.close()
  }
}

const ms = (t) => (Number(process.hrtime.bigint() - t) / 1e6).toFixed(1)

async function main() {
  await cycle(20)
  const base = process.memoryUsage().rss
  for (let k = 1; k <= 5; k++) {
    await cycle(200)
    console.log(`test vaults opened and closed: ${k * 200}, resident memory +${((process.memoryUsage().rss - base) / 1048576).toFixed(1)} MiB`)
  }
  const vault = await openTestVault()
  for (let i = 0; i < 100; i++) await vault.storeWallet(fakeCreatedWallet('EVM', { scheme: 'THREE_OF_FIVE' }))
  let t = process.hrtime.bigint()
  findShares('x'.repeat(1_000_000), vault)
  console.log(`findShares over 1,000,000 characters of text, 100 wallets known: ${ms(t)} ms`)
  const body = JSON.stringify(Array.from({ length: 200 }, () => fakeCreatedWallet('EVM').walletMetadata))
  t = process.hrtime.bigint()
  findShares(JSON.parse(body), vault)
  console.log(`findShares over 200 wallets' metadata (${body.length} bytes as JSON): ${ms(t)} ms`)
  await vault.close()
}

main().catch((e) => {
  console.error(e)
  process.exitCode = 1
})
