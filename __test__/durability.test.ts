import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { Vault } from '../lib'
import { cleanup, newKey, tempDir } from './support/helpers'

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
  exited: Promise<number | null>
  waitFor(n: number): Promise<void>
}

function startChild(path: string, key: string, count: number, chain: string): Child {
  const proc = spawn(process.execPath, [CHILD, path, key, String(count), chain], { stdio: ['ignore', 'pipe', 'inherit'] })
  const acks = new Map<string, string>()
  const waiters: { n: number; resolve: () => void }[] = []
  let buf = ''
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString()
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      const [tag, address, digest] = line.split(' ')
      if (tag === 'ack') acks.set(address, digest)
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
    exited,
    waitFor: (n) => (acks.size >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve }))),
  }
}

async function expectAllPresent(path: string, key: string, acks: Map<string, string>): Promise<void> {
  const vault = await Vault.open({ database: path, environment: 'test', kms: { provider: 'local', key } })
  for (const [address, digest] of acks) {
    const got = await vault.withWallet(address, (w) => createHash('sha256').update(w.externalServerKeyShares[0].secretShare).digest('hex'))
    expect(got).toBe(digest)
  }
  expect((await vault.verifyAuditChain()).brokenAt).toBeUndefined()
  await vault.close()
}

describe('durability', () => {
  it('loses none of the stores a process acknowledged before it was killed with SIGKILL', async () => {
    const path = join(tempDir(), 'crash.db')
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

  it('loses no store when two processes write to one database at once', async () => {
    const path = join(tempDir(), 'shared.db')
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
})
