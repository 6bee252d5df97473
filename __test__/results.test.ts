import { spawnSync } from 'node:child_process'
import { join } from 'node:path'

// Results are built with define semantics: a setter on Object.prototype or Array.prototype (a
// careless deep merge, a hostile dependency) never runs, never sees a share, and never keeps a
// field from reaching the caller. Run in a plain Node process: that is the realm a server has.
describe('result objects', () => {
  it('never run an inherited setter, and arrive whole', () => {
    const r = spawnSync(process.execPath, [join(__dirname, 'support', 'pollution-child.js')], { encoding: 'utf8', timeout: 60_000 })
    expect(r.stderr).toBe('')
    const out = JSON.parse(r.stdout)
    expect(out.seen).toEqual([])
    expect(out.secretMatches).toBe(true)
    expect(out.pubkeyIsBytes).toBe(true)
    expect(out.listed).toHaveLength(1)
    expect(out.audit).toEqual([
      [1, 'key_registered', 'sharevault', expect.stringMatching(/is the primary$/)],
      [2, 'store', 'sharevault', null],
      [3, 'hydrate', 'sharevault', 'sign'],
    ])
    expect(out.chain).toEqual({ rows: 3 })
    expect(out.hydrations).toBe(1)
    expect(out.decrypts).toBeGreaterThanOrEqual(0)
  })
})
