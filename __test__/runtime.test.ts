// The runtime the vault's work runs on is sized and prioritised for the host: its threads and the
// SQLite writer run at a lower priority than the JavaScript thread (Linux), stats() says how it
// was built, a bad SHAREVAULT_THREADS / SHAREVAULT_NICE is a clear error, and the data-key
// cache's hit rate is in stats(). Process-wide, so each case runs in a child process.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir, cpus } from 'node:os'
import { join } from 'node:path'

interface ChildResult {
  runtime?: { workerThreads: number; nice: number }
  hitRates?: Array<number | null>
  threads?: Array<{ name: string; nice: number }>
  jsNice?: number
  error?: { code: string; message: string }
}

function inChild(env: Record<string, string>, dir: string): ChildResult {
  const script = `
    const { Vault } = require(${JSON.stringify(join(__dirname, '..', 'dist'))})
    const { fakeCreatedWallet } = require(${JSON.stringify(join(__dirname, '..', 'dist', 'testing'))})
    const { readdirSync, readFileSync } = require('node:fs')
    const threads = () => readdirSync('/proc/self/task').map((tid) => {
      const stat = readFileSync('/proc/self/task/' + tid + '/stat', 'utf8')
      // Fields after the name (which is in parentheses): nice is the 19th field of the line.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      return { tid, name: readFileSync('/proc/self/task/' + tid + '/comm', 'utf8').trim(), nice: Number(rest[16]) }
    })
    ;(async () => {
      let vault
      try {
        vault = await Vault.open({ database: ${JSON.stringify(join(dir, 'v.db'))}, environment: 'test', kms: { provider: 'local', key: Buffer.alloc(32, 7) }, cache: { maxEntries: 1 } })
      } catch (e) {
        process.stdout.write(JSON.stringify({ error: { code: e.code, message: e.message } }))
        return
      }
      const hitRates = [vault.stats().cacheHitRate]
      const [a, b] = [fakeCreatedWallet('EVM'), fakeCreatedWallet('EVM')]
      await vault.storeWallet(a)
      await vault.storeWallet(b)
      const sign = (w) => vault.withWallet(w.walletMetadata.accountAddress, () => undefined, { purpose: 'sign' })
      // One entry: a, a (hit), b (miss, evicts a), a (miss).
      await sign(a); await sign(a); await sign(b); await sign(a)
      hitRates.push(vault.stats().cacheHitRate)
      const all = threads()
      const js = all.find((t) => t.tid === String(process.pid))
      process.stdout.write(JSON.stringify({ runtime: vault.stats().runtime, hitRates, jsNice: js.nice, threads: all.filter((t) => t.name.startsWith('sharevault')) }))
      await vault.close()
    })().catch((e) => { process.stderr.write(String(e)); process.exit(1) })`
  const out = execFileSync(process.execPath, ['-e', script], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SHAREVAULT_THREADS: '', SHAREVAULT_NICE: '', ...env },
  })
  return JSON.parse(out) as ChildResult
}

const linux = process.platform === 'linux'

describe('the runtime', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'sharevault-runtime-'))
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  it('leaves a core to the JavaScript thread and runs its threads below its priority', () => {
    const r = inChild({}, dir)
    expect(r.runtime).toEqual({ workerThreads: Math.max(1, cpus().length - 1), nice: 10 })
    if (linux) {
      expect(r.jsNice).toBe(0)
      const names = new Set(r.threads!.map((t) => t.name))
      expect(names).toEqual(new Set(['sharevault-rt', 'sharevault-writ']))
      for (const t of r.threads!) expect(t.nice).toBe(10)
    }
  })

  it('takes its size and priority from SHAREVAULT_THREADS and SHAREVAULT_NICE', () => {
    const r = inChild({ SHAREVAULT_THREADS: '3', SHAREVAULT_NICE: '0' }, dir)
    expect(r.runtime).toEqual({ workerThreads: 3, nice: 0 })
    if (linux) for (const t of r.threads!) expect(t.nice).toBe(0)
  })

  it.each([
    ['SHAREVAULT_THREADS', '0'],
    ['SHAREVAULT_THREADS', 'many'],
    ['SHAREVAULT_THREADS', '257'],
    ['SHAREVAULT_NICE', '20'],
    ['SHAREVAULT_NICE', '-5'],
  ])('refuses %s=%s with ERR_INVALID_INPUT naming it, and writes nothing', (name, value) => {
    const r = inChild({ [name]: value }, dir)
    expect(r.error?.code).toBe('ERR_INVALID_INPUT')
    expect(r.error?.message).toContain(name)
    expect(r.error?.message).not.toContain(`=${value}`)
    expect(existsSync(join(dir, 'v.db'))).toBe(false)
  })

  it('reports the data-key cache hit rate', () => {
    const r = inChild({}, dir)
    expect(r.hitRates).toEqual([null, 0.25])
  })
})
