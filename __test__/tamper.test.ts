import { readFileSync, existsSync, statSync } from 'node:fs'
import { Vault } from '../lib'
import { fakeCreatedWallet } from '../lib/testing'
import { Client } from 'pg'
import { backends, cleanup, newKey, openFile, postgresBackend, vaultError } from './support/helpers'
import { sqlInChild, tamper } from './support/sql'

afterEach(cleanup)

async function storedPair() {
  const { vault, path, key } = await openFile()
  const a = fakeCreatedWallet('EVM')
  const b = fakeCreatedWallet('EVM')
  await vault.storeWallet(a)
  await vault.storeWallet(b)
  return { vault, path, key, a, b }
}

describe('a changed record never yields plaintext', () => {
  it('fails with ERR_TAMPERED when a byte of the sealed shares is changed in the database', async () => {
    const { vault, path, a } = await storedPair()
    const addr = a.walletMetadata.accountAddress
    sqlInChild(path, `
      const row = db.prepare('SELECT ciphertext FROM wallets WHERE address_key = ?').get(args[0])
      row.ciphertext[Math.floor(row.ciphertext.length / 2)] ^= 1
      db.prepare('UPDATE wallets SET ciphertext = ? WHERE address_key = ?').run(row.ciphertext, args[0])`, addr.toLowerCase())
    const e = await vaultError(vault.withWallet(addr, () => 'should not run'))
    expect(e.code).toBe('ERR_TAMPERED')
    await vault.close()
  })

  it.each([
    ['the nonce', "UPDATE wallets SET nonce = randomblob(12) WHERE address_key = ?"],
    ['the wrapped data key', "UPDATE wallets SET wrapped_dek = randomblob(length(wrapped_dek)) WHERE address_key = ?"],
    ['the generation', "UPDATE wallets SET generation = generation + 1 WHERE address_key = ?"],
    ['the chain name', "UPDATE wallets SET chain_name = 'SVM', metadata = json_set(metadata, '$.chainName', 'SVM') WHERE address_key = ?"],
    ['the walletId in the metadata', "UPDATE wallets SET metadata = json_set(metadata, '$.walletId', 'someone-else') WHERE address_key = ?"],
    ['the ciphertext, truncated', "UPDATE wallets SET ciphertext = substr(ciphertext, 1, 10) WHERE address_key = ?"],
    ['the record format', "UPDATE wallets SET format = 2 WHERE address_key = ?"],
  ])('fails with ERR_TAMPERED when %s is changed', async (_what, sql) => {
    const { vault, path, a, b } = await storedPair()
    tamper(path, sql, a.walletMetadata.accountAddress.toLowerCase())
    const e = await vaultError(vault.withWallet(a.walletMetadata.accountAddress, () => 'should not run'))
    expect(e.code).toBe('ERR_TAMPERED')
    // The other wallet is untouched and still opens.
    const ok = await vault.withWallet(b.walletMetadata.accountAddress, (w) => w.externalServerKeyShares[0].secretShare)
    expect(ok).toBe(b.externalServerKeyShares[0].secretShare)
    await vault.close()
  })

  it('fails with ERR_TAMPERED when a sealed record is moved to another wallet', async () => {
    const { vault, path, a, b } = await storedPair()
    tamper(
      path,
      `UPDATE wallets SET (kek_provider, kek_key_id, kek_key_version, wrapped_dek, nonce, ciphertext) =
         (SELECT kek_provider, kek_key_id, kek_key_version, wrapped_dek, nonce, ciphertext FROM wallets WHERE address_key = ?)
       WHERE address_key = ?`,
      a.walletMetadata.accountAddress.toLowerCase(),
      b.walletMetadata.accountAddress.toLowerCase(),
    )
    const e = await vaultError(vault.withWallet(b.walletMetadata.accountAddress, () => 'should not run'))
    expect(e.code).toBe('ERR_TAMPERED')
    await vault.close()
  })

  it('records failed hydrations in the audit log with their code', async () => {
    const { vault, path, a } = await storedPair()
    tamper(path, "UPDATE wallets SET nonce = randomblob(12) WHERE address_key = ?", a.walletMetadata.accountAddress.toLowerCase())
    await vaultError(vault.withWallet(a.walletMetadata.accountAddress, () => 1, { purpose: 'sign' }))
    const rows = await vault.auditLog({ address: a.walletMetadata.accountAddress })
    expect(rows.at(-1)).toMatchObject({ action: 'hydrate', purpose: 'sign', outcome: 'ERR_TAMPERED' })
    await vault.close()
  })
})

