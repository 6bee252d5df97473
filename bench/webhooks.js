// Delegation webhooks handled per second (README, "Delegated access"): sharevault's
// receiveDelegationWebhook against a plain node:crypto handler doing the same work, in one run,
// for RSA-2048 and RSA-4096 keys.
//   node --expose-gc bench/webhooks.js [--events 2000] [--concurrency 16] [--readme]
// Each event is a distinct `wallet.delegation.created` built as Dynamic's docs describe it (a
// generated share and API key, each AES-256-GCM under a fresh key wrapped with RSA-OAEP-SHA256,
// base64url, HMAC-SHA256 signature). Both handlers: check the signature in constant time, refuse
// a seen eventId, decrypt both secrets, validate the share, seal share + key under a fresh data
// key wrapped under a local 32-byte key, and write the record, the event and an audit row in one
// transaction (sharevault: SQLite, its group-commit writer, synchronous=FULL; the baseline:
// better-sqlite3, WAL, synchronous=NORMAL, on the JavaScript thread). The baseline holds the
// plaintexts in JS strings; sharevault never does.
const { mkdtempSync, rmSync, readFileSync, writeFileSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')
const crypto = require('node:crypto')
const Database = require('better-sqlite3')
const { arg, flag, phase } = require('./lib')
const { Vault, ALL_PERMISSIONS } = require('../dist')

const EVENTS = arg('--events', 2000)
const CONCURRENCY = arg('--concurrency', 16)
const SECRET = `whsec_${crypto.randomBytes(24).toString('hex')}`

function field(publicKey, plaintext) {
  const key = crypto.randomBytes(32)
  const iv = crypto.randomBytes(16)
  const c = crypto.createCipheriv('aes-256-gcm', key, iv)
  const ct = Buffer.concat([c.update(plaintext), c.final()])
  const ek = crypto.publicEncrypt({ key: publicKey, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, key)
  return { alg: 'HYBRID-RSA-AES-256', iv: iv.toString('base64url'), ct: ct.toString('base64url'), tag: c.getAuthTag().toString('base64url'), ek: ek.toString('base64url') }
}

function events(publicKey, n) {
  return Array.from({ length: n }, () => {
    const share = { pubkey: { pubkey: [...crypto.randomBytes(33)] }, secretShare: crypto.randomBytes(1500).toString('hex') }
    const body = {
      messageId: crypto.randomUUID(),
      eventId: crypto.randomUUID(),
      eventName: 'wallet.delegation.created',
      timestamp: new Date().toISOString(),
      userId: crypto.randomUUID(),
      environmentId: crypto.randomUUID(),
      data: {
        chain: 'EVM',
        walletId: crypto.randomUUID(),
        publicKey: `0x${crypto.randomBytes(20).toString('hex')}`,
        userId: crypto.randomUUID(),
        encryptedDelegatedShare: field(publicKey, JSON.stringify(share)),
        encryptedWalletApiKey: field(publicKey, `dyn_wak_${crypto.randomBytes(24).toString('base64url')}`),
      },
    }
    const rawBody = Buffer.from(JSON.stringify(body))
    return { rawBody, headers: { 'x-dynamic-signature-256': crypto.createHmac('sha256', SECRET).update(rawBody).digest('hex') } }
  })
}

function seal(key, aad, plaintext) {
  const iv = crypto.randomBytes(12)
  const c = crypto.createCipheriv('aes-256-gcm', key, iv)
  c.setAAD(aad)
  return Buffer.concat([iv, c.update(plaintext), c.final(), c.getAuthTag()])
}

/** The plain node:crypto + better-sqlite3 webhook handler: everything on the JavaScript thread. */
class BaselineHandler {
  constructor(path, privatePem) {
    this.key = crypto.createPrivateKey(privatePem)
    this.kek = crypto.randomBytes(32)
    this.db = new Database(path)
    this.db.pragma('journal_mode = WAL')
    this.db.pragma('synchronous = NORMAL')
    this.db.exec(`CREATE TABLE delegations (wallet_id TEXT PRIMARY KEY, info TEXT NOT NULL, wrapped_dek BLOB NOT NULL, sealed BLOB NOT NULL);
      CREATE TABLE events (event_id TEXT PRIMARY KEY, outcome TEXT NOT NULL);
      CREATE TABLE audit (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, action TEXT NOT NULL, address TEXT NOT NULL, outcome TEXT NOT NULL);`)
    const put = this.db.prepare('INSERT INTO delegations VALUES (?, ?, ?, ?) ON CONFLICT (wallet_id) DO UPDATE SET info = excluded.info, wrapped_dek = excluded.wrapped_dek, sealed = excluded.sealed')
    const ev = this.db.prepare('INSERT INTO events VALUES (?, ?)')
    const audit = this.db.prepare('INSERT INTO audit (at, action, address, outcome) VALUES (?, ?, ?, ?)')
    this.seen = this.db.prepare('SELECT outcome FROM events WHERE event_id = ?')
    this.write = this.db.transaction((w, info, wrapped, sealed, eventId) => {
      put.run(w, info, wrapped, sealed)
      ev.run(eventId, 'stored')
      audit.run(Date.now(), 'delegation_created', w, 'ok')
    })
  }

  open(f) {
    const aes = crypto.privateDecrypt({ key: this.key, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, Buffer.from(f.ek, 'base64url'))
    const d = crypto.createDecipheriv('aes-256-gcm', aes, Buffer.from(f.iv, 'base64url'))
    d.setAuthTag(Buffer.from(f.tag, 'base64url'))
    const out = Buffer.concat([d.update(Buffer.from(f.ct, 'base64url')), d.final()])
    aes.fill(0)
    return out
  }

  receive({ rawBody, headers }) {
    const mac = crypto.createHmac('sha256', SECRET).update(rawBody).digest()
    const given = Buffer.from(headers['x-dynamic-signature-256'], 'hex')
    if (given.length !== mac.length || !crypto.timingSafeEqual(given, mac)) return { status: 401 }
    const ev = JSON.parse(rawBody.toString('utf8'))
    if (this.seen.get(ev.eventId)) return { status: 200, replay: true }
    const share = JSON.parse(this.open(ev.data.encryptedDelegatedShare).toString('utf8'))
    const apiKey = this.open(ev.data.encryptedWalletApiKey).toString('utf8')
    if (typeof share.secretShare !== 'string' || !share.secretShare) return { status: 400 }
    const dek = crypto.randomBytes(32)
    const wrapped = seal(this.kek, Buffer.from(`test|${ev.data.walletId}`), dek)
    const sealed = seal(dek, Buffer.from(`test|delegation|${ev.data.walletId}|1`), Buffer.from(JSON.stringify({ keyShare: share, walletApiKey: apiKey })))
    dek.fill(0)
    this.write(ev.data.walletId, JSON.stringify({ userId: ev.data.userId, chain: ev.data.chain, address: ev.data.publicKey }), wrapped, sealed, ev.eventId)
    return { status: 200 }
  }
}

async function run(bits, dir) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: bits, privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } })
  const n = bits >= 4096 ? Math.ceil(EVENTS / 2) : EVENTS
  const rows = []
  // Two alternating rounds of each, a fresh database and fresh events per round.
  for (let round = 0; round < 2; round++) {
    const ours = events(publicKey, n)
    const vault = await Vault.open({ database: `sqlite://${join(dir, `sv-${bits}-${round}.db`)}`, environment: 'test', kms: { provider: 'local', key: crypto.randomBytes(32) }, allow: ALL_PERMISSIONS })
    await vault.importDelegationKey(privateKey)
    const sv = await phase(n, CONCURRENCY, async (i) => {
      const r = await vault.receiveDelegationWebhook({ ...ours[i], secret: SECRET })
      if (r.status !== 200) throw new Error(`sharevault answered ${r.status} ${r.code}`)
    })
    await vault.close()
    rows.push([`sharevault RSA-${bits}`, `round ${round + 1}`, sv])
    const theirs = events(publicKey, n)
    const base = new BaselineHandler(join(dir, `js-${bits}-${round}.db`), privateKey)
    const js = await phase(n, CONCURRENCY, async (i) => {
      // As a route would: the request arrives in its own turn of the event loop, so the ticker
      // sees how long each synchronous handling blocks it.
      await new Promise((r) => setImmediate(r))
      if (base.receive(theirs[i]).status !== 200) throw new Error('the baseline refused an event')
    })
    base.db.close()
    rows.push([`node:crypto RSA-${bits}`, `round ${round + 1}`, js])
  }
  return rows
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'sharevault-bench-webhooks-'))
  try {
    const rows = [...(await run(2048, dir)), ...(await run(4096, dir))]
    const f = (x) => x.toFixed(2)
    const lines = [
      `| handler | round | webhooks/s | p50 ms | p99 ms | event-loop p99 ms | event-loop max ms |`,
      '|---|---|---:|---:|---:|---:|---:|',
      ...rows.map(([h, r, x]) => `| ${h} | ${r} | ${Math.round(x.opsPerSec).toLocaleString('en-US')} | ${f(x.p50)} | ${f(x.p99)} | ${f(x.loopP99)} | ${f(x.loopMax)} |`),
    ]
    const table = lines.join('\n')
    console.log(table)
    if (flag('--readme')) {
      const readme = join(__dirname, '..', 'README.md')
      const text = readFileSync(readme, 'utf8')
      const block = `<!-- bench:webhooks -->\n${table}\n\n${EVENTS} events (RSA-4096: ${Math.ceil(EVENTS / 2)}) per round, ${CONCURRENCY} in flight, \`node --expose-gc bench/webhooks.js --readme\`, ${new Date().toISOString().slice(0, 10)}.\n<!-- /bench:webhooks -->`
      writeFileSync(readme, text.replace(/<!-- bench:webhooks -->[\s\S]*?<!-- \/bench:webhooks -->/, block))
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((e) => {
  console.error(e)
  process.exitCode = 1
})
