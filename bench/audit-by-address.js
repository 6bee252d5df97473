// auditLog({ address }) against the size of the log: 200 wallets, N hydrates spread over them,
// then the mean time of one auditLog({ address, limit: 20 }) per wallet. Run it twice on the same
// file to see whether the read grows with the log (it did: SQLite walked the whole log by seq).
//   node bench/audit-by-address.js <database> <hydrates>
//   e.g. node bench/audit-by-address.js /tmp/a.db 20000 && node bench/audit-by-address.js /tmp/a.db 80000
const { Vault, ALL_PERMISSIONS } = require('../dist')
const { fakeCreatedWallet } = require('../dist/testing')

async function main() {
  const [database, n] = [process.argv[2], Number(process.argv[3] ?? 20000)]
  if (!database) throw new Error('usage: node bench/audit-by-address.js <database> <hydrates>')
  const v = await Vault.open({ database, environment: 'bench', kms: { provider: 'local', key: Buffer.alloc(32, 7) }, allow: ALL_PERMISSIONS })
  const wallets = []
  for (let i = 0; i < 200; i++) {
    const w = fakeCreatedWallet('EVM', { secretShareLength: 300 })
    await v.storeWallet(w)
    wallets.push(w.walletMetadata.accountAddress)
  }
  await Promise.all(Array.from({ length: 32 }, async (_, k) => {
    for (let i = k; i < n; i += 32) await v.withWallet(wallets[i % wallets.length], () => 1, { purpose: 'sign' })
  }))
  const rows = (await v.verifyAuditChain()).rows
  const t0 = process.hrtime.bigint()
  for (const a of wallets) await v.auditLog({ address: a, limit: 20 })
  console.log(`${rows} audit rows: auditLog({ address, limit: 20 }) ${(Number(process.hrtime.bigint() - t0) / 1e6 / wallets.length).toFixed(2)} ms per call`)
  await v.close()
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
