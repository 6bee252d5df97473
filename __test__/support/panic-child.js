// Child of panic.test.ts: panics inside the addon three ways, then keeps working. Prints one
// JSON line with what each call raised (through the facade's error mapping).
const native = require('../../index')
const { fromNative } = require('../../dist/errors')
const { Vault } = require('../../dist')
const { randomBytes } = require('node:crypto')

async function outcome(where) {
  try {
    await native.__panicForTests(where)
    return { where, ok: true }
  } catch (e) {
    const v = fromNative(e)
    return { where, name: v.name, code: v.code, message: v.message, raw: String(e && e.message) }
  }
}

async function main() {
  const results = []
  for (const where of ['sync', 'async', 'settle']) results.push(await outcome(where))
  // The process and the runtime are still healthy.
  const vault = await Vault.open({ database: ':memory:', environment: 't', kms: { provider: 'local', key: randomBytes(32) } })
  const address = '0x' + '12'.repeat(20)
  await vault.storeWallet({ walletMetadata: { walletId: 'w', accountAddress: address, chainName: 'EVM', thresholdSignatureScheme: 'TWO_OF_TWO', externalServerKeySharesBackupInfo: { passwordEncrypted: false, backups: {} } }, externalServerKeyShares: [{ secretShare: 'generated-for-test' }] })
  const n = await vault.withWallet(address, (w) => w.externalServerKeyShares.length, { purpose: 'sign' })
  await vault.close()
  console.log(JSON.stringify({ results, afterwards: n }))
}
main()
