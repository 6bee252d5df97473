import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { Vault } from '../lib'
import { fakeCreatedWallet, fakeShares, backupInfoWithExternal } from '../lib/testing'
import { backends, cleanup, newKey } from './support/helpers'

afterEach(cleanup)

const CHILD = join(__dirname, 'support', 'store-child.js')

beforeAll(() => {
  if (!existsSync(join(__dirname, '..', 'dist', 'index.js'))) {
    throw new Error('dist/ is missing: run `npm run build` (npm test does) before jest')
  }
})

interface Child {
  proc: ChildProcess
  acks: Map<string, string>
  /** Replaces started after the address's last ack: one of them may have committed unacknowledged. */
  pending: Map<string, Set<string>>
  exited: Promise<number | null>
  waitFor(n: number): Promise<void>
}

function startChild(path: string, key: string, count: number, chain: string, mode = ''): Child {
  const proc = spawn(process.execPath, [CHILD, path, key, String(count), chain, mode], { stdio: ['ignore', 'pipe', 'inherit'] })
  const acks = new Map<string, string>()
  const pending = new Map<string, Set<string>>()
  const waiters: { n: number; resolve: () => void }[] = []
  let buf = ''
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString()
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      const [tag, address, digest] = line.split(' ')
      if (tag === 'ack') {
        acks.set(address, digest)
        pending.delete(address)
      }
      if (tag === 'try') pending.set(address, (pending.get(address) ?? new Set()).add(digest))
      for (const w of waiters.filter((w) => acks.size >= w.n)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve()
      }
    }
  })
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)))
  return {
    proc,
    acks,
    pending,
    exited,
    waitFor: (n) => (acks.size >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve }))),
  }
}

/**
 * Every acknowledged write is there: each wallet holds its last acknowledged shares, or those of
 * a replace that was in flight when the process died; and never half of one (the backup info
 * names the shares it was written with).
 */
async function expectAllPresent(path: string, key: string, acks: Map<string, string>, pending = new Map<string, Set<string>>()): Promise<void> {
  const vault = await Vault.open({ database: path, environment: 'test', kms: { provider: 'local', key } })
  for (const [address, digest] of acks) {
    const [got, tag] = await vault.withWallet(address, (w) => [
      createHash('sha256').update(w.externalServerKeyShares[0].secretShare).digest('hex'),
      w.walletMetadata.externalServerKeySharesBackupInfo?.backups.external?.[0]?.externalKeyShareId,
    ])
    if (got !== digest) expect(pending.get(address)?.has(got)).toBe(true)
    if (tag !== undefined) expect(tag).toBe(got)
  }
  expect((await vault.verifyAuditChain()).brokenAt).toBeUndefined()
  await vault.close()
}

