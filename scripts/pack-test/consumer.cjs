// Run in the fresh project: the CommonJS form of the README's first example.
const assert = require('node:assert/strict')
const { randomBytes } = require('node:crypto')
const { Vault, VaultError, ErrorCode, migrate } = require('sharevault')
const dynamic = require('sharevault/dynamic')

async function main() {
  assert.equal(typeof migrate, 'function')
  assert.equal(ErrorCode.ErrNotFound, 'ERR_NOT_FOUND')
  assert.deepEqual(Object.keys(dynamic).sort(), ['OPERATIONS', 'UnpersistedSharesError', 'delegated', 'vaulted'])
  assert.equal(typeof dynamic.vaulted, 'function')
  assert.equal(typeof dynamic.delegated, 'function')
  const vault = await Vault.open({ database: ':memory:', environment: 'pack-test', kms: { provider: 'local', key: randomBytes(32) } })
  const address = '0x' + 'ab'.repeat(20)
  const secretShare = randomBytes(48).toString('base64')
  await vault.storeWallet({
    walletMetadata: { walletId: 'w-1', accountAddress: address, chainName: 'EVM', thresholdSignatureScheme: 'TWO_OF_TWO', externalServerKeySharesBackupInfo: { passwordEncrypted: false, backups: {} } },
    externalServerKeyShares: [{ pubkey: { pubkey: new Uint8Array(64).fill(7) }, secretShare }],
  })
  const back = await vault.withWallet(address, (w) => w.externalServerKeyShares[0].secretShare, { purpose: 'sign' })
  assert.equal(back, secretShare)
  await assert.rejects(vault.getMetadata('0x' + '00'.repeat(20)), (e) => e instanceof VaultError && e.code === 'ERR_NOT_FOUND')
  await vault.close()
  console.log('commonjs: ok')
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
