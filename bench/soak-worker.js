// One worker of the fault soak (bench/soak.js starts, kills and restarts these). It runs a mix of
// calls through the public API on the wallets it owns, and appends every call to its history file
// before it starts (`intent`) and when it is answered (`ack` or `fail`), each answer written with
// fdatasync before the worker acts on it. A worker killed and started again reads its history
// back to know its wallets (the calls it never heard the answer to are the uncertain ones).
// Nothing secret is written: a wallet's shares are in the history only as a SHA-256 digest.
//
// Two in-process faults run here, now and then, beside the mix:
//   - a second vault handle on the same database, closed while calls on it are in flight: each
//     call completes or is refused with ERR_CLOSED, and a refused write wrote nothing;
//   - a worker thread with a vault of its own and calls in flight, terminated (`worker.terminate()`):
//     the process survives it, and what the thread had acknowledged is there (its history is a
//     file of its own, checked at the end like every worker's).
//   (started by bench/soak.js) node bench/soak-worker.js <json config>
const { openSync, writeSync, fdatasyncSync, readFileSync, existsSync } = require('node:fs')
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads')
const { Vault, ALL_PERMISSIONS } = require('../dist')
const { fakeCreatedWallet, fakeShares, backupInfoWithExternal } = require('../dist/testing')
const { applyLine, digest, mulberry32 } = require('./soak-model')
const { FakeEvmWalletClient } = require('../dist/testing')
const { vaulted } = require('../dist/dynamic')

const cfg = isMainThread ? JSON.parse(process.argv[2]) : workerData
/** To the coordinator: from the worker's main thread directly, from a thread through its parent. */
const send = (m) => (isMainThread ? process.send?.(m) : parentPort.postMessage(m))

const kms = cfg.kms.provider === 'local' ? { provider: 'local', key: Buffer.from(cfg.kms.key, 'hex') } : cfg.kms
const openVault = () => Vault.open({ database: cfg.database, environment: 'soak', kms, allow: ALL_PERMISSIONS })

// The wallets of this history, as it says (see soak-model.js).
const wallets = new Map()
if (existsSync(cfg.history)) {
  for (const line of readFileSync(cfg.history, 'utf8').split('\n')) if (line) applyLine(wallets, JSON.parse(line))
}
const fd = openSync(cfg.history, 'a')
// Every address of the history, in the order it appeared (the model never forgets a wallet: a
// deleted one stays, as deleted), for drawing a wallet without scanning them all.
const addresses = [...wallets.keys()]
const record = (entry, sync) => {
  writeSync(fd, JSON.stringify({ t: Date.now(), w: cfg.worker, ...entry }) + '\n')
  if (sync) fdatasyncSync(fd)
  const known = wallets.has(entry.a)
  applyLine(wallets, entry)
  if (!known && wallets.has(entry.a)) addresses.push(entry.a)
}

/**
 * The run's shares carry the coordinator's tag every 32 characters (`cfg.tag`, drawn per run):
 * any 40 characters of a share in a log line or an error message carry it, and are found by
 * it, with no share ever sent to the coordinator.
 */
function marked(shares) {
  for (const s of shares) s.secretShare = s.secretShare.match(/.{1,32}/g).join(cfg.tag)
  return shares
}

/**
 * The SDK's contract fake (sharevault/testing: lib/testing/fakes.ts), whose "server" side writes each share set it
 * hands out (marked, as the soak's shares are) to the history before it answers: what the SDK
 * created or refreshed is an intent the vault then owes, exactly as a store or replace is.
 */
class SoakClient extends FakeEvmWalletClient {
  adopt(a, shares, op) {
    marked(shares)
    this.wallets.get(a.toLowerCase()).secrets = new Set(shares.map((s) => s.secretShare))
    if (op === 'store') busy.add(a)
    record({ k: 'intent', op, a, d: digest(shares), ...(op === 'store' ? { sdk: true } : {}) }, true)
    sdkWallets.add(a)
  }

  async createWalletAccount(args) {
    const r = await super.createWalletAccount(args)
    this.adopt(r.walletMetadata.accountAddress, r.externalServerKeyShares, 'store')
    return r
  }

  async refreshWalletAccountShares(args) {
    const r = await super.refreshWalletAccountShares(args)
    this.adopt(args.walletMetadata.accountAddress, r.externalServerKeyShares, 'replace')
    return r
  }

