import { migrate, Vault } from '../lib'
import { fakeCreatedWallet } from '../lib/testing'
import { backends, cleanup, newKey, vaultError } from './support/helpers'
import { cli } from './support/cli'

afterEach(cleanup)

describe.each(backends())('schema migrations on $name', (backend) => {
  // SQLite's schema 5 moves rotation leases out of the wallet row; PostgreSQL keeps them there.
  const schema = backend.name === 'sqlite' ? 6 : 5
  it('with migrate: false, refuses a database without the schema, creates nothing, and says what to run', async () => {
    const database = await backend.database()
    const e = await vaultError(Vault.open({ database, environment: 'test', kms: { provider: 'local', key: newKey() }, migrate: false }))
    expect(e.code).toBe('ERR_STORAGE')
    expect(e.message).toContain('sharevault migrate')
    // Still nothing there: migrate finds version 0.
    expect(await migrate({ database })).toEqual({ from: 0, to: schema })
  })

  it('`sharevault migrate` creates the schema once; a vault opened with migrate: false then works', async () => {
    const database = await backend.database()
    const first = await cli(['migrate'], { SHAREVAULT_DATABASE: database })
    expect(first).toMatchObject({ code: 0, stdout: `schema migrated from version 0 to ${schema}\n` })
    const again = await cli(['migrate', '--database', database])
    expect(again).toMatchObject({ code: 0, stdout: `schema already at version ${schema}; nothing to do\n` })

    const key = newKey()
    const vault = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key }, migrate: false })
    const created = fakeCreatedWallet('EVM')
    await vault.storeWallet(created)
    const n = await vault.withWallet(created.walletMetadata.accountAddress, (w) => w.externalServerKeyShares.length, { purpose: 'sign' })
    expect(n).toBe(created.externalServerKeyShares.length)
    await vault.close()
  })
})

describe('migrate() and the command refuse bad input', () => {
  it('refuses a migrate option that is not a boolean, with its path', async () => {
    const e = await vaultError(Vault.open({ database: ':memory:', environment: 'test', kms: { provider: 'local', key: newKey() }, migrate: 'no' as unknown as boolean }))
    expect(e).toMatchObject({ code: 'ERR_INVALID_INPUT', path: 'migrate' })
    const m = await vaultError(migrate({ database: 'mysql://db/x' }))
    expect(m).toMatchObject({ code: 'ERR_INVALID_INPUT', path: 'database' })
  })

  it('exits 2 with the usage when no database is named', async () => {
    const r = await cli(['migrate'], { SHAREVAULT_DATABASE: '' })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('SHAREVAULT_DATABASE')
  })

  it('exits 2 without echoing the password when the URL is passed as a bare argument', async () => {
    const r = await cli(['migrate', 'postgres://app:hunter2-secret@db.internal/wallets'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('--database')
    expect(r.stderr + r.stdout).not.toContain('hunter2')
  })

  it('exits 3 (unavailable) without echoing the password when the server cannot be reached', async () => {
    const r = await cli(['migrate'], { SHAREVAULT_DATABASE: 'postgres://app:hunter2-secret@127.0.0.1:1/nothing?connect_timeout=2' })
    expect(r.code).toBe(3)
    expect(r.stderr).toContain('ERR_DB_UNAVAILABLE')
    expect(r.stderr + r.stdout).not.toContain('hunter2')
  })
})
