import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createDecipheriv } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fakeCreatedWallet, fakeShares, backupInfoWithExternal } from '../lib/testing'
import { cleanup, newKey, openFile, tempDir } from './support/helpers'
import { countInMemory } from './support/memscan'
import { sqlInChild } from './support/sql'

afterEach(cleanup)

interface StoredRecord {
  wrapped: Buffer
  ciphertext: Buffer
}

function record(path: string, addressKey: string): StoredRecord {
  const r = sqlInChild<{ w: string; c: string }>(
    path,
    'return db.prepare("SELECT hex(wrapped_dek) AS w, hex(ciphertext) AS c FROM wallets WHERE address_key = ?").get(args[0])',
    addressKey,
  )
  return { wrapped: Buffer.from(r.w, 'hex'), ciphertext: Buffer.from(r.c, 'hex') }
}

/** Which of the database's files hold any of `needles`. */
function filesHolding(path: string, needles: Buffer[]): string[] {
  return [path, `${path}-wal`, `${path}-shm`].filter((f) => {
    if (!existsSync(f)) return false
    const bytes = readFileSync(f)
    return needles.some((n) => bytes.includes(n))
  })
}

/** The wrapped key, and three 48-byte slices of the sealed shares (start, middle, end). */
function needles(r: StoredRecord): Buffer[] {
  const c = r.ciphertext
  const mid = Math.floor(c.length / 2)
  return [r.wrapped, c.subarray(0, 48), c.subarray(mid, mid + 48), c.subarray(c.length - 48)]
}

describe('crypto-shredding on disk', () => {
  it('leaves no byte of a deleted wallet\'s wrapped key or sealed shares in any database file once deleteWallet resolves', async () => {
    const { vault, path } = await openFile()
    const gone = fakeCreatedWallet('EVM')
    const kept = fakeCreatedWallet('EVM')
    await vault.storeWallet(gone)
    await vault.storeWallet(kept)
    const rec = record(path, gone.walletMetadata.accountAddress.toLowerCase())
    // The search works: before the delete, the record is on disk.
    expect(filesHolding(path, needles(rec)).length).toBeGreaterThan(0)
    await vault.deleteWallet(gone.walletMetadata.accountAddress)
    expect(filesHolding(path, needles(rec))).toEqual([])
    // The other wallet is untouched.
    await vault.withWallet(kept.walletMetadata.accountAddress, ({ externalServerKeyShares }) => {
      expect(externalServerKeyShares[0].secretShare).toBe(kept.externalServerKeyShares[0].secretShare)
    })
    await vault.close()
  })

  it('waits out another process\'s open read transaction, so no byte is left once deleteWallet resolves', async () => {
    const { vault, path } = await openFile()
    const gone = fakeCreatedWallet('EVM')
    await vault.storeWallet(gone)
    const rec = record(path, gone.walletMetadata.accountAddress.toLowerCase())
    // A reader in another process (a backup, say) holds a snapshot that still sees the record
    // for 1.5 s: the WAL cannot be emptied before it lets go.
    const reader = spawn(process.execPath, ['-e', `
      const db = new (require('better-sqlite3'))(process.argv[1])
      db.prepare('BEGIN').run(); db.prepare('SELECT count(*) FROM wallets').get()
      process.stdout.write('holding\\n')
      setTimeout(() => { db.prepare('COMMIT').run(); db.close() }, 1500)`, path], { cwd: join(__dirname, 'support') })
    const exited = new Promise((resolve) => reader.once('exit', resolve))
    await new Promise((resolve) => reader.stdout.once('data', resolve))
    await vault.deleteWallet(gone.walletMetadata.accountAddress)
    expect(filesHolding(path, needles(rec))).toEqual([])
    await exited
    await vault.close()
  })

  it('leaves no byte of a replaced generation in any database file once replaceShares resolves', async () => {
    const { vault, path } = await openFile()
    const created = fakeCreatedWallet('SVM')
    await vault.storeWallet(created)
    const address = created.walletMetadata.accountAddress
    const old = record(path, address)
    expect(filesHolding(path, needles(old)).length).toBeGreaterThan(0)
    await vault.replaceShares(address, { externalServerKeyShares: fakeShares('SVM', 1), backupInfo: backupInfoWithExternal() })
    expect(filesHolding(path, needles(old))).toEqual([])
    // The new generation is what is on disk now.
    expect(filesHolding(path, needles(record(path, address))).length).toBeGreaterThan(0)
    await vault.close()
  })
})

