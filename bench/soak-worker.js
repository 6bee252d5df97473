// One worker of the fault soak (bench/soak.js starts, kills and restarts these). It runs a mix of
// calls through the public API on the wallets it owns, and appends every call to its history file
// before it starts (`intent`) and when it is answered (`ack` or `fail`), each answer written with
// fdatasync before the worker acts on it. A worker killed and started again reads its history
// back to know its wallets (the calls it never heard the answer to are the uncertain ones).
// Nothing secret is written: a wallet's shares are in the history only as a SHA-256 digest.
//   (started by bench/soak.js) node bench/soak-worker.js <json config>
const { openSync, writeSync, fdatasyncSync, readFileSync, existsSync } = require('node:fs')
const { Vault, ALL_PERMISSIONS } = require('../dist')
const { fakeCreatedWallet, fakeShares, backupInfoWithExternal } = require('../dist-demo/fixtures')
const { applyLine, digest, mulberry32 } = require('./soak-model')

const cfg = JSON.parse(process.argv[2])

// The wallets of this worker, as its history says (see soak-model.js).
const wallets = new Map()
if (existsSync(cfg.history)) {
  for (const line of readFileSync(cfg.history, 'utf8').split('\n')) if (line) applyLine(wallets, JSON.parse(line))
}
const fd = openSync(cfg.history, 'a')
const record = (entry, sync) => {
  writeSync(fd, JSON.stringify({ t: Date.now(), w: cfg.worker, ...entry }) + '\n')
  if (sync) fdatasyncSync(fd)
  applyLine(wallets, entry)
}

const rand = mulberry32(cfg.seed)
const pick = (xs) => xs[Math.floor(rand() * xs.length)]
const busy = new Set()
const counts = {}
const errors = {}
const violations = []
let stopping = false
let selfTested = false

function violation(what) {
  violations.push(what)
  process.send?.({ type: 'violation', what })
}

/** A wallet of this worker that no call of this worker is using. */
function idleWallet(filter) {
  const ok = [...wallets.entries()].filter(([a, w]) => !busy.has(a) && filter(w))
  return ok.length ? pick(ok)[0] : undefined
}

async function one(vault) {
  const r = rand()
  const live = (w) => w.state === 'live'
  let op = r < 0.12 ? 'store' : r < 0.62 ? 'hydrate' : r < 0.74 ? 'replace' : r < 0.8 ? 'delete' : r < 0.88 ? 'getMetadata' : r < 0.94 ? 'list' : 'auditLog'
  if (wallets.size < 5) op = 'store'
  if (cfg.rotator && rand() < 0.002) op = 'rotate'
  const address = op === 'store' || op === 'list' || op === 'rotate' ? undefined : idleWallet(live)
  if (op !== 'store' && op !== 'list' && op !== 'rotate' && address === undefined) return
  if (address) busy.add(address)
  counts[op] = (counts[op] ?? 0) + 1
  try {
    switch (op) {
      case 'store': {
        const created = fakeCreatedWallet('EVM', { secretShareLength: 300 })
        const a = created.walletMetadata.accountAddress
        busy.add(a)
        try {
          record({ k: 'intent', op, a, d: digest(created.externalServerKeyShares) }, true)
          await answer(op, a, () => vault.storeWallet(created))
        } finally {
          busy.delete(a)
        }
        break
      }
      case 'hydrate': {
        const seen = await answer(op, address, () => vault.withWallet(address, (w) => digest(w.externalServerKeyShares), { purpose: 'sign', actor: `w${cfg.worker}` }), false)
        if (seen !== undefined) check(address, seen)
        break
      }
      case 'replace': {
        const shares = fakeShares('EVM', 1, { secretShareLength: 300 })
        record({ k: 'intent', op, a: address, d: digest(shares) }, true)
        if (cfg.selfTest && !selfTested && cfg.incarnation === 0) {
          // The checker's own test (--self-test): a replace "acknowledged" that was never made,
          // the lost write the soak exists to catch. The run must end with violations.
          selfTested = true
          record({ k: 'ack', op, a: address }, true)
          break
        }
        await answer(op, address, () => vault.replaceShares(address, { externalServerKeyShares: shares, backupInfo: backupInfoWithExternal() }))
        break
      }
      case 'delete': {
        record({ k: 'intent', op, a: address }, true)
        const done = await answer(op, address, () => vault.deleteWallet(address).then(() => true))
        if (done) {
          const e = await vault.getMetadata(address).then(() => undefined, (err) => err)
          // A cut connection answers nothing either way (the final check reads it again).
          if (e?.code === 'ERR_DB_UNAVAILABLE') break
          if (e?.code !== 'ERR_NOT_FOUND') violation(`wallet ${address} was deleted (acknowledged) and getMetadata gave ${e ? e.code : 'its metadata'}`)
        }
        break
      }
      case 'getMetadata': {
        const m = await answer(op, address, () => vault.getMetadata(address), false)
        if (m && m.accountAddress !== address) violation(`getMetadata(${address}) answered for ${m.accountAddress}`)
        break
      }
      case 'list':
        await answer(op, undefined, () => vault.listWallets({ limit: 50 }), false)
        break
      case 'auditLog':
        await answer(op, address, () => vault.auditLog({ address, limit: 20 }), false)
        break
      case 'rotate':
        // A re-encryption of every wallet (fresh data keys) while the other workers go on.
        await answer(op, undefined, () => vault.rotate({ reencrypt: true, batchSize: 100 }), false)
        break
    }
  } finally {
    if (address) busy.delete(address)
  }
}