  async reshare(args) {
    const r = await super.reshare(args)
    this.adopt(args.walletMetadata.accountAddress, r.externalServerKeyShares, 'replace')
    return r
  }

  /** The wallet's password as the fake's server side holds it. */
  password(a) {
    return this.wallets.get(a.toLowerCase())?.password
  }

  scheme(a) {
    return this.wallets.get(a.toLowerCase())?.scheme
  }
}

// The wallets this incarnation's fake knows (a restarted worker's fake knows none: its earlier
// SDK wallets are plain ones from then on), and those whose SDK state and vault state parted
// (a write that could not be recovered): no SDK call is made on those.
const sdkWallets = new Set()
const desynced = new Set()

const rand = mulberry32(cfg.seed)
const pick = (xs) => xs[Math.floor(rand() * xs.length)]
const busy = new Set()
const counts = {}
const errors = {}
let violations = 0
let stopping = false
let selfTested = false
// Vault handles being closed under their calls: ERR_CLOSED is their answer, not a violation.
const closing = new WeakSet()

function violation(what) {
  violations++
  send({ type: 'violation', what })
}

/** A wallet of this history that no call is using. */
function idleWallet(filter) {
  const fits = (a) => !busy.has(a) && !wallets.get(a).planted && filter(wallets.get(a), a)
  // A few random draws (the history grows for the whole run: a scan per call would be the
  // soak's own slowdown), then, rarely, a scan.
  for (let i = 0; i < 32 && addresses.length; i++) {
    const a = pick(addresses)
    if (fits(a)) return a
  }
  const ok = addresses.filter(fits)
  return ok.length ? pick(ok) : undefined
}

async function one(vault) {
  const r = rand()
  const live = (w) => w.state === 'live'
  let op = r < 0.12 ? 'store' : r < 0.62 ? 'hydrate' : r < 0.74 ? 'replace' : r < 0.8 ? 'delete' : r < 0.88 ? 'getMetadata' : r < 0.94 ? 'list' : 'auditLog'
  if (wallets.size < 5) op = 'store'
  if (cfg.rotator && rand() < 0.002) op = 'rotate'
  // A quarter of the calls go through sharevault/dynamic and the SDK's contract fake instead.
  if (sdk && vault === mainVault && rand() < 0.25) return sdkCall(vault)
  // A plain replace (one share) never goes to a wallet the SDK created: its fake would no longer
  // sign with it, and a reshare may have given it two shares.
  const address = op === 'store' || op === 'list' || op === 'rotate' ? undefined : idleWallet((w) => live(w) && !(op === 'replace' && w.sdk))
  if (op !== 'store' && op !== 'list' && op !== 'rotate' && address === undefined) return
  if (address) busy.add(address)
  counts[op] = (counts[op] ?? 0) + 1
  const answer = (a, fn, write) => answered(vault, op, a, fn, write)
  try {
    switch (op) {
      case 'store': {
        const created = fakeCreatedWallet('EVM', { secretShareLength: 300 })
        marked(created.externalServerKeyShares)
        const a = created.walletMetadata.accountAddress
        busy.add(a)
        try {
          record({ k: 'intent', op, a, d: digest(created.externalServerKeyShares) }, true)
          await answer(a, () => vault.storeWallet(created))
        } finally {
          busy.delete(a)
        }
        break
      }
      case 'hydrate': {
        const seen = await answer(address, () => vault.withWallet(address, (w) => digest(w.externalServerKeyShares), { purpose: 'sign', actor: `w${cfg.worker}` }), false)
        if (seen !== undefined) check(address, seen)
        break
      }
      case 'replace': {
        const shares = marked(fakeShares('EVM', 1, { secretShareLength: 300 }))
        record({ k: 'intent', op, a: address, d: digest(shares) }, true)
        if (cfg.selfTest && !selfTested && cfg.incarnation === 0) {
          // The checker's own test (--self-test): a replace "acknowledged" that was never made,
          // the lost write the soak exists to catch. The run must end with violations.
          selfTested = true
          // Left alone from now on, by every incarnation (the history says so): no later write or
          // delete may cover it, and the final check must find the shares are not these.
          record({ k: 'ack', op, a: address, planted: true }, true)
          break
        }
        await answer(address, () => vault.replaceShares(address, { externalServerKeyShares: shares, backupInfo: backupInfoWithExternal() }))
        break
      }
      case 'delete': {
        record({ k: 'intent', op, a: address }, true)
        const done = await answer(address, () => vault.deleteWallet(address).then(() => true))
        if (done) {
          const e = await vault.getMetadata(address).then(() => undefined, (err) => err)
          // A cut connection, or a handle closed since, answers nothing either way (the final
          // check reads it again).
          if (e?.code === 'ERR_DB_UNAVAILABLE' || (e?.code === 'ERR_CLOSED' && closing.has(vault))) break
          if (e?.code !== 'ERR_NOT_FOUND') violation(`wallet ${address} was deleted (acknowledged) and getMetadata gave ${e ? e.code : 'its metadata'}`)
        }
        break
      }
      case 'getMetadata': {
        const m = await answer(address, () => vault.getMetadata(address), false)
        if (m && m.accountAddress !== address) violation(`getMetadata(${address}) answered for ${m.accountAddress}`)
        break
      }
      case 'list':
        await answer(undefined, () => vault.listWallets({ limit: 50 }), false)
        break
      case 'auditLog':
        await answer(address, () => vault.auditLog({ address, limit: 20 }), false)
        break
      case 'rotate':
        // A re-encryption of every wallet (fresh data keys) while the other workers go on.
        await answer(undefined, () => vault.rotate({ reencrypt: true, batchSize: 100 }), false)
        break
    }
  } finally {
    if (address) busy.delete(address)
  }
}

