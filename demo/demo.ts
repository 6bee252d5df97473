/**
 * `npm run demo`: the main job on the embedded default (SQLite + a generated local key), as a user
 * of `sharevault/dynamic` would write it. The SDK's wallet clients are the contract fakes
 * (`sharevault/testing`: no network, generated shares), wrapped by `vaulted`: EVM, SVM, BTC and TON
 * wallets are created and stored, signed with, refreshed and reshared through the wrapper, and a
 * summary with no secret in it is printed. Not part of the published package.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { inspect } from 'node:util'
import { Vault, type ThresholdSignatureScheme } from 'sharevault'
import { vaulted } from 'sharevault/dynamic'
import { fakeClients, type FakeWalletClient } from 'sharevault/testing'

const DB = './sharevault-demo.db'
const KEY = './sharevault-demo.key'

function loadOrCreateKey(): string {
  if (existsSync(KEY)) return readFileSync(KEY, 'utf8').trim()
  const key = randomBytes(32).toString('base64')
  writeFileSync(KEY, key + '\n', { mode: 0o600, flag: 'wx' })
  return key
}

async function demo(): Promise<void> {
  const started = process.hrtime.bigint()
  const vault = await Vault.open({ database: `sqlite://${DB}`, environment: 'demo', kms: { provider: 'local', key: loadOrCreateKey() }, actor: 'demo' })
  const clients = fakeClients()
  const plan: [keyof typeof clients, ThresholdSignatureScheme, ('taproot' | 'native_segwit')?][] = [
    ['EVM', 'TWO_OF_TWO'],
    ['EVM', 'TWO_OF_THREE'],
    ['SVM', 'TWO_OF_TWO'],
    ['BTC', 'TWO_OF_TWO', 'taproot'],
    ['BTC', 'THREE_OF_FIVE', 'native_segwit'],
    ['TON', 'TWO_OF_TWO'],
  ]
  const rows: Record<string, string | number>[] = []
  for (const [chain, scheme, addressType] of plan) {
    const client = vaulted(clients[chain] as FakeWalletClient, vault, { actor: 'demo' })
    // Created with backUpToDynamic: false and stored, both halves, before it returns (no share comes back).
    const { walletMetadata } = await client.createWalletAccount({ thresholdSignatureScheme: scheme, ...(addressType ? { addressType } : {}) })
    const accountAddress = walletMetadata.accountAddress
    const sig1 = await client.signMessage({ accountAddress, message: 'hello' })
    if (rows.length === 0) {
      // What a careless console.log of hydrated state would print: the secret is redacted.
      await vault.withWallet(accountAddress, (w) => console.log('util.inspect of a hydrated share:', inspect(w.externalServerKeyShares[0], { depth: 1, breakLength: 200 })), { purpose: 'demo-inspect' })
    }
    // A refresh (new shares, written atomically; the old ones no longer sign) and, for EVM 2/2, a reshare to 2/3.
    const reshare = chain === 'EVM' && scheme === 'TWO_OF_TWO'
    const after = reshare
      ? await client.reshare({ accountAddress, oldThresholdSignatureScheme: scheme, newThresholdSignatureScheme: 'TWO_OF_THREE' })
      : await client.refreshWalletAccountShares({ accountAddress })
    const sig2 = await client.signMessage({ accountAddress, message: 'hello' })
    rows.push({
      chain: chain + (addressType ? `/${addressType}` : ''),
      address: accountAddress.length > 20 ? accountAddress.slice(0, 10) + '…' + accountAddress.slice(-6) : accountAddress,
      scheme: reshare ? `${scheme} → ${after.walletMetadata.thresholdSignatureScheme}` : String(after.walletMetadata.thresholdSignatureScheme),
      'sig before': sig1.slice(0, 16),
      'sig after refresh': sig2.slice(0, 16),
      'shares changed': sig1 !== sig2 ? 'yes' : 'NO',
    })
  }
  const stored = await vault.listWallets({ limit: 1000 })
  const audit = await vault.verifyAuditChain()
  await vault.close()
  console.table(rows)
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  console.log(`${plan.length} wallets created, stored, signed with, refreshed through sharevault/dynamic; ${stored.length} wallet(s) now in ${DB} (key in ${KEY}).`)
  console.log(`audit log: ${audit.rows} rows, hash chain ${audit.brokenAt === undefined ? 'intact' : `BROKEN at row ${audit.brokenAt}`}; ${ms.toFixed(0)} ms in all.`)
}

demo().catch((e) => {
  console.error(e instanceof Error ? `${e.name}: ${e.message}` : e)
  process.exitCode = 1
})
