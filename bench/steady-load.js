// A steady mixed load on one vault, throughput per 10 s for 60 s: 500 wallets, 16 callers, 60%
// hydrates, 20% getMetadata, 10% mergeBackupInfo, 10% new stores. For telling whether throughput
// declines with the vault's own growth (it did not: the fault soak's decline is the harness's).
//   npm run build && node bench/steady-load.js <database>     (a SQLite path or a postgres:// URL)
const { Vault, ALL_PERMISSIONS } = require('../dist')
const { fakeCreatedWallet } = require('../dist/testing')
const db = process.argv[2]
;(async () => {
  const v = await Vault.open({ database: db, environment: 'steady', kms: { provider: 'local', key: Buffer.alloc(32, 3) }, allow: ALL_PERMISSIONS })
  const addrs = []
  for (let i = 0; i < 500; i++) { const w = fakeCreatedWallet('EVM', { secretShareLength: 300 }); await v.storeWallet(w); addrs.push(w.walletMetadata.accountAddress) }
  const end = Date.now() + 60_000
  let n = 0, window = Date.now() + 10_000
  await Promise.all(Array.from({ length: 16 }, async (_, k) => {
    while (Date.now() < end) {
      const a = addrs[Math.floor(Math.random() * addrs.length)]
      const r = Math.random()
      if (r < 0.6) await v.withWallet(a, () => 1, { purpose: 'sign' })
      else if (r < 0.8) await v.getMetadata(a)
      else if (r < 0.9) await v.mergeBackupInfo(a, { passwordEncrypted: false, backups: {} })
      else { const w = fakeCreatedWallet('EVM', { secretShareLength: 300 }); await v.storeWallet(w); addrs.push(w.walletMetadata.accountAddress) }
      n++
      if (Date.now() > window) { console.log(new Date().toISOString().slice(11, 19), n, 'calls/10s'); n = 0; window += 10_000 }
    }
  }))
  await v.close()
})()
