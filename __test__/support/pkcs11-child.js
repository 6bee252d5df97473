// A process of its own for the PKCS#11 tests: SoftHSM reads SOFTHSM2_CONF once, at C_Initialize
// (once per process), and jest's process.env is a copy the native side does not see. Runs the
// scenario named in argv[2] and prints its result as JSON.
const { ALL_PERMISSIONS, Vault } = require('../../dist')
const { fakeCreatedWallet } = require('../../dist/testing')

const [scenario, database, module_, pin] = process.argv.slice(2)
const kms = (extra = {}) => ({ provider: 'pkcs11', module: module_, tokenLabel: 'sv-jest', keyLabel: 'kek', pin, ...extra })
const open = (k) => Vault.open({ database, environment: 'test', kms: k, allow: ALL_PERMISSIONS })
const failure = (e) => ({ code: e.code, path: e.path, message: e.message })

async function main() {
  switch (scenario) {
    case 'round-trip': {
      const v = await open(kms())
      const w = fakeCreatedWallet('EVM')
      await v.storeWallet(w)
      const same = await v.withWallet(w.walletMetadata.accountAddress, (x) => x.externalServerKeyShares[0].secretShare === w.externalServerKeyShares[0].secretShare)
      const primary = (await v.keyStatus()).keys.find((k) => k.state === 'primary')
      await v.close()
      // Without pin in the options: SHAREVAULT_PKCS11_PIN.
      const fromEnv = await open(kms({ pin: undefined })).then(async (v2) => {
        const n = (await v2.listWallets()).length
        await v2.close()
        return n
      }, failure)
      return { same, primary: { provider: primary.provider, keyId: primary.keyId, records: primary.records }, fromEnv }
    }
    case 'refusals': {
      const out = {}
      out.wrongPin = await open(kms({ pin: 'not-the-pin' })).then(() => 'opened', failure)
      out.extractable = await open(kms({ keyLabel: 'extractable' })).then(() => 'opened', failure)
      out.bothTokenAndSlot = await open(kms({ slot: 1 })).then(() => 'opened', failure)
      out.noModule = await open(kms({ module: '/nonexistent/pkcs11.so' })).then(() => 'opened', failure)
      return out
    }
    case 'rotate-from-local': {
      const key = Buffer.alloc(32, 9)
      const local = await open({ provider: 'local', key })
      const wallets = [fakeCreatedWallet('EVM'), fakeCreatedWallet('SVM')]
      for (const w of wallets) await local.storeWallet(w)
      await local.close()
      const v = await open({ ...kms(), previous: [{ provider: 'local', key }] })
      const report = await v.rotate()
      await v.close()
      const after = await open(kms())
      const status = await after.keyStatus()
      let hydrated = 0
      for (const w of wallets) hydrated += await after.withWallet(w.walletMetadata.accountAddress, () => 1)
      await after.close()
      return { done: report.done, remaining: report.remaining, behind: status.behind, hydrated }
    }
    default:
      throw new Error(`unknown scenario ${scenario}`)
  }
}

main().then(
  (r) => console.log(JSON.stringify(r)),
  (e) => {
    console.log(JSON.stringify({ error: failure(e) }))
    process.exitCode = 1
  },
)
