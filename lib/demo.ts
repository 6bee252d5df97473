/**
 * `npm run demo`: the main job on the embedded default (SQLite + a generated local key).
 * Creates SDK-shaped EVM, SVM and BTC wallets locally (no network), stores them, hydrates and
 * "signs" with them, refreshes and reshares, and prints a summary with no secret in it.
 * Not part of the published package (it uses the generated fixtures).
 */
import { createHmac, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { inspect } from 'node:util'
import { Vault } from './vault'
import { backupInfoWithExternal, fakeCreatedWallet, fakeShares, type Chain } from './fixtures'
import type { ThresholdSignatureScheme } from './types'

const DB = './sharevault-demo.db'
const KEY = './sharevault-demo.key'

function loadOrCreateKey(): string {
  if (existsSync(KEY)) return readFileSync(KEY, 'utf8').trim()
  const key = randomBytes(32).toString('base64')
  writeFileSync(KEY, key + '\n', { mode: 0o600, flag: 'wx' })
  return key
}

/** Stands in for the SDK's signMessage: an HMAC keyed by the share, so it needs the real share. */
function fakeSign(secretShares: { secretShare: string }[], message: string): string {
  const h = createHmac('sha256', secretShares.map((s) => s.secretShare).join('|'))
  return h.update(message).digest('hex').slice(0, 16)
}

async function demo(): Promise<void> {
  const started = process.hrtime.bigint()
  const vault = await Vault.open({ database: `sqlite://${DB}`, environment: 'demo', kms: { provider: 'local', key: loadOrCreateKey() }, actor: 'demo' })
  const plan: [Chain, ThresholdSignatureScheme, ('taproot' | 'native_segwit')?][] = [
    ['EVM', 'TWO_OF_TWO'],
    ['EVM', 'TWO_OF_THREE'],
    ['SVM', 'TWO_OF_TWO'],
    ['BTC', 'TWO_OF_TWO', 'taproot'],
    ['BTC', 'THREE_OF_FIVE', 'native_segwit'],
  ]
  const rows: Record<string, string | number>[] = []
  let shown = false
  for (const [chain, scheme, addressType] of plan) {
    const created = fakeCreatedWallet(chain, { scheme, addressType })
    const address = created.walletMetadata.accountAddress
    await vault.storeWallet(created)
    const sig1 = await vault.withWallet(address, (w) => fakeSign(w.externalServerKeyShares, 'hello'), { purpose: 'sign' })
    if (!shown) {
      // What a careless console.log of the hydrated state would print: the secret is redacted.
      await vault.withWallet(address, (w) => console.log('util.inspect of a hydrated share:', inspect(w.externalServerKeyShares[0], { depth: 1, breakLength: 200 })), { purpose: 'demo-inspect' })
      shown = true
    }
    // A refresh: new shares and backup info, written atomically; a reshare for 2/2 EVM → 2/3.
    const reshare = chain === 'EVM' && scheme === 'TWO_OF_TWO'
    const newScheme: ThresholdSignatureScheme = reshare ? 'TWO_OF_THREE' : scheme
    const count = { TWO_OF_TWO: 1, TWO_OF_THREE: 2, THREE_OF_FIVE: 3 }[newScheme]
    await vault.replaceShares(address, {
      externalServerKeyShares: fakeShares(chain, count, { addressType }),
      backupInfo: backupInfoWithExternal(),
      ...(reshare ? { thresholdSignatureScheme: newScheme } : {}),
    }, { actor: 'demo-refresh' })
    const sig2 = await vault.withWallet(address, (w) => fakeSign(w.externalServerKeyShares, 'hello'), { purpose: 'sign' })
    const meta = await vault.getMetadata(address)
    rows.push({
      chain: chain + (addressType ? `/${addressType}` : ''),
      address: address.length > 20 ? address.slice(0, 10) + '…' + address.slice(-6) : address,
      scheme: reshare ? `${scheme} → ${meta.thresholdSignatureScheme}` : String(meta.thresholdSignatureScheme),
      'sig before refresh': sig1,
      'sig after refresh': sig2,
      'shares changed': sig1 !== sig2 ? 'yes' : 'NO',
    })
  }
  const stored = await vault.listWallets({ limit: 1000 })
  const audit = await vault.verifyAuditChain()
  await vault.close()
  console.table(rows)
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  console.log(`${plan.length} wallets stored, hydrated, signed with, refreshed; ${stored.length} wallet(s) now in ${DB} (key in ${KEY}).`)
  console.log(`audit log: ${audit.rows} rows, hash chain ${audit.brokenAt === undefined ? 'intact' : `BROKEN at row ${audit.brokenAt}`}; ${ms.toFixed(0)} ms in all.`)
}

demo().catch((e) => {
  console.error(e instanceof Error ? `${e.name}: ${e.message}` : e)
  process.exitCode = 1
})
