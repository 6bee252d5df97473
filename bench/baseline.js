// The plain-JavaScript baseline: the same envelope (per-wallet AES-256-GCM data key, wrapped under
// a 32-byte key with AES-256-GCM, AAD bound to the wallet) with node:crypto and better-sqlite3,
// WAL and `synchronous=NORMAL` (what the outside check's baseline uses: in WAL mode a commit does
// not wait for an fsync, so a power cut can lose the last ones; sharevault keeps FULL, and pays an
// fsync per group commit), audit row in the store's transaction and one per hydrate.
// Synchronous: every call blocks the event loop for its whole duration.
const Database = require('better-sqlite3')
const { createCipheriv, createDecipheriv, randomBytes } = require('node:crypto')

function seal(key, aad, plaintext) {
  const iv = randomBytes(12)
  const c = createCipheriv('aes-256-gcm', key, iv)
  c.setAAD(aad)
  const ct = Buffer.concat([c.update(plaintext), c.final()])
  return Buffer.concat([iv, ct, c.getAuthTag()])
}

function open(key, aad, sealed) {
  const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12))
  d.setAAD(aad)
  d.setAuthTag(sealed.subarray(sealed.length - 16))
  return Buffer.concat([d.update(sealed.subarray(12, sealed.length - 16)), d.final()])
}

/** The AAD both baselines bind a sealed record to. */
function recordAad(walletId, key, gen) {
  return Buffer.from(`sharevault-baseline|test|${walletId}|${key}|${gen}`)
}

class BaselineVault {
  constructor(path, kek, { auditHydrate = true } = {}) {
    this.kek = kek
    this.auditHydrate = auditHydrate
    this.db = new Database(path)
    this.db.pragma('journal_mode = WAL')
    this.db.pragma('synchronous = NORMAL')
    this.db.pragma('secure_delete = ON')
    this.db.exec(`CREATE TABLE IF NOT EXISTS wallets (address_key TEXT PRIMARY KEY, wallet_id TEXT NOT NULL, metadata TEXT NOT NULL, generation INTEGER NOT NULL, wrapped_dek BLOB NOT NULL, sealed BLOB NOT NULL);
      CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, address TEXT NOT NULL, purpose TEXT, outcome TEXT NOT NULL);`)
    this.insertWallet = this.db.prepare('INSERT INTO wallets VALUES (?, ?, ?, 1, ?, ?)')
    this.insertAudit = this.db.prepare('INSERT INTO audit (at, actor, action, address, purpose, outcome) VALUES (?, ?, ?, ?, ?, ?)')
    this.selectMetadata = this.db.prepare('SELECT metadata FROM wallets WHERE address_key = ?')
    this.select = this.db.prepare('SELECT wallet_id, metadata, generation, wrapped_dek, sealed FROM wallets WHERE address_key = ?')
    this.storeTx = this.db.transaction((key, walletId, meta, wrapped, sealed, address) => {
      this.insertWallet.run(key, walletId, meta, wrapped, sealed)
      this.insertAudit.run(Date.now(), 'bench', 'store', address, null, 'ok')
    })
  }

  storeWallet(created) {
    const m = created.walletMetadata
    const key = m.accountAddress.toLowerCase()
    const dek = randomBytes(32)
    const wrapped = seal(this.kek, Buffer.from(`test|${m.walletId}`), dek)
    const sealed = seal(dek, recordAad(m.walletId, key, 1), Buffer.from(JSON.stringify(created.externalServerKeyShares)))
    dek.fill(0)
    this.storeTx(key, m.walletId, JSON.stringify(m), wrapped, sealed, m.accountAddress)
    return m
  }

  withWallet(address, fn, purpose) {
    const key = address.toLowerCase()
    const row = this.select.get(key)
    const dek = open(this.kek, Buffer.from(`test|${row.wallet_id}`), row.wrapped_dek)
    const plain = open(dek, recordAad(row.wallet_id, key, row.generation), row.sealed)
    dek.fill(0)
    const shares = JSON.parse(plain.toString('utf8'))
    plain.fill(0)
    if (this.auditHydrate) this.insertAudit.run(Date.now(), 'bench', 'hydrate', address, purpose, 'ok')
    return fn({ walletMetadata: JSON.parse(row.metadata), externalServerKeyShares: shares })
  }

  getMetadata(address) {
    return JSON.parse(this.selectMetadata.get(address.toLowerCase()).metadata)
  }

  close() {
    this.db.close()
  }
}

module.exports = { BaselineVault, seal, open, recordAad }
