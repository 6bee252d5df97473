// Run in the fresh project: the ESM form; its named exports must be exactly the CommonJS ones,
// and both forms must share one VaultError class.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { randomBytes } from 'node:crypto'
import * as esm from 'sharevault'
import { Vault, VaultError } from 'sharevault'
import * as dynamic from 'sharevault/dynamic'

const cjs = createRequire(import.meta.url)('sharevault')
assert.deepEqual(Object.keys(esm).filter((k) => k !== 'default').sort(), Object.keys(cjs).sort())
assert.equal(esm.VaultError, cjs.VaultError)
const dynamicCjs = createRequire(import.meta.url)('sharevault/dynamic')
assert.deepEqual(Object.keys(dynamic).filter((k) => k !== 'default').sort(), Object.keys(dynamicCjs).sort())
assert.equal(dynamic.UnpersistedSharesError, dynamicCjs.UnpersistedSharesError)
for (const entry of ['sharevault/testing', 'sharevault/testing/jest']) {
  const esmForm = await import(entry)
  const cjsForm = createRequire(import.meta.url)(entry)
  assert.deepEqual(Object.keys(esmForm).filter((k) => k !== 'default').sort(), Object.keys(cjsForm).sort(), entry)
}
const testing = await import('sharevault/testing')
assert.equal(testing.TestVault, createRequire(import.meta.url)('sharevault/testing').TestVault)
const tv = await testing.openTestVault()
assert.ok(tv instanceof Vault)
await tv.close()

const vault = await Vault.open({ database: ':memory:', environment: 'pack-test', kms: { provider: 'local', key: randomBytes(32) } })
const address = 'So1ana' + 'x'.repeat(38)
await vault.storeWallet({
  walletMetadata: { walletId: 'w-2', accountAddress: address, chainName: 'SVM', thresholdSignatureScheme: 'TWO_OF_TWO', externalServerKeySharesBackupInfo: { passwordEncrypted: false, backups: {} } },
  externalServerKeyShares: [{ pubkey: new Uint8Array(32).fill(1), secretShare: randomBytes(32).toString('hex') }],
})
const n = await vault.withWallet(address, (w) => w.externalServerKeyShares.length, { purpose: 'sign' })
assert.equal(n, 1)
await assert.rejects(Vault.open({ database: 'file:x.db', environment: 'e', kms: { provider: 'local', key: randomBytes(32) } }), (e) => e instanceof VaultError && e.code === 'ERR_INVALID_INPUT')
await vault.close()
console.log('esm: ok')