/** Runs a call; writes, and with `sync` fdatasyncs, its answer before returning it. */
async function answer(op, a, fn, write = true) {
  try {
    const v = await fn()
    if (write) record({ k: 'ack', op, a }, true)
    else if (op === 'hydrate') record({ k: 'ack', op, a }, false)
    return v ?? true
  } catch (e) {
    const code = e?.code ?? e?.name ?? 'unknown'
    errors[code] = (errors[code] ?? 0) + 1
    // Expected under the faults: a cut connection (PostgreSQL), a wallet an uncertain call left
    // missing (checked below), a rotation that lost a race for the keyring. Anything else
    // (ERR_TAMPERED, ERR_INTERNAL, ERR_STORAGE, ...) is a violation.
    // ERR_DB_UNAVAILABLE on SQLite is a busy timeout with several processes on one file: an
    // answer (counted in the report), not a lost write (the model takes it as uncertain).
    const expected = code === 'ERR_NOT_FOUND' || code === 'ERR_DB_UNAVAILABLE' || (code === 'ERR_CONFLICT' && op === 'rotate')
    if (!expected) violation(`${op}${a ? ` of ${a}` : ''} failed unexpectedly: ${code} ${e?.message ?? ''}`)
    if (code === 'ERR_NOT_FOUND' && a !== undefined && op !== 'store') {
      // Missing: right only for a wallet whose store or delete was never answered.
      if (!wallets.get(a)?.absentOk) violation(`wallet ${a} (stored, acknowledged, never deleted) is not found by ${op}`)
      else if (!write) record({ k: 'gone', a }, false)
    }
    if (write) record({ k: 'fail', op, a, code }, true)
    return undefined
  }
}

/** A hydrate saw `seen`: it must be the wallet's acknowledged shares, or an uncertain write's. */
function check(a, seen) {
  const w = wallets.get(a)
  if (!w) return
  if (!w.accept.includes(seen)) violation(`wallet ${a} hydrated shares that are neither its acknowledged ones nor an unanswered write's`)
  else record({ k: 'seen', a, d: seen }, false)
}

async function main() {
  // As a supervisor restarts a service whose database is busy: a few tries.
  let vault
  for (let attempt = 1; !vault; attempt++) {
    try {
      vault = await Vault.open({ database: cfg.database, environment: 'soak', kms: { provider: 'local', key: Buffer.from(cfg.key, 'hex') }, allow: ALL_PERMISSIONS })
    } catch (e) {
      if (e?.code !== 'ERR_DB_UNAVAILABLE' || attempt === 5) throw e
      process.send?.({ type: 'open-retry' })
    }
  }
  process.send?.({ type: 'ready' })
  const lanes = Array.from({ length: cfg.concurrency }, async () => {
    while (!stopping) {
      await one(vault).catch((e) => violation(`a call threw outside the API: ${e?.stack ?? e}`))
    }
  })
  // Once a second: memory, and the counts so far (a killed worker's last report is what counts).
  const rss = setInterval(() => process.send?.({ type: 'rss', rss: process.memoryUsage().rss, counts, errors }), 1000)
  process.on('message', (m) => {
    if (m === 'stop') stopping = true
  })
  await Promise.all(lanes)
  clearInterval(rss)
  await vault.close()
  process.send?.({ type: 'done', counts, errors, violations: violations.length })
  process.disconnect?.()
}

main().catch((e) => {
  process.send?.({ type: 'violation', what: `worker ${cfg.worker} failed: ${e?.code ?? ''} ${e?.message ?? e}` })
  process.exit(1)
})