describe.each(backends())('on $name', (backend) => {
  describe('durability', () => {
    it('loses none of the stores a process acknowledged before it was killed with SIGKILL', async () => {
      const path = await backend.database()
      const key = newKey().toString('base64')
      for (let round = 0; round < 3; round++) {
        const child = startChild(path, key, 1_000_000, round % 2 ? 'SVM' : 'EVM')
        await child.waitFor(150 + round * 50)
        child.proc.kill('SIGKILL')
        await child.exited
        expect(child.acks.size).toBeGreaterThanOrEqual(150)
        await expectAllPresent(path, key, child.acks)
      }
    })

    it('loses no acknowledged replace and half-writes no wallet when killed with SIGKILL mid-replace', async () => {
      const path = await backend.database()
      const key = newKey().toString('base64')
      for (let round = 0; round < 3; round++) {
        const child = startChild(path, key, 1_000_000, 'EVM', 'replace')
        // A random moment: after 50 to 150 wallets have acknowledged writes.
        await child.waitFor(50 + Math.floor(Math.random() * 100))
        child.proc.kill('SIGKILL')
        await child.exited
        await expectAllPresent(path, key, child.acks, child.pending)
      }
    })

    it('loses no store when two processes write to one database at once', async () => {
      const path = await backend.database()
      const key = newKey().toString('base64')
      const first = await Vault.open({ database: path, environment: 'test', kms: { provider: 'local', key } })
      await first.close()
      const a = startChild(path, key, 300, 'EVM')
      const b = startChild(path, key, 300, 'SVM')
      expect(await a.exited).toBe(0)
      expect(await b.exited).toBe(0)
      expect(a.acks.size + b.acks.size).toBe(600)
      await expectAllPresent(path, key, new Map([...a.acks, ...b.acks]))
    })

    it('four processes replacing, merging and hydrating the same wallets: no torn read, no lost write, one chain', async () => {
      const database = await backend.database()
      const key = newKey().toString('base64')
      const vault = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key } })
      const wallets = Array.from({ length: 4 }, () => fakeCreatedWallet('EVM'))
      for (const w of wallets) {
        w.externalServerKeyShares = fakeShares('EVM', 1).map((s) => ({ ...s, secretShare: `r0:${s.secretShare}` }))
        w.walletMetadata.externalServerKeySharesBackupInfo = backupInfoWithExternal('r0')
        await vault.storeWallet(w)
      }
      const addresses = wallets.map((w) => w.walletMetadata.accountAddress)
      const children = [1, 2, 3, 4].map((id) =>
        spawnSync(id, database, key, addresses),
      )
      const results = await Promise.all(children)
      let replaces = 0
      let merges = 0
      let conflicts = 0
      for (const r of results) {
        expect(r.stderr).toBe('')
        expect(r.code).toBe(0)
        const [, rep, mer, , con] = r.stdout.trim().split(' ').map(Number)
        replaces += rep
        merges += mer
        conflicts += con
      }
      // A write may give up after a few seconds of lost compare-and-swaps (ERR_CONFLICT, nothing
      // written) on a busy machine; a handful at most, never most of them.
      expect(conflicts).toBeLessThanOrEqual((replaces + merges) / 10)
      // Every acknowledged write is in the log, once; and each wallet's state is what its last
      // write (in log order) left: no write was lost under another.
      const log = await vault.auditLog({ limit: 1000 })
      const all = [...log]
      while (all.length % 1000 === 0 && log.length > 0) {
        const more = await vault.auditLog({ afterSeq: all[all.length - 1].seq, limit: 1000 })
        if (more.length === 0) break
        all.push(...more)
      }
      expect(all.filter((r) => r.action === 'replace_shares' && r.outcome === 'ok')).toHaveLength(replaces)
      expect(all.filter((r) => r.action === 'merge_backup_info' && r.outcome === 'ok')).toHaveLength(merges)
      for (const address of addresses) {
        const writes = all.filter((r) => r.address === address.toLowerCase() && r.outcome === 'ok' && (r.action === 'replace_shares' || r.action === 'merge_backup_info'))
        const lastReplace = [...writes].reverse().find((r) => r.action === 'replace_shares')?.actor ?? 'r0'
        const last = writes[writes.length - 1]?.actor ?? 'r0'
        await vault.withWallet(address, ({ walletMetadata, externalServerKeyShares }) => {
          expect(walletMetadata.externalServerKeySharesBackupInfo?.backups.external[0].externalKeyShareId).toBe(last)
          expect(externalServerKeyShares[0].secretShare.split(':')[0]).toBe(lastReplace)
        })
      }
      expect((await vault.verifyAuditChain()).brokenAt).toBeUndefined()
      await vault.close()
    }, 180_000)
  })
})

function spawnSync(id: number, database: string, key: string, addresses: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [join(__dirname, 'support', 'contend-child.js'), database, key, String(id), '300', JSON.stringify(addresses)])
    let stdout = ''
    let stderr = ''
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    proc.on('exit', (code) => resolve({ code, stdout, stderr }))
  })
}
