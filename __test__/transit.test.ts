import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { Vault, ALL_PERMISSIONS } from '../lib'
import type { OpenOptions, TransitKmsOptions } from '../lib'
import { fakeCreatedWallet } from '../lib/testing'
import { cleanup, tempDir, vaultError } from './support/helpers'
import { startOpenBao, type OpenBao } from './support/openbao'
import { sqlInChild } from './support/sql'
import { cli } from './support/cli'

let bao: OpenBao

beforeAll(() => {
  bao = startOpenBao()
  bao.createKey('wallets')
}, 120_000)
afterAll(() => bao?.kill())
afterEach(cleanup)

function transit(extra: Partial<TransitKmsOptions> = {}): TransitKmsOptions {
  return { provider: 'transit', address: bao.address, keyName: 'wallets', token: bao.token, timeoutMs: 5000, maxAttempts: 2, ...extra }
}

function options(database: string, kms: OpenOptions['kms'] = transit()): OpenOptions {
  return { database, environment: 'test', kms, allow: ALL_PERMISSIONS }
}

describe('Vault / OpenBao Transit', () => {
  it('stores and hydrates with a derived Transit key, recording the version Transit used', async () => {
    const path = join(tempDir(), 'transit.db')
    const vault = await Vault.open(options(path))
    const created = fakeCreatedWallet('EVM')
    await vault.storeWallet(created)
    expect(await vault.withWallet(created.walletMetadata.accountAddress, (w) => w.externalServerKeyShares[0].secretShare)).toBe(created.externalServerKeyShares[0].secretShare)
    const row = sqlInChild(path, "return db.prepare('SELECT kek_provider, kek_key_id, kek_key_version, wrapped_dek FROM wallets').get()") as { kek_provider: string; kek_key_id: string; kek_key_version: string; wrapped_dek: { data: number[] } | Uint8Array }
    expect(row).toMatchObject({ kek_provider: 'transit', kek_key_id: `${bao.address}/transit/wallets`, kek_key_version: '1' })
    const status = await vault.keyStatus()
    const primary = status.keys.find((k) => k.state === 'primary')
    expect(primary).toMatchObject({ provider: 'transit', keyVersion: '1', records: 1 })
    expect(primary?.providerRotation).toEqual({ enabled: false, periodDays: null, nextRotation: null, minDecryptionVersion: '1' })
    await vault.close()
  })

  // In a process of its own: jest gives each test file a copy of process.env, which the native
  // side (reading the real environment, as a service's vault does) would not see.
  it('takes the token from VAULT_TOKEN when the option has none, and never says it', async () => {
    const path = join(tempDir(), 'transit.db')
    const code = `const { Vault } = require(${JSON.stringify(join(__dirname, '..', 'dist'))});
      Vault.open({ database: ${JSON.stringify(path)}, environment: 'test', kms: ${JSON.stringify(transit({ token: undefined }))} })
        .then(async (v) => { await v.close(); console.log('opened') }, (e) => console.log(JSON.stringify({ code: e.code, path: e.path, message: e.message })))`
    const run = (env: Record<string, string>) =>
      execFileSync(process.execPath, ['-e', code], { env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8' }).trim()
    expect(run({ VAULT_TOKEN: bao.token })).toBe('opened')
    expect(run({ BAO_TOKEN: bao.token })).toBe('opened')
    const wrong = JSON.parse(run({ VAULT_TOKEN: 'hvs.wrong-token-value' })) as { code: string; message: string }
    expect(wrong.code).toBe('ERR_KMS_DENIED')
    expect(wrong.message).not.toContain('wrong-token-value')
    expect(JSON.parse(run({}))).toMatchObject({ code: 'ERR_INVALID_INPUT', path: 'kms.token' })
  })

  it('refuses bad options with the option named, before anything is stored', async () => {
    const path = join(tempDir(), 'transit.db')
    const cases: [Partial<TransitKmsOptions> & Record<string, unknown>, string][] = [
      [{ keyName: undefined }, 'kms.keyName'],
      [{ address: undefined }, 'kms.address'],
      [{ address: 'http://192.0.2.10:8200' }, 'kms.address'],
      [{ appRole: { roleId: 'r', secretId: 's' } }, 'kms.appRole'],
      [{ maxAttempts: 0 }, 'kms.maxAttempts'],
      [{ caFile: '/nonexistent/ca.pem', address: bao.address.replace('http:', 'https:') }, 'kms.caFile'],
    ]
    for (const [extra, path_] of cases) {
      const e = await vaultError(Vault.open(options(path, { ...transit(), ...extra } as TransitKmsOptions)))
      expect([e.code, e.path]).toEqual(['ERR_INVALID_INPUT', path_])
      expect(e.message).not.toContain(bao.token)
    }
    // A key that is not derived would not bind a data key to its wallet: refused.
    bao.bao('write', '-f', 'transit/keys/not-derived')
    const flat = await vaultError(Vault.open(options(path, transit({ keyName: 'not-derived' }))))
    expect([flat.code, flat.path]).toEqual(['ERR_INVALID_INPUT', 'kms.keyName'])
  })

  it('rotates from the local key to Transit, and Transit key rotation moves records with rewrap', async () => {
    const path = join(tempDir(), 'transit.db')
    const key = Buffer.alloc(32, 7)
    const local = await Vault.open(options(path, { provider: 'local', key }))
    const wallets = [fakeCreatedWallet('EVM'), fakeCreatedWallet('BTC'), fakeCreatedWallet('SVM')]
    for (const w of wallets) await local.storeWallet(w)
    await local.close()
    bao.createKey('moved')
    const v = await Vault.open(options(path, { ...transit({ keyName: 'moved' }), previous: [{ provider: 'local', key }] }))
    expect(await v.rotate()).toMatchObject({ done: 3, failed: 0, remaining: 0 })
    // Each data key unwrapped here (local) and wrapped by Transit's encrypt; the integrity key too.
    expect(v.stats().kmsCalls).toMatchObject({ encrypt: 4, reEncrypt: 0 })
    await v.close()
    bao.bao('write', '-f', 'transit/keys/moved/rotate')
    const v2 = await Vault.open(options(path, transit({ keyName: 'moved' })))
    expect((await v2.keyStatus()).behind).toBe(3)
    expect(await v2.rotate()).toMatchObject({ done: 3, failed: 0, remaining: 0 })
    // Inside Transit: rewrap, no data key out and back in.
    expect(v2.stats().kmsCalls).toMatchObject({ reEncrypt: 3, encrypt: 0 })
    const primary = (await v2.keyStatus()).keys.find((k) => k.state === 'primary')
    expect(primary).toMatchObject({ keyVersion: '2', records: 3 })
    for (const w of wallets) expect(await v2.withWallet(w.walletMetadata.accountAddress, (x) => x.externalServerKeyShares.length)).toBe(w.externalServerKeyShares.length)
    await v2.close()
  })

  it('sharevault doctor fails plain http to a Transit address that is not loopback', async () => {
    const r = await cli(['doctor', '--json'], {
      SHAREVAULT_DATABASE: join(tempDir(), 'vault.db'),
      SHAREVAULT_ENVIRONMENT: 'ops-test',
      SHAREVAULT_KMS: JSON.stringify(transit({ address: 'http://192.0.2.10:8200', token: 'hvs.doctor-secret' })),
    })
    expect(r.code).toBe(1)
    const findings = (JSON.parse(r.stdout) as { findings: { check: string; status: string }[] }).findings
    expect(findings.find((f) => f.check === 'KMS transport')).toMatchObject({ status: 'fail' })
    expect(r.stdout + r.stderr).not.toContain('hvs.doctor-secret')
  })
})
