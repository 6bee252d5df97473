import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { cleanup, tempDir } from './support/helpers'

afterAll(cleanup)

// A library inside someone's server must never take the server down: a worker_threads Worker
// that ends (terminated, process.exit, or close() racing its exit) with vault calls in flight
// leaves the process alive, and a vault in the main thread keeps working.
describe('a worker that ends with vault calls in flight', () => {
  it('never aborts the process: 50 busy workers ended three ways, the main vault still works', () => {
    const r = spawnSync(process.execPath, [join(__dirname, 'support', 'worker-child.js'), tempDir(), '50'], {
      encoding: 'utf8',
      timeout: 240_000,
    })
    expect({ signal: r.signal, status: r.status, stderr: r.stderr }).toEqual({ signal: null, status: 0, stderr: '' })
    expect(r.stdout.trim()).toBe('ok 50 1')
  }, 300_000)
})
