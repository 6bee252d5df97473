// Memory hygiene where the OS allows it: the pages holding a live data key or plaintext shares
// are locked and kept out of core dumps, stats() says which protections are in force, and
// hardenProcess makes the process non-dumpable. Each case runs in a child process of its own,
// since these are process-wide.
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'

function inChild(open: object): { memory: Record<string, unknown>; smaps: { locked: boolean; dontDump: boolean } } {
  const script = `
    const { Vault } = require(${JSON.stringify(join(__dirname, '..', 'dist'))})
    const { fakeCreatedWallet } = require(${JSON.stringify(join(__dirname, '..', 'dist', 'testing'))})
    const { readFileSync } = require('node:fs')
    ;(async () => {
      const vault = await Vault.open({ database: ':memory:', environment: 'test', kms: { provider: 'local', key: Buffer.alloc(32, 7) }, ...${JSON.stringify(open)} })
      const w = fakeCreatedWallet('EVM')
      await vault.storeWallet(w)
      await vault.withWallet(w.walletMetadata.accountAddress, () => undefined, { purpose: 'sign' })
      // The cached data key is live now: some mapping of this process is locked and marked dd.
      const smaps = readFileSync('/proc/self/smaps', 'utf8')
      const locked = /^Locked:\\s+[1-9]/m.test(smaps)
      const dontDump = /^VmFlags:.*\\bdd\\b/m.test(smaps)
      process.stdout.write(JSON.stringify({ memory: vault.stats().memory, smaps: { locked, dontDump } }))
      await vault.close()
    })().catch((e) => { process.stderr.write(String(e)); process.exit(1) })`
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }))
}

describe('memory protections', () => {
  it('lock the pages of live secrets and keep them out of core dumps, and say so in stats()', () => {
    const { memory, smaps } = inChild({})
    expect(memory).toMatchObject({ dontDump: true, nonDumpable: false })
    expect(smaps.dontDump).toBe(true)
    // Locking may be refused (RLIMIT_MEMLOCK without CAP_IPC_LOCK): then it is counted, not fatal.
    if (memory.mlockFailures === 0) {
      expect(memory.mlock).toBe(true)
      expect(memory.lockedPages).toBeGreaterThan(0)
      expect(smaps.locked).toBe(true)
    } else {
      expect(memory.mlock).toBe(false)
    }
  })

  it('with hardenProcess, make the process non-dumpable', () => {
    expect(inChild({ hardenProcess: true }).memory.nonDumpable).toBe(true)
  })

  it('refuse a hardenProcess that is not a boolean', () => {
    expect(() => inChild({ hardenProcess: 'yes' })).toThrow(/hardenProcess/)
  })
})
