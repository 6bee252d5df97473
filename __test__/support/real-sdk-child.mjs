// Child of real-sdk.test.ts (the SDK loads only as an ES module): real share classes of
// @dynamic-labs-wallet/node@0.0.198 through the vault, then fed, hydrated, to the SDK's helpers
// that run offline on shares, next to the originals. Prints one JSON line of comparisons.
import { randomBytes } from 'node:crypto'
import { Vault } from 'sharevault'
import * as sdk from '@dynamic-labs-wallet/node'

const { EcdsaKeygenResult, EcdsaPublicKey, ExportableEd25519KeygenResult, BIP340KeygenResult, mergeUniqueKeyShares, DynamicWalletClient } = sdk

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
const secret = () => Array.from(randomBytes(3000), (b) => B58[b % 58]).join('')
const emptyBackups = { passwordEncrypted: false, backups: { dynamic: [], googleDrive: [], iCloud: [], user: [], external: [], delegated: [] } }

const cases = [
  { chain: 'EVM', address: '0x' + randomBytes(20).toString('hex'), scheme: 'TWO_OF_THREE', make: () => new EcdsaKeygenResult(new EcdsaPublicKey(new Uint8Array(randomBytes(64))), secret()) },
  { chain: 'SVM', address: randomBytes(32).toString('base64url').slice(0, 44), scheme: 'TWO_OF_TWO', make: () => new ExportableEd25519KeygenResult(new Uint8Array(randomBytes(32)), secret()) },
  { chain: 'BTC', address: 'bc1p' + randomBytes(19).toString('hex'), scheme: 'TWO_OF_TWO', addressType: 'taproot', make: () => new BIP340KeygenResult(new Uint8Array(randomBytes(32)), secret()) },
]
const count = { TWO_OF_TWO: 1, TWO_OF_THREE: 2 }

const vault = await Vault.open({ database: ':memory:', environment: 'real-sdk', kms: { provider: 'local', key: randomBytes(32) } })
const client = new DynamicWalletClient({ environmentId: 'real-sdk-test' })
const out = []
for (const c of cases) {
  const originals = Array.from({ length: count[c.scheme] }, c.make)
  const walletMetadata = { walletId: randomBytes(8).toString('hex'), accountAddress: c.address, chainName: c.chain, thresholdSignatureScheme: c.scheme, externalServerKeySharesBackupInfo: emptyBackups, ...(c.addressType ? { addressType: c.addressType } : {}) }
  await vault.storeWallet({ walletMetadata, externalServerKeyShares: originals })
  const hydrated = await vault.withWallet(c.address, (w) => w.externalServerKeyShares, { purpose: 'sdk-helpers' })
  const r = { chain: c.chain, shares: hydrated.length }
  // 1. The SDK's backup encrypts JSON.stringify(share): the same text for both.
  r.sameJson = hydrated.every((h, i) => JSON.stringify(h) === JSON.stringify(originals[i]))
  // 2. Its backup encryption and decryption of a share (password-based AES-GCM).
  const password = randomBytes(12).toString('hex')
  const fromHydrated = await client.decryptKeyShare({ keyShare: await client.encryptKeyShare({ keyShare: hydrated[0], password }), password })
  const fromOriginal = await client.decryptKeyShare({ keyShare: await client.encryptKeyShare({ keyShare: originals[0], password }), password })
  r.sameBackupRoundTrip = JSON.stringify(fromHydrated) === JSON.stringify(fromOriginal)
  // 3. Its share de-duplication treats a hydrated share as the original it is.
  const extra = c.make()
  r.dedupLengths = [
    mergeUniqueKeyShares(originals, hydrated).length,
    mergeUniqueKeyShares(hydrated, originals).length,
    mergeUniqueKeyShares(originals, originals).length,
    mergeUniqueKeyShares(hydrated, [extra]).length,
    mergeUniqueKeyShares(originals, [extra]).length,
  ]
  // 4. Public keys: as the SDK re-wraps a plain share (offlineExportKey: new XKeygenResult(share.pubkey, …))
  //    and, for ECDSA, serialises the key.
  if (c.chain === 'EVM') {
    const rewrapped = new EcdsaKeygenResult(hydrated[0].pubkey, hydrated[0].secretShare)
    r.sameRewrapJson = JSON.stringify(rewrapped) === JSON.stringify(originals[0])
    const key = new EcdsaPublicKey(hydrated[0].pubkey.pubkey)
    r.sameCompressed = Buffer.from(key.serializeCompressed()).equals(Buffer.from(originals[0].pubkey.serializeCompressed()))
    r.sameUncompressed = Buffer.from(key.serializeUncompressed()).equals(Buffer.from(originals[0].pubkey.serializeUncompressed()))
    r.pubkeyIsUint8Array = hydrated[0].pubkey.pubkey instanceof Uint8Array
  } else {
    const Rewrap = c.chain === 'SVM' ? ExportableEd25519KeygenResult : BIP340KeygenResult
    const rewrapped = new Rewrap(hydrated[0].pubkey, hydrated[0].secretShare)
    r.sameRewrapJson = JSON.stringify(rewrapped) === JSON.stringify(originals[0])
    r.pubkeyIsUint8Array = hydrated[0].pubkey instanceof Uint8Array
    r.samePubkeyBytes = Buffer.from(hydrated[0].pubkey).equals(Buffer.from(originals[0].pubkey))
  }
  r.sameSecret = hydrated.every((h, i) => h.secretShare === originals[i].secretShare)
  out.push(r)
}
await vault.close()
console.log(JSON.stringify(out))