describe('another environment or another key never yields plaintext', () => {
  it('shows another environment nothing of a wallet: not found, not listed, and its own wallet may use the address', async () => {
    const { vault, path, a } = await storedPair()
    await vault.close()
    // Another environment has a key of its own (one key for two environments is refused).
    const other = await Vault.open({ database: path, environment: 'staging', kms: { provider: 'local', key: newKey() } })
    const addr = a.walletMetadata.accountAddress
    expect((await vaultError(other.withWallet(addr, () => 'should not run'))).code).toBe('ERR_NOT_FOUND')
    expect((await vaultError(other.getMetadata(addr))).code).toBe('ERR_NOT_FOUND')
    expect(await other.listWallets()).toEqual([])
    await other.storeWallet(a)
    await other.close()
  })

  it('fails with ERR_TAMPERED when the environment column is rewritten to match another vault', async () => {
    const { vault, path, a } = await storedPair()
    await vault.close()
    tamper(path, "UPDATE wallets SET environment = 'staging'")
    const other = await Vault.open({ database: path, environment: 'staging', kms: { provider: 'local', key: newKey() } })
    const e = await vaultError(other.withWallet(a.walletMetadata.accountAddress, () => 'should not run'))
    expect(e.code).toBe('ERR_TAMPERED')
    await other.close()
  })

  it('refuses to open an environment with another key than the one its rows are authenticated under (ERR_KMS_DENIED)', async () => {
    const { vault, path } = await storedPair()
    await vault.close()
    const e = await vaultError(Vault.open({ database: path, environment: 'test', kms: { provider: 'local', key: newKey() } }))
    expect(e.code).toBe('ERR_KMS_DENIED')
    expect(e.message).toMatch(/open it with that key/)
  })

  it('fails with ERR_TAMPERED when a record claims another key id (its MAC is checked first)', async () => {
    const { vault, path, a } = await storedPair()
    tamper(path, "UPDATE wallets SET kek_key_id = 'local:0000000000000000' WHERE address_key = ?", a.walletMetadata.accountAddress.toLowerCase())
    const e = await vaultError(vault.withWallet(a.walletMetadata.accountAddress, () => 'should not run'))
    expect(e.code).toBe('ERR_TAMPERED')
    await vault.close()
  })
})

describe('the database file', () => {
  it('holds no plaintext share bytes, is private to its owner, and runs in WAL mode with secure_delete', async () => {
    const { vault, path } = await openFile()
    const wallets = [fakeCreatedWallet('EVM'), fakeCreatedWallet('SVM'), fakeCreatedWallet('BTC', { scheme: 'TWO_OF_THREE' })]
    for (const w of wallets) await vault.storeWallet(w)
    await vault.close()
    const files = [path, `${path}-wal`].filter(existsSync)
    const bytes = Buffer.concat(files.map((f) => readFileSync(f)))
    for (const w of wallets) {
      for (const s of w.externalServerKeyShares) {
        expect(bytes.includes(Buffer.from(s.secretShare.slice(0, 16)))).toBe(false)
        const pk = (s.pubkey as { pubkey?: Uint8Array }).pubkey ?? (s.pubkey as Uint8Array)
        expect(bytes.includes(Buffer.from(pk))).toBe(false)
      }
      // The metadata is stored in the clear, by design (it is not secret).
      expect(bytes.includes(Buffer.from(w.walletMetadata.walletId))).toBe(true)
    }
    expect(statSync(path).mode & 0o777).toBe(0o600)
    expect(sqlInChild(path, "return db.pragma('journal_mode', { simple: true })")).toBe('wal')
  })

  it('keeps no copy of a deleted wallet\'s sealed shares or wrapped data key', async () => {
    const { vault, path, a } = await storedPair()
    const row = sqlInChild<{ wrapped_dek: string; ciphertext: string }>(path, `
      const r = db.prepare('SELECT wrapped_dek, ciphertext FROM wallets WHERE address_key = ?').get(args[0])
      return { wrapped_dek: r.wrapped_dek.toString('hex'), ciphertext: r.ciphertext.toString('hex') }`, a.walletMetadata.accountAddress.toLowerCase())
    await vault.deleteWallet(a.walletMetadata.accountAddress)
    await vault.close()
    const bytes = Buffer.concat([path, `${path}-wal`].filter(existsSync).map((f) => readFileSync(f)))
    expect(bytes.includes(Buffer.from(row.wrapped_dek, 'hex'))).toBe(false)
    expect(bytes.includes(Buffer.from(row.ciphertext, 'hex').subarray(0, 32))).toBe(false)
  })

  it('keeps the audit log append-only, and detects a row changed behind its back', async () => {
    const { vault, path, a } = await storedPair()
    await vault.withWallet(a.walletMetadata.accountAddress, () => 1, { purpose: 'sign' })
    expect(() => tamper(path, "UPDATE audit SET actor = 'nobody'")).toThrow(/append-only/)
    expect(() => tamper(path, 'DELETE FROM audit')).toThrow(/append-only/)
    // The keyring's registration, two stores, the hydrate.
    expect(await vault.verifyAuditChain()).toEqual({ rows: 4 })
    sqlInChild(path, `db.exec("DROP TRIGGER audit_append_only_update; UPDATE audit SET purpose = 'innocent' WHERE seq = 4")`)
    expect(await vault.verifyAuditChain()).toMatchObject({ rows: 4, brokenAt: 4, reason: expect.stringMatching(/does not chain/) })
    await vault.close()
  })
})

