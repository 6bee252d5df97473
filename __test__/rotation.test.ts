import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { ALL_PERMISSIONS, DEFAULT_PERMISSIONS, Vault, type RotateProgress } from '../lib'
import { fakeCreatedWallet } from '../lib/testing'
import { backends, cleanup, newKey, vaultError } from './support/helpers'

afterEach(cleanup)
jest.setTimeout(240_000)

const CHILD = join(__dirname, 'support', 'rotate-child.js')

interface Run {
  lines: string[]
  exited: Promise<number | null>
  kill(): void
  /** Resolves once a line starting with `prefix` satisfies `when`. */
  waitFor(prefix: string, when?: (rest: string) => boolean): Promise<string>
}

function run(args: string[]): Run {
  const proc = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines: string[] = []
  const waiters: { prefix: string; when: (r: string) => boolean; resolve: (r: string) => void }[] = []
  let buf = ''
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString()
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      lines.push(line)
      for (const w of [...waiters]) {
        if (line.startsWith(w.prefix + ' ') || line === w.prefix) {
          const rest = line.slice(w.prefix.length + 1)
          if (w.when(rest)) {
            waiters.splice(waiters.indexOf(w), 1)
            w.resolve(rest)
          }
        }
      }
    }
  })
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  return {
    lines,
    exited,
    kill: () => proc.kill('SIGKILL'),
    waitFor: (prefix, when = () => true) => new Promise((resolve) => waiters.push({ prefix, when, resolve })),
  }
}

/** Stores `n` wallets under key A in a child process; returns address → digest of its share. */
async function storeInChild(database: string, keyA: string, n: number): Promise<Map<string, string>> {
  const r = run([database, keyA, '', 'store', String(n)])
  expect(await r.exited).toBe(0)
  return new Map(r.lines.filter((l) => l.startsWith('stored ')).map((l) => l.split(' ').slice(1) as [string, string]))
}

async function everyWalletHydrates(vault: Vault, wallets: Map<string, string>): Promise<void> {
  for (const [address, digest] of wallets) {
    const got = await vault.withWallet(address, ({ externalServerKeyShares }) =>
      createHash('sha256').update(externalServerKeyShares[0].secretShare).digest('hex'),
    )
    expect(got).toBe(digest)
  }
}

