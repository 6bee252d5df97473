// Child process for the result-object tests: a plain Node realm, as a server has, where the
// addon builds its results. Stores a wallet, then puts setters on Object.prototype and
// Array.prototype for every field and index a result has, runs every read call, and prints what
// the setters saw (nothing, if results are built with define semantics) and what came back.
const { randomBytes } = require('node:crypto')
const { Vault } = require('../../dist')
const { fakeCreatedWallet } = require('../../dist/testing')

async function main() {
  const vault = await Vault.open({ database: ':memory:', environment: 'test', kms: { provider: 'local', key: randomBytes(32) } })
  const created = fakeCreatedWallet('SVM')
  const address = created.walletMetadata.accountAddress
  const secret = created.externalServerKeyShares[0].secretShare
  await vault.storeWallet(created)

  const seen = []
  const keys = [
    'secretShare', 'pubkey', 'metadata', 'shares', 'generation',
    'seq', 'atMs', 'environment', 'actor', 'action', 'address', 'walletId', 'purpose', 'outcome', 'hash',
    'rows', 'brokenAt', 'kmsCalls', 'generateDataKey', 'decrypt', 'errors', 'hydrations', 'cacheHits',
    '0', '1', '2',
  ]
  for (const proto of [Object.prototype, Array.prototype]) {
    for (const key of keys) {
      Object.defineProperty(proto, key, {
        configurable: true,
        get() { return undefined },
        set(v) {
          // Node's own timers code (processImmediate, which the vault's settlement turns run
          // from) assigns its async-hook bookkeeping (ids, the Immediate) into internal arrays
          // with [[Set]]: that is Node's realm being polluted, not a result being built, and none
          // of it is a vault value. Every other call is recorded, without [[Set]] (a push would
          // run this setter again).
          const caller = (new Error().stack ?? '').split('\n')[2] ?? ''
          if (caller.includes('(node:internal/')) return
          Object.defineProperty(seen, String(seen.length), {
            value: `${key}=${typeof v === 'string' ? v.slice(0, 8) : typeof v}`,
            enumerable: true,
            writable: true,
            configurable: true,
          })
        },
      })
    }
  }
  let share
  try {
    share = await vault.withWallet(address, (w) => ({ secretShare: w.externalServerKeyShares[0].secretShare, pubkey: w.externalServerKeyShares[0].pubkey instanceof Uint8Array }), { purpose: 'sign' })
    const listed = await vault.listWallets()
    const audit = await vault.auditLog()
    const chain = await vault.verifyAuditChain()
    const stats = vault.stats()
    const out = {
      seen,
      secretMatches: share.secretShare === secret,
      pubkeyIsBytes: share.pubkey,
      listed: listed.map((m) => m.accountAddress),
      audit: audit.map((r) => [r.seq, r.action, r.actor, r.purpose ?? null]),
      chain,
      hydrations: stats.hydrations,
      decrypts: stats.kmsCalls.decrypt,
    }
    for (const proto of [Object.prototype, Array.prototype]) for (const key of keys) delete proto[key]
    process.stdout.write(JSON.stringify(out) + '\n')
  } finally {
    for (const proto of [Object.prototype, Array.prototype]) for (const key of keys) delete proto[key]
    await vault.close()
  }
}

main().catch((e) => {
  process.stderr.write(`${e.code ?? ''} ${e.message}\n`)
  process.exit(1)
})
