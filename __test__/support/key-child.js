// Child process for the data-key memory tests: opens a vault on a file with a local key and the
// given cache options, stores and hydrates one wallet, says "ready <address>", then obeys lines
// on stdin: "close" (closes the vault, says "closed") and "exit". It never learns the data key:
// the test derives it from the database and scans this process's memory from outside.
const readline = require('node:readline')
const { Vault } = require('../../dist')
const { fakeCreatedWallet } = require('../../dist/testing')

async function main() {
  const [path, keyB64, cacheJson] = process.argv.slice(2)
  const cache = JSON.parse(cacheJson)
  const vault = await Vault.open({ database: path, environment: 'test', kms: { provider: 'local', key: keyB64 }, ...(cache === null ? {} : { cache }) })
  const created = fakeCreatedWallet('EVM', { secretShareLength: 200 })
  await vault.storeWallet(created)
  const address = created.walletMetadata.accountAddress
  await vault.withWallet(address, () => undefined, { purpose: 'sign' })
  process.stdout.write(`ready ${address}\n`)
  for await (const line of readline.createInterface({ input: process.stdin })) {
    if (line === 'close') {
      await vault.close()
      process.stdout.write('closed\n')
    } else if (line === 'exit') {
      process.exit(0)
    }
  }
}

main().catch((e) => {
  process.stderr.write(`${e.code ?? ''} ${e.message}\n`)
  process.exit(1)
})
