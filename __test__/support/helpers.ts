import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { Client } from 'pg'
import { ALL_PERMISSIONS, Vault, VaultError } from '../../lib'
import type { OpenOptions } from '../../lib'

export const tempDirs: string[] = []

export function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'sharevault-test-'))
  tempDirs.push(d)
  return d
}

export function cleanup(): void {
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true })
}

export function newKey(): Buffer {
  return randomBytes(32)
}

export async function openMemory(extra: Partial<OpenOptions> = {}): Promise<Vault> {
  return Vault.open({ database: ':memory:', environment: 'test', kms: { provider: 'local', key: newKey() }, allow: ALL_PERMISSIONS, ...extra })
}

/** A vault on a real file in a fresh temporary directory. */
export async function openFile(extra: Partial<OpenOptions> = {}): Promise<{ vault: Vault; path: string; key: Buffer }> {
  const path = join(tempDir(), 'vault.db')
  const key = (extra.kms as { key: Buffer } | undefined)?.key ?? newKey()
  const vault = await Vault.open({ database: `sqlite://${path}`, environment: 'test', kms: { provider: 'local', key }, allow: ALL_PERMISSIONS, ...extra })
  return { vault, path, key }
}

/** Resolves to the VaultError a promise rejects with (fails the test if it resolves). */
export async function vaultError(p: Promise<unknown>): Promise<VaultError> {
  try {
    await p
  } catch (e) {
    if (e instanceof VaultError) return e
    throw new Error(`expected a VaultError, got ${String(e)}`)
  }
  throw new Error('expected a VaultError, but the call succeeded')
}

/**
 * A storage backend the storage suites run on: each `database()` is a fresh, empty database
 * (a SQLite file in a temporary directory, or a throwaway PostgreSQL database dropped at the end
 * of the run). Suites iterate `backends()`: PostgreSQL is in it when a server is reachable (see
 * `pg-setup.js`; under CI=true it must be).
 */
export interface Backend {
  name: 'sqlite' | 'postgres'
  database(): Promise<string>
}

let pgCount = 0

export const sqliteBackend: Backend = {
  name: 'sqlite',
  database: async () => `sqlite://${join(tempDir(), 'vault.db')}`,
}

export const postgresBackend: Backend = {
  name: 'postgres',
  async database() {
    const admin = process.env.SHAREVAULT_PG_ADMIN_URL as string
    // The teardown drops every database named after this jest run.
    const name = `sharevault_jest_${process.env.SHAREVAULT_PG_RUN}_${process.pid}_${++pgCount}_${randomBytes(4).toString('hex')}`
    const client = new Client({ connectionString: admin })
    await client.connect()
    try {
      await client.query(`CREATE DATABASE ${name}`)
    } finally {
      await client.end()
    }
    const u = new URL(admin)
    u.pathname = `/${name}`
    return u.toString()
  },
}

export function backends(): Backend[] {
  return process.env.SHAREVAULT_PG === '1' ? [sqliteBackend, postgresBackend] : [sqliteBackend]
}

/** A vault with a local key on a fresh database of `backend`. */
export async function openOn(backend: Backend, extra: Partial<OpenOptions> = {}): Promise<Vault> {
  return Vault.open({ database: await backend.database(), environment: 'test', kms: { provider: 'local', key: newKey() }, allow: ALL_PERMISSIONS, ...extra })
}

/** How many wallets a database holds, read by another connection than the vault's. */
export async function countWallets(database: string): Promise<number> {
  if (database.startsWith('postgres')) {
    const client = new Client({ connectionString: database })
    await client.connect()
    try {
      return Number((await client.query('SELECT count(*) AS n FROM wallets')).rows[0].n)
    } finally {
      await client.end()
    }
  }
  const { sqlInChild } = await import('./sql')
  return sqlInChild<number>(database.replace(/^sqlite:\/\//, ''), "return db.prepare('SELECT count(*) AS n FROM wallets').get().n")
}

/**
 * The audit rows of wallets and of the log itself, without the keyring's (every environment's log
 * starts with the registration of its key, at the key's own address `sharevault:key:…`).
 */
export function withoutKeyring<T extends { address: string }>(rows: T[]): T[] {
  return rows.filter((r) => !r.address.startsWith('sharevault:'))
}