// The same attacks on PostgreSQL, in its SQL dialect: the guarantees are the vault's, not the
// backend's, and must hold on both.
const onPostgres = backends().some((b) => b.name === 'postgres') ? describe : describe.skip

async function pgExec(database: string, sql: string, ...params: unknown[]): Promise<void> {
  const client = new Client({ connectionString: database })
  await client.connect()
  try {
    await client.query(sql, params)
  } finally {
    await client.end()
  }
}

onPostgres('on postgres: a changed or moved record never yields plaintext', () => {
  async function pgPair() {
    const database = await postgresBackend.database()
    const key = newKey()
    const vault = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key } })
    const a = fakeCreatedWallet('EVM')
    const b = fakeCreatedWallet('EVM')
    await vault.storeWallet(a)
    await vault.storeWallet(b)
    return { vault, database, key, a: a.walletMetadata.accountAddress.toLowerCase(), b: b.walletMetadata.accountAddress.toLowerCase(), bShare: b.externalServerKeyShares[0].secretShare }
  }

  it.each([
    ['a byte of the sealed shares', "UPDATE wallets SET ciphertext = set_byte(ciphertext, length(ciphertext) / 2, get_byte(ciphertext, length(ciphertext) / 2) # 1) WHERE address_key = $1"],
    ['the nonce', "UPDATE wallets SET nonce = gen_random_uuid()::text::bytea WHERE address_key = $1"],
    ['the wrapped data key', "UPDATE wallets SET wrapped_dek = set_byte(wrapped_dek, 20, get_byte(wrapped_dek, 20) # 1) WHERE address_key = $1"],
    ['the generation', 'UPDATE wallets SET generation = generation + 1 WHERE address_key = $1'],
    ['the walletId in the metadata', "UPDATE wallets SET metadata = jsonb_set(metadata::jsonb, '{walletId}', '\"someone-else\"')::text WHERE address_key = $1"],
    ['the record format', 'UPDATE wallets SET format = 2 WHERE address_key = $1'],
  ])('fails with ERR_TAMPERED when %s is changed', async (_what, sql) => {
    const { vault, database, a, b, bShare } = await pgPair()
    await pgExec(database, sql, a)
    expect((await vaultError(vault.withWallet(a, () => 'should not run'))).code).toBe('ERR_TAMPERED')
    expect(await vault.withWallet(b, (w) => w.externalServerKeyShares[0].secretShare)).toBe(bShare)
    await vault.close()
  })

  it('fails with ERR_TAMPERED when a sealed record is moved to another wallet', async () => {
    const { vault, database, a, b } = await pgPair()
    await pgExec(database, `UPDATE wallets SET (kek_provider, kek_key_id, kek_key_version, wrapped_dek, nonce, ciphertext) =
      (SELECT kek_provider, kek_key_id, kek_key_version, wrapped_dek, nonce, ciphertext FROM wallets WHERE address_key = $1)
      WHERE address_key = $2`, a, b)
    expect((await vaultError(vault.withWallet(b, () => 'should not run'))).code).toBe('ERR_TAMPERED')
    await vault.close()
  })

  it('keeps the audit log append-only, and detects a row changed behind its back', async () => {
    const { vault, database, a } = await pgPair()
    await vault.withWallet(a, () => 1, { purpose: 'sign' })
    await expect(pgExec(database, "UPDATE audit SET actor = 'nobody'")).rejects.toThrow(/append-only/)
    await expect(pgExec(database, 'DELETE FROM audit')).rejects.toThrow(/append-only/)
    await expect(pgExec(database, 'TRUNCATE audit')).rejects.toThrow(/append-only/)
    expect(await vault.verifyAuditChain()).toEqual({ rows: 4 })
    await pgExec(database, "ALTER TABLE audit DISABLE TRIGGER audit_append_only; UPDATE audit SET purpose = 'innocent' WHERE seq = 4")
    expect(await vault.verifyAuditChain()).toMatchObject({ rows: 4, brokenAt: 4, reason: expect.stringMatching(/does not chain/) })
    await vault.close()
  })
})