describe.each(backends())('key rotation on $name', (backend) => {
  test('rotate() moves every wallet to the new key, reports progress and per-key counts, and a rerun does nothing', async () => {
    const database = await backend.database()
    const [a, b] = [newKey(), newKey()]
    const old = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key: a } })
    const wallets = new Map<string, string>()
    for (let i = 0; i < 25; i++) {
      const w = fakeCreatedWallet('EVM', { secretShareLength: 100 })
      await old.storeWallet(w)
      wallets.set(w.walletMetadata.accountAddress, createHash('sha256').update(w.externalServerKeyShares[0].secretShare).digest('hex'))
    }
    await old.close()
    const vault = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key: b, previous: [{ provider: 'local', key: a }] }, allow: ALL_PERMISSIONS })
    const status = await vault.keyStatus()
    expect(status.keys.map((k) => [k.state, k.records])).toEqual([['decrypt-only', 25], ['primary', 0]])
    expect(status.behind).toBe(25)
    expect(status.keys[0].newestWrap).toBeInstanceOf(Date)
    expect(status.keys[0].integrityKey).toBe(false)
    expect(status.keys[1].integrityKey).toBe(true)
    const progress: RotateProgress[] = []
    const report = await vault.rotate({ batchSize: 10, concurrency: 4, onProgress: (p) => progress.push(p) })
    expect(report).toMatchObject({ reencrypt: false, total: 25, done: 25, failed: 0, remaining: 0 })
    expect(report.before.map((k) => [k.state, k.records])).toEqual([['decrypt-only', 25], ['primary', 0]])
    expect(report.after.map((k) => [k.state, k.records])).toEqual([['decrypt-only', 0], ['primary', 25]])
    expect(progress.at(-1)).toEqual({ done: 25, total: 25, failed: 0 })
    expect(progress.map((p) => p.done)).toEqual([...progress.map((p) => p.done)].sort((x, y) => x - y))
    expect((await vault.rotate()).done).toBe(0)
    await everyWalletHydrates(vault, wallets)
    // The old key retired; only the new one opens the vault from now on.
    await vault.retireKey({ provider: report.before[0].provider, keyId: report.before[0].keyId })
    expect((await vault.keyStatus()).keys[0].state).toBe('retired')
    await vault.close()
    const only = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key: b } })
    await everyWalletHydrates(only, wallets)
    await only.close()
    expect((await vaultError(Vault.open({ database, environment: 'test', kms: { provider: 'local', key: a } }))).code).toBe('ERR_KMS_DENIED')
  })

  test('an aborted rotation leaves every wallet readable, and the next run finishes the rest', async () => {
    const database = await backend.database()
    const [a, b] = [newKey(), newKey()]
    const wallets = await storeInChild(database, a.toString('base64'), 300)
    const vault = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key: b, previous: [{ provider: 'local', key: a }] }, allow: ALL_PERMISSIONS })
    const ac = new AbortController()
    const first = vault.rotate({ batchSize: 20, signal: ac.signal, onProgress: (p) => p.done >= 100 && ac.abort(new Error('deploy window over')) })
    const e = await first.catch((x: Error) => x)
    expect(e).toBeInstanceOf(Error)
    expect((e as Error).name).toBe('AbortError')
    const mid = await vault.keyStatus()
    expect(mid.behind).toBeGreaterThan(0)
    expect(mid.behind).toBeLessThanOrEqual(200)
    await everyWalletHydrates(vault, wallets)
    const rest = await vault.rotate({ batchSize: 50 })
    expect(rest.done).toBe(mid.behind)
    expect(rest.remaining).toBe(0)
    await vault.close()
  })

  test('a process killed in the middle of rotating 5,000 wallets loses nothing, and a rerun completes it', async () => {
    const database = await backend.database()
    const [a, b] = [newKey().toString('base64'), newKey().toString('base64')]
    const wallets = await storeInChild(database, a, 5000)
    expect(wallets.size).toBe(5000)
    const killed = run([database, a, b, 'rotate', '', '100'])
    await killed.waitFor('progress', (done) => Number(done) >= 1500)
    killed.kill()
    await killed.exited
    // Rerun in another process: it finishes the rest, doing nothing twice.
    const rerun = run([database, a, b, 'rotate', '', '200'])
    expect(await rerun.exited).toBe(0)
    const report = JSON.parse(rerun.lines.find((l) => l.startsWith('report '))!.slice(7))
    expect(report.failed).toBe(0)
    expect(report.remaining).toBe(0)
    expect(report.done).toBeGreaterThan(0)
    expect(report.done).toBeLessThanOrEqual(3500)
    expect(report.done).toBe(report.total)
    // Local to local: one unwrap and one wrap per row moved by this run, nothing more.
    expect(report.kmsCalls.encrypt).toBe(report.done)
    const vault = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key: b } })
    await everyWalletHydrates(vault, wallets)
    const status = await vault.keyStatus()
    expect(status.keys.find((k) => k.state === 'primary')!.records).toBe(5000)
    await vault.close()
  })
})

