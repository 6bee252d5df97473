import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { Vault, VaultError } from '../../lib'
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
  return Vault.open({ database: ':memory:', environment: 'test', kms: { provider: 'local', key: newKey() }, ...extra })
}

/** A vault on a real file in a fresh temporary directory. */
export async function openFile(extra: Partial<OpenOptions> = {}): Promise<{ vault: Vault; path: string; key: Buffer }> {
  const path = join(tempDir(), 'vault.db')
  const key = (extra.kms as { key: Buffer } | undefined)?.key ?? newKey()
  const vault = await Vault.open({ database: `sqlite://${path}`, environment: 'test', kms: { provider: 'local', key }, ...extra })
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
