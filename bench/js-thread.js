// How long each vault call occupies the JS thread before it returns its promise (argument
// conversion, promise creation, hand-off to the runtime), averaged over N calls. This is the part
// of a call that can delay the event loop; the rest runs on other threads.
//   npm run build && node bench/js-thread.js [N]
const { randomBytes } = require('node:crypto')
const { openVault } = require('../index.js')
const { fakeCreatedWallet } = require('../dist/testing')

async function main() {
  const N = Number(process.argv[2] ?? 3000)
  const vault = await openVault({ database: ':memory:', environment: 'bench', kmsProvider: 'local', localKey: randomBytes(32), cacheEnabled: true })
  const wallets = Array.from({ length: N }, () => fakeCreatedWallet('EVM'))
  const metas = wallets.map((w) => JSON.stringify(w.walletMetadata))
  const time = async (label, call) => {
    let ns = 0n
    const pending = []
    for (let i = 0; i < N; i++) {
      const t = process.hrtime.bigint()
      pending.push(call(i))
      ns += process.hrtime.bigint() - t
    }
    await Promise.allSettled(pending)
    console.log(`${label}: ${(Number(ns / BigInt(N)) / 1000).toFixed(1)} µs on the JS thread per call`)
  }
  await time('storeWallet', (i) => vault.storeWallet(metas[i], undefined, wallets[i].externalServerKeyShares, undefined))
  await time('hydrate', (i) => vault.hydrate(wallets[i].walletMetadata.accountAddress, 'sign', undefined))
  await time('getMetadata', (i) => vault.getMetadata(wallets[i].walletMetadata.accountAddress))
  await vault.close()
}

main()
