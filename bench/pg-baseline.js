// The plain-JavaScript PostgreSQL baseline: the same envelope as bench/baseline.js (per-wallet
// AES-256-GCM data key wrapped under a 32-byte key, AAD bound to the wallet) with node:crypto and
// the `pg` package, a pool of 16 connections (what the outside check uses); a store writes wallet and
// audit row in one transaction, a hydrate reads, decrypts, and appends its audit row. Async, so it
// runs with the same number of calls in flight as sharevault.
const { Pool } = require('pg')
const { randomBytes } = require('node:crypto')
// The same envelope functions as the SQLite baseline.
const { seal, open, recordAad } = require('./baseline')

class PgBaselineVault {
  constructor(url, kek) {
    this.kek = kek
    this.pool = new Pool({ connectionString: url, max: 16 })
    // An idle client's connection ended by the server (the throwaway database is dropped with
    // FORCE at the end) is not the benchmark's failure; any query's error still is.
    this.pool.on('error', () => undefined)
  }

  async init() {
    await this.pool.query(`CREATE TABLE IF NOT EXISTS wallets (address_key text PRIMARY KEY, wallet_id text NOT NULL, metadata text NOT NULL, generation bigint NOT NULL, wrapped_dek bytea NOT NULL, sealed bytea NOT NULL);
      CREATE TABLE IF NOT EXISTS audit (seq bigserial PRIMARY KEY, at bigint NOT NULL, actor text NOT NULL, action text NOT NULL, address text NOT NULL, purpose text, outcome text NOT NULL)`)
    return this
  }

  async storeWallet(created) {
    const m = created.walletMetadata
    const key = m.accountAddress.toLowerCase()
    const dek = randomBytes(32)
    const wrapped = seal(this.kek, Buffer.from(`test|${m.walletId}`), dek)
    const sealed = seal(dek, recordAad(m.walletId, key, 1), Buffer.from(JSON.stringify(created.externalServerKeyShares)))
    dek.fill(0)
    const client = await this.pool.connect()
    try {
      await client.query('BEGIN')
      await client.query('INSERT INTO wallets VALUES ($1, $2, $3, 1, $4, $5)', [key, m.walletId, JSON.stringify(m), wrapped, sealed])
      await client.query('INSERT INTO audit (at, actor, action, address, purpose, outcome) VALUES ($1, $2, $3, $4, $5, $6)', [Date.now(), 'bench', 'store', m.accountAddress, null, 'ok'])
      await client.query('COMMIT')
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined)
      throw e
    } finally {
      client.release()
    }
    return m
  }

  async withWallet(address, fn, purpose) {
    const key = address.toLowerCase()
    const { rows } = await this.pool.query('SELECT wallet_id, metadata, generation, wrapped_dek, sealed FROM wallets WHERE address_key = $1', [key])
    const row = rows[0]
    const dek = open(this.kek, Buffer.from(`test|${row.wallet_id}`), row.wrapped_dek)
    const plain = open(dek, recordAad(row.wallet_id, key, row.generation), row.sealed)
    dek.fill(0)
    const shares = JSON.parse(plain.toString('utf8'))
    plain.fill(0)
    await this.pool.query('INSERT INTO audit (at, actor, action, address, purpose, outcome) VALUES ($1, $2, $3, $4, $5, $6)', [Date.now(), 'bench', 'hydrate', address, purpose, 'ok'])
    return fn({ walletMetadata: JSON.parse(row.metadata), externalServerKeyShares: shares })
  }

  async getMetadata(address) {
    const { rows } = await this.pool.query('SELECT metadata FROM wallets WHERE address_key = $1', [address.toLowerCase()])
    return JSON.parse(rows[0].metadata)
  }

  close() {
    return this.pool.end()
  }
}

module.exports = { PgBaselineVault }
