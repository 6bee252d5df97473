// Child process for the multi-process contention test. Runs `ops` operations, 16 in flight, on
// the given wallets of a shared database: replaceShares (shares and backup info tagged with a
// unique tag, passed as the actor too), mergeBackupInfo (backup info tagged likewise) and
// withWallet. Every hydration must see metadata and shares of one generation: the shares' tag
// equals the backup info's tag unless a merge came after the replace (merge tags start "m").
// Prints "ok <replaces> <merges> <hydrations> <conflicts>", or exits 1 on any inconsistency or on
// an error other than a retry-exhausted ERR_CONFLICT (a write that lost every compare-and-swap
// for a few seconds, as documented under heavy contention: refused, nothing written; counted).
const { Vault } = require('../../dist')
const { backupInfoWithExternal, fakeShares } = require('../../dist/testing')

async function main() {
  const [database, key, id, opsArg, addressesJson] = process.argv.slice(2)
  const addresses = JSON.parse(addressesJson)
  const ops = Number(opsArg)
  const vault = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key } })
  let started = 0
  const done = { replace: 0, merge: 0, hydrate: 0, conflicts: 0 }
  const exhausted = (e) => {
    if (e?.code === 'ERR_CONFLICT' && /kept changing/.test(e.message)) done.conflicts++
    else throw e
  }
  const worker = async () => {
    while (started < ops) {
      const n = started++
      const address = addresses[n % addresses.length]
      const kind = n % 3
      const tag = `${kind === 1 ? 'm' : 'r'}${id}-${n}`
      if (kind === 0) {
        const shares = fakeShares('EVM', 1).map((s) => ({ ...s, secretShare: `${tag}:${s.secretShare}` }))
        await vault.replaceShares(address, { externalServerKeyShares: shares, backupInfo: backupInfoWithExternal(tag) }, { actor: tag }).then(() => done.replace++, exhausted)
      } else if (kind === 1) {
        await vault.mergeBackupInfo(address, backupInfoWithExternal(tag), { actor: tag }).then(() => done.merge++, exhausted)
      } else {
        await vault.withWallet(address, ({ walletMetadata, externalServerKeyShares }) => {
          const backupTag = walletMetadata.externalServerKeySharesBackupInfo.backups.external[0].externalKeyShareId
          const shareTag = externalServerKeyShares[0].secretShare.split(':')[0]
          if (!backupTag.startsWith('m') && backupTag !== shareTag) {
            throw new Error(`torn read: metadata of ${backupTag} with shares of ${shareTag}`)
          }
        }, { purpose: 'sign' })
        done.hydrate++
      }
    }
  }
  await Promise.all(Array.from({ length: 16 }, worker))
  await vault.close()
  process.stdout.write(`ok ${done.replace} ${done.merge} ${done.hydrate} ${done.conflicts}\n`)
}

main().catch((e) => {
  process.stderr.write(`${e.code ?? ''} ${e.message}\n`)
  process.exit(1)
})
