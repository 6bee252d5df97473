import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { cleanup, tempDir } from './support/helpers'

const SCRIPT = join(__dirname, '..', 'scripts', 'softhsm.sh')
const CHILD = join(__dirname, 'support', 'pkcs11-child.js')
const PIN = 'jest-4711'

afterEach(cleanup)

/** A SoftHSM token of the test's own (`sv-jest`, keys `kek` and `extractable`), and the scenario run against it in a child process. */
function withToken() {
  const dir = tempDir()
  const sh = (...args: string[]) => execFileSync(SCRIPT, args, { encoding: 'utf8' }).trim()
  const conf = sh('token', dir, 'sv-jest', PIN)
  sh('key', dir, 'sv-jest', PIN, 'kek')
  sh('key', dir, 'sv-jest', PIN, 'extractable', '--extractable')
  const module_ = sh('module')
  const database = join(dir, 'vault.db')
  return (scenario: string, env: Record<string, string> = {}): Record<string, unknown> =>
    JSON.parse(
      execFileSync(process.execPath, [CHILD, scenario, database, module_, PIN], { env: { PATH: process.env.PATH ?? '', SOFTHSM2_CONF: conf, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(),
    ) as Record<string, unknown>
}

describe('PKCS#11 (SoftHSM2)', () => {
  it('stores and hydrates under a key on the token, named by token and label; the PIN may come from SHAREVAULT_PKCS11_PIN', () => {
    const run = withToken()
    expect(run('round-trip', { SHAREVAULT_PKCS11_PIN: PIN })).toEqual({ same: true, primary: { provider: 'pkcs11', keyId: 'token=sv-jest;object=kek', records: 1 }, fromEnv: 1 })
  })

  it('refuses a wrong PIN, a key that could leave the token, and bad options, never saying the PIN', () => {
    const out = withToken()('refusals')
    expect(out.wrongPin).toMatchObject({ code: 'ERR_KMS_DENIED' })
    expect(out.extractable).toMatchObject({ code: 'ERR_INVALID_INPUT', path: 'kms.keyLabel' })
    expect(out.bothTokenAndSlot).toMatchObject({ code: 'ERR_INVALID_INPUT', path: 'kms.slot' })
    expect(out.noModule).toMatchObject({ code: 'ERR_INVALID_INPUT', path: 'kms.module' })
    expect(JSON.stringify(out)).not.toContain('not-the-pin')
    expect(JSON.stringify(out)).not.toContain(PIN)
  })

  it('rotates from the local key onto the token', () => {
    expect(withToken()('rotate-from-local')).toEqual({ done: 2, remaining: 0, behind: 0, hydrated: 2 })
  })
})