describe('several rotators', () => {
  const pg = backends().find((x) => x.name === 'postgres')
  const maybe = pg ? test : test.skip
  maybe('four processes rotating one PostgreSQL database at once do every wallet exactly once', async () => {
    const database = await pg!.database()
    const [a, b] = [newKey().toString('base64'), newKey().toString('base64')]
    const wallets = await storeInChild(database, a, 2000)
    const runs = Array.from({ length: 4 }, () => run([database, a, b, 'rotate', '', '50']))
    const codes = await Promise.all(runs.map((r) => r.exited))
    expect(codes).toEqual([0, 0, 0, 0])
    const reports = runs.map((r) => JSON.parse(r.lines.find((l) => l.startsWith('report '))!.slice(7)))
    const done = reports.reduce((n, r) => n + r.done, 0)
    expect(reports.every((r) => r.failed === 0 && r.remaining === 0)).toBe(true)
    expect(done).toBe(2000)
    expect(reports.filter((r) => r.done > 0).length).toBeGreaterThan(1)
    const vault = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key: b }, allow: ALL_PERMISSIONS })
    await everyWalletHydrates(vault, wallets)
    expect((await vault.verifyAuditChain()).brokenAt).toBeUndefined()
    // No double work: exactly one audited re-wrap per wallet across the four processes.
    const rewraps = new Map<string, number>()
    for (let afterSeq = 0; ; ) {
      const page = await vault.auditLog({ afterSeq, limit: 1000 })
      if (page.length === 0) break
      for (const r of page) if (r.action === 'rewrap') rewraps.set(r.address, (rewraps.get(r.address) ?? 0) + 1)
      afterSeq = page[page.length - 1].seq
    }
    expect(rewraps.size).toBe(2000)
    expect([...rewraps.values()].every((n) => n === 1)).toBe(true)
    await vault.close()
  })
})

describe('key options and permissions', () => {
  test('rotation and retirement need keys:admin; a default handle is refused before any key is touched', async () => {
    const database = `sqlite://${join(require('./support/helpers').tempDir(), 'v.db')}`
    const vault = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key: newKey() }, allow: DEFAULT_PERMISSIONS })
    expect((await vaultError(vault.rotate())).code).toBe('ERR_FORBIDDEN')
    expect((await vaultError(vault.retireKey({ provider: 'local', keyId: 'x' }))).code).toBe('ERR_FORBIDDEN')
    expect((await vault.keyStatus()).keys).toHaveLength(1)
    await vault.close()
  })

  test('bad key options are refused with their path, and nothing is stored', async () => {
    const database = `sqlite://${join(require('./support/helpers').tempDir(), 'v.db')}`
    const key = newKey()
    const cases: [unknown, string][] = [
      [{ provider: 'local', key, previous: 'x' }, 'kms.previous'],
      [{ provider: 'local', key, previous: [{ provider: 'gcp' }] }, 'kms.previous[0].provider'],
      [{ provider: 'local', key, previous: [{ provider: 'local', key: 'short' }] }, 'kms.previous[0].key'],
      [{ provider: 'local', key, previous: [{ provider: 'local', key }] }, 'kms.previous[0]'],
      [{ provider: 'local', key, previous: [{ provider: 'local', key: newKey(), previous: [] }] }, 'kms.previous[0].previous'],
      [{ provider: 'aws', keyId: 'alias/x', region: 'us-east-1', allowInProduction: true }, 'kms.allowInProduction'],
    ]
    for (const [kms, path] of cases) {
      const e = await vaultError(Vault.open({ database, environment: 'test', kms: kms as never }))
      expect([e.code, e.path]).toEqual(['ERR_INVALID_INPUT', path])
    }
    const e = await vaultError(Vault.open({ database, environment: 'production', kms: { provider: 'local', key } }))
    expect([e.code, e.path]).toEqual(['ERR_INVALID_INPUT', 'kms.allowInProduction'])
    const ok = await Vault.open({ database, environment: 'production', kms: { provider: 'local', key, allowInProduction: true } })
    await ok.close()
    const vault = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key: newKey() }, allow: ALL_PERMISSIONS })
    expect((await vaultError(vault.rotate({ batchSize: 0 }))).path).toBe('batchSize')
    expect((await vaultError(vault.rotate({ concurrency: 65 }))).path).toBe('concurrency')
    expect((await vaultError(vault.keyStatus({ rotateAfterDays: 0 }))).path).toBe('rotateAfterDays')
    expect((await vaultError(vault.retireKey({ provider: 'local' } as never))).path).toBe('key.keyId')
    await vault.close()
  })
})