/** The data key of a wallet, unwrapped from the database with the local key (as the vault does). */
function dataKey(path: string, address: string, kek: Buffer): Buffer {
  const r = sqlInChild<{ w: string; id: string }>(
    path,
    'return db.prepare("SELECT hex(wrapped_dek) AS w, wallet_id AS id FROM wallets WHERE address_key = ?").get(args[0])',
    address.toLowerCase(),
  )
  const wrapped = Buffer.from(r.w, 'hex')
  const part = (s: Buffer) => {
    const len = Buffer.alloc(4)
    len.writeUInt32BE(s.length)
    return Buffer.concat([len, s])
  }
  const aad = Buffer.concat([Buffer.from('sharevault/dek-context/v1'), Buffer.from('test'), Buffer.from(r.id)].map(part))
  const d = createDecipheriv('aes-256-gcm', kek, wrapped.subarray(0, 12))
  d.setAAD(aad)
  d.setAuthTag(wrapped.subarray(wrapped.length - 16))
  return Buffer.concat([d.update(wrapped.subarray(12, wrapped.length - 16)), d.final()])
}

class KeyChild {
  readonly proc: ChildProcessWithoutNullStreams
  private readonly lines: AsyncIterator<string>

  constructor(path: string, kek: Buffer, cache: object | null) {
    const script = join(__dirname, 'support', 'key-child.js')
    this.proc = spawn(process.execPath, [script, path, kek.toString('base64'), JSON.stringify(cache)])
    this.lines = createInterface({ input: this.proc.stdout })[Symbol.asyncIterator]()
  }

  async next(): Promise<string> {
    const r = await this.lines.next()
    if (r.done) throw new Error('the child exited early')
    return r.value
  }

  send(line: string): void {
    this.proc.stdin.write(`${line}\n`)
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('data keys in memory', () => {
  it('are gone from the process within maxAgeMs of their last use, though nobody asks for them again', async () => {
    const path = join(tempDir(), 'vault.db')
    const kek = newKey()
    // Long enough that the first scan sees the key even on a busy machine; expiry is by the clock
    // (a sweep every maxAgeMs / 4), so 1.5 × maxAgeMs later it must be gone.
    const child = new KeyChild(path, kek, { maxAgeMs: 2000 })
    try {
      const address = (await child.next()).split(' ')[1]
      const key = dataKey(path, address, kek)
      // The scan works: the cached key is in the child's memory right after the hydrate.
      expect(countInMemory(child.proc.pid!, key)).toBeGreaterThan(0)
      await sleep(3000)
      expect(countInMemory(child.proc.pid!, key)).toBe(0)
    } finally {
      child.proc.kill('SIGKILL')
    }
  })

  it('are gone from the process when the vault is closed', async () => {
    const path = join(tempDir(), 'vault.db')
    const kek = newKey()
    const child = new KeyChild(path, kek, null)
    try {
      const address = (await child.next()).split(' ')[1]
      const key = dataKey(path, address, kek)
      expect(countInMemory(child.proc.pid!, key)).toBeGreaterThan(0)
      expect(countInMemory(child.proc.pid!, kek)).toBeGreaterThan(0)
      child.send('close')
      expect(await child.next()).toBe('closed')
      // The data key, and the local key-encryption key, are gone once close() resolves.
      expect({ dataKey: countInMemory(child.proc.pid!, key), kek: countInMemory(child.proc.pid!, kek) }).toEqual({ dataKey: 0, kek: 0 })
    } finally {
      child.proc.kill('SIGKILL')
    }
  })
})