/** Runs a call; writes, and with `write` fdatasyncs, its answer before returning it. */
async function answered(vault, op, a, fn, write = true) {
  try {
    const v = await fn()
    if (write) record({ k: 'ack', op, a }, true)
    else if (op === 'hydrate') record({ k: 'ack', op, a }, false)
    return v ?? true
  } catch (e) {
    const code = e?.code ?? e?.name ?? 'unknown'
    errors[code] = (errors[code] ?? 0) + 1
    if (leaks(e)) violation(`${op}: an ${code} error carries share bytes (its message, stack or fields)`)
    // Expected under the faults: a cut connection (PostgreSQL), a KMS out of reach, a wallet an uncertain call left
    // missing (checked below), a rotation that lost a race for the keyring, a handle closed
    // under its call. Anything else (ERR_TAMPERED, ERR_INTERNAL, ERR_STORAGE, ...) is a
    // violation. ERR_DB_UNAVAILABLE on SQLite is a busy timeout with several processes on one
    // file: an answer (counted in the report), not a lost write (the model takes it as uncertain).
    const expected = code === 'ERR_NOT_FOUND' || code === 'ERR_DB_UNAVAILABLE' || (code === 'ERR_KMS_UNAVAILABLE' && kms.provider !== 'local') || (code === 'ERR_CONFLICT' && op === 'rotate') || (code === 'ERR_CLOSED' && closing.has(vault))
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

/** Whether an error, as a caller would log it (message, stack, own fields), holds a share's bytes. */
function leaks(e) {
  let fields = ''
  try {
    fields = JSON.stringify(e, Object.getOwnPropertyNames(e ?? {}))
  } catch {
    // A field that does not serialise: the message and stack are still read.
  }
  return [String(e), e?.stack, fields].some((t) => typeof t === 'string' && t.includes(cfg.tag))
}

/** A hydrate saw `seen`: it must be the wallet's acknowledged shares, or an uncertain write's. */
function check(a, seen) {
  const w = wallets.get(a)
  if (!w) return
  if (!w.accept.includes(seen)) violation(`wallet ${a} hydrated shares that are neither its acknowledged ones nor an unanswered write's`)
  else record({ k: 'seen', a, d: seen }, false)
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// The worker's own vault, and the SDK fake wrapped over it (main thread only).
let mainVault
let sdk
let fake

/** Errors that say "not now" (a fault in progress), after which a recovery is tried again. */
const TRANSIENT = new Set(['ERR_DB_UNAVAILABLE', 'ERR_KMS_UNAVAILABLE'])

/**
 * One call through `vaulted(fake, vault)`: create a wallet, sign with it (the fake signs only
 * with its current shares: the vault must hand it exactly those), change its password (a
 * merge), refresh or reshare its shares (a replace). A write the wrapper could not make fails
 * with ERR_UNPERSISTED_SHARES and its `sealed`: that must recover it, once the fault is over.
 */
async function sdkCall(vault) {
  const r = rand()
  const kind = r < 0.15 || sdkWallets.size < 3 ? 'create' : r < 0.7 ? 'sign' : r < 0.8 ? 'password' : r < 0.93 ? 'refresh' : 'reshare'
  const a = kind === 'create' ? undefined : idleWallet((w, x) => w.state === 'live' && sdkWallets.has(x) && !desynced.has(x))
  if (kind !== 'create' && a === undefined) return
  const op = `sdk ${kind}`
  counts[op] = (counts[op] ?? 0) + 1
  if (a) busy.add(a)
  let created
  try {
    const password = a && fake.password(a)
    switch (kind) {
      case 'create': {
        const out = await sdk.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' }).catch((e) => e)
        created = out instanceof Error ? out.accountAddress : out.walletMetadata.accountAddress
        await settle(vault, 'store', created, out)
        break
      }
      case 'sign': {
        const sig = await sdk.signMessage({ accountAddress: a, message: `soak ${counts[op]}`, password }).catch((e) => e)
        if (!(sig instanceof Error)) {
          record({ k: 'ack', op: 'hydrate', a }, false)
        } else if (sig.code === undefined) {
          violation(`the SDK refused the shares the vault handed it for ${a}: ${sig.message}`)
        } else {
          await answered(vault, op, a, () => Promise.reject(sig), false)
        }
        break
      }
      case 'password': {
        const next = password ? undefined : `pw-${counts[op]}`
        const out = await sdk.updatePassword({ accountAddress: a, existingPassword: password, newPassword: next }).catch((e) => e)
        // A merge that could not be written says so with the new backup info (no share changed).
        if (out instanceof Error && out.code === undefined) violation(`updatePassword of ${a} failed in the SDK: ${out.message}`)
        else if (out instanceof Error) {
          // The SDK's new backup info may not be in the vault: the fake refuses a later backup
          // call with the old one (as it should), so the wallet gets no more SDK calls.
          desynced.add(a)
          await answered(vault, op, a, () => Promise.reject(out), false)
        }
        break
      }
      case 'refresh':
      case 'reshare': {
        const args = { accountAddress: a, password }
        if (kind === 'reshare') Object.assign(args, { oldThresholdSignatureScheme: fake.scheme(a), newThresholdSignatureScheme: fake.scheme(a) === 'TWO_OF_TWO' ? 'TWO_OF_THREE' : 'TWO_OF_TWO' })
        const out = await (kind === 'refresh' ? sdk.refreshWalletAccountShares(args) : sdk.reshare(args)).catch((e) => e)
        await settle(vault, 'replace', a, out)
        break
      }
    }
  } finally {
    if (a) busy.delete(a)
    if (created) busy.delete(created)
  }
}

/**
 * The answer to a wrapper call that writes new shares (`op` store or replace of `a`): resolved,
 * it is acknowledged; failed with ERR_UNPERSISTED_SHARES, its `sealed` is recovered (tried until
 * the fault is over, at most 30 s), and only a recovery that works acknowledges it.
 */
async function settle(vault, op, a, out) {
  if (!(out instanceof Error)) return record({ k: 'ack', op, a }, true)
  const code = out.code ?? 'sdk'
  errors[code] = (errors[code] ?? 0) + 1
  if (leaks(out)) violation(`sdk ${op}: an ${code} error carries share bytes`)
  if (code !== 'ERR_UNPERSISTED_SHARES') {
    // Refused before the SDK call (a fault during the permission check or the hydrate).
    if (!TRANSIENT.has(code) && !(code === 'ERR_CLOSED' && closing.has(vault))) violation(`sdk ${op} of ${a} failed unexpectedly: ${code} ${out.message}`)
    if (op === 'store' && a) record({ k: 'fail', op, a, code }, true)
    return
  }
  // The write may or may not have committed before its answer was lost.
  record({ k: 'fail', op, a, code }, true)
  if (!out.sealed) {
    desynced.add(a)
    return violation(`sdk ${op} of ${a}: ERR_UNPERSISTED_SHARES without a sealed state (${out.message})`)
  }
  const until = Date.now() + 30_000
  for (;;) {
    const e = await vault.recoverSealed(out.sealed).then(() => undefined, (err) => err)
    if (!e) {
      counts.recovered = (counts.recovered ?? 0) + 1
      return record({ k: 'ack', op, a }, true)
    }
    if (!TRANSIENT.has(e.code) || Date.now() > until) {
      desynced.add(a)
      return violation(`sdk ${op} of ${a}: its sealed state did not recover it: ${e.code} ${e.message}`)
    }
    await sleep(100)
  }
}

/** A second handle on the database, closed after 0 to 30 ms with four calls on it in flight. */
async function closeRace() {
  const v = await openVault().catch((e) => e)
  if (v instanceof Error) {
    if (!['ERR_DB_UNAVAILABLE', 'ERR_KMS_UNAVAILABLE'].includes(v.code)) violation(`a second handle did not open: ${v.code} ${v.message}`)
    return
  }
  const calls = Array.from({ length: 4 }, () => one(v).catch((e) => violation(`a call threw outside the API: ${e?.stack ?? e}`)))
  await sleep(rand() * 30)
  closing.add(v)
  await v.close()
  await Promise.all(calls)
  counts.closeRace = (counts.closeRace ?? 0) + 1
}

/** A worker thread with a vault of its own and calls in flight, terminated after 0.3 to 2 s. */
async function threadTerminate(n) {
  const t = new Worker(__filename, {
    workerData: { ...cfg, history: cfg.history.replace(/\.jsonl$/, `-t${cfg.incarnation}-${n}.jsonl`), seed: cfg.seed * 7919 + n, concurrency: 4, rotator: false, selfTest: false },
  })
  let ready = false
  let threadCounts = {}
  let threadErrors = {}
  t.on('message', (m) => {
    if (m.type === 'ready') ready = true
    else if (m.type === 'counts') ({ counts: threadCounts, errors: threadErrors } = m)
    else send(m)
  })
  t.on('error', (e) => violation(`a soak thread failed: ${e?.stack ?? e}`))
  const exited = new Promise((resolve) => t.once('exit', resolve))
  for (let i = 0; !ready && i < 500; i++) await sleep(10)
  await sleep(300 + rand() * 1700)
  await t.terminate()
  await exited
  for (const [k, v] of Object.entries(threadCounts)) counts[`thread ${k}`] = (counts[`thread ${k}`] ?? 0) + v
  for (const [k, v] of Object.entries(threadErrors)) errors[k] = (errors[k] ?? 0) + v
  counts.threadTerminate = (counts.threadTerminate ?? 0) + 1
}

async function main() {
  // As a supervisor restarts a service whose database is busy or KMS out of reach: a few tries.
  let vault
  for (let attempt = 1; !vault; attempt++) {
    try {
      vault = await openVault()
      mainVault = vault
    } catch (e) {
      if (!['ERR_DB_UNAVAILABLE', 'ERR_KMS_UNAVAILABLE'].includes(e?.code) || attempt === 5) throw e
      send({ type: 'open-retry' })
      await sleep(200 * attempt)
    }
  }
  if (isMainThread) {
    fake = new SoakClient()
    // A short persistence deadline, so that a fault outlasts it and the sealed path is taken.
    sdk = vaulted(fake, vault, { actor: `w${cfg.worker}-sdk`, persistDeadlineMs: 300 })
  }
  send({ type: 'ready' })
  const lanes = Array.from({ length: cfg.concurrency }, async () => {
    while (!stopping) {
      await one(vault).catch((e) => violation(`a call threw outside the API: ${e?.stack ?? e}`))
    }
  })
  if (!isMainThread) {
    // Until terminated: the counts so far, four times a second.
    setInterval(() => parentPort.postMessage({ type: 'counts', counts, errors }), 250)
    await Promise.all(lanes)
    return
  }
  // The in-process faults, one every 1 to 4 s, on a lane of their own.
  const faults = (async () => {
    for (let n = 0; !stopping; n++) {
      await sleep(1000 + rand() * 3000)
      if (stopping) break
      await (rand() < 0.5 ? closeRace() : threadTerminate(n)).catch((e) => violation(`an in-process fault failed: ${e?.stack ?? e}`))
    }
  })()
  // Once a second: memory, and the counts so far (a killed worker's last report is what counts).
  const rss = setInterval(() => send({ type: 'rss', rss: process.memoryUsage().rss, counts, errors }), 1000)
  process.on('message', (m) => {
    if (m === 'stop') stopping = true
  })
  await Promise.all([...lanes, faults])
  clearInterval(rss)
  await vault.close()
  send({ type: 'done', counts, errors, violations })
  process.disconnect?.()
}

main().catch((e) => {
  send({ type: 'violation', what: `worker ${cfg.worker}${isMainThread ? '' : ' thread'} failed: ${e?.code ?? ''} ${e?.message ?? e}` })
  if (isMainThread) process.exit(1)
})
