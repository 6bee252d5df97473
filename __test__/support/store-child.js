// Child process for the crash tests: stores generated wallets, 8 in flight, and prints one line
// per acknowledged store: "ack <address> <sha256 of its first secretShare>". With `replace`, it
// then replaces every stored wallet's shares once (backup info tagged with the new digest),
// printing "try <address> <digest>" before and "ack <address> <digest>" after. Runs until killed
// (or until `count` stores are acknowledged).
const { createHash } = require('node:crypto')
const { Vault } = require('../../dist')
const { backupInfoWithExternal, fakeCreatedWallet, fakeShares } = require('../../dist/testing')

async function main() {
  const [path, key, countArg, chain, mode] = process.argv.slice(2)
  const count = Number(countArg)
  const vault = await Vault.open({ database: path, environment: 'test', kms: { provider: 'local', key } })
  process.stdout.write('ready\n')
  let started = 0
  const worker = async () => {
    while (started < count) {
      started++
      const w = fakeCreatedWallet(chain, { secretShareLength: 500 })
      await vault.storeWallet(w)
      const digest = createHash('sha256').update(w.externalServerKeyShares[0].secretShare).digest('hex')
      process.stdout.write(`ack ${w.walletMetadata.accountAddress} ${digest}\n`)
      if (mode === 'replace') {
        const shares = fakeShares(chain, 1, { secretShareLength: 500 })
        const next = createHash('sha256').update(shares[0].secretShare).digest('hex')
        process.stdout.write(`try ${w.walletMetadata.accountAddress} ${next}\n`)
        await vault.replaceShares(w.walletMetadata.accountAddress, { externalServerKeyShares: shares, backupInfo: backupInfoWithExternal(next) })
        process.stdout.write(`ack ${w.walletMetadata.accountAddress} ${next}\n`)
      }
    }
  }
  await Promise.all(Array.from({ length: 8 }, worker))
  await vault.close()
}

main().catch((e) => {
  process.stderr.write(`${e.code ?? ''} ${e.message}\n`)
  process.exit(1)
})
