import { spawnSync } from 'node:child_process'
import { join } from 'node:path'

// A panic in the addon (a defect) must reach JS as ERR_INTERNAL and leave the process running:
// the release profile unwinds, every export is guarded, and the payload is never printed or passed on by the facade.
describe('a panic inside the addon', () => {
  it('rejects with ERR_INTERNAL (sync, on the runtime, and while building the result), prints no payload, and the process goes on', () => {
    const child = spawnSync(process.execPath, [join(__dirname, 'support', 'panic-child.js')], { encoding: 'utf8', timeout: 30_000 })
    expect(child.signal).toBeNull()
    expect(child.status).toBe(0)
    const out = JSON.parse(child.stdout.trim().split('\n').pop() as string)
    expect(out.afterwards).toBe(1)
    for (const where of ['sync', 'async', 'settle']) {
      const r = out.results.find((x: { where: string }) => x.where === where)
      expect(r).toMatchObject({ where, name: 'VaultError', code: 'ERR_INTERNAL' })
      expect(r.message).not.toContain('PANIC-PAYLOAD')
    }
    // On the runtime and in a settlement the binding's own error says what panicked, not what the
    // panic carried. (A panic in an exported function itself is turned into an error by napi-rs,
    // whose message quotes the payload: the facade replaces it, as checked above.)
    for (const where of ['async', 'settle']) {
      const r = out.results.find((x: { where: string }) => x.where === where)
      expect(r.raw).toContain('ERR_INTERNAL')
      expect(r.raw).not.toContain('PANIC-PAYLOAD')
    }
    // One payload-free line per panic, naming where it happened.
    expect(child.stderr).not.toContain('PANIC-PAYLOAD')
    expect(child.stderr.match(/sharevault: internal error \(a panic at src\/panic\.rs:\d+\)/g)).toHaveLength(3)
  })
})
