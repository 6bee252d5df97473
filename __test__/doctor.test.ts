import { execFile } from 'node:child_process'
import { chmodSync, writeFileSync } from 'node:fs'
import { networkInterfaces } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { Vault } from '../lib'
import { fakeCreatedWallet } from '../lib/testing'
import { backends, cleanup, newKey, tempDir } from './support/helpers'
import { sqlInChild } from './support/sql'
import { CLI } from './support/cli'

afterEach(cleanup)

const run = promisify(execFile)

interface Finding {
  check: string
  status: 'ok' | 'fail' | 'warn' | 'skipped'
  detail: string
  fix?: string
}

/** `sharevault doctor --json` under the given shell limits (`ulimit` arguments). */
async function doctor(env: Record<string, string>, limits = ['-S -c 0'], withoutIpcLock = false, flags: string[] = []): Promise<{ code: number; ok: boolean; findings: Finding[]; stderr: string }> {
  const script = `${limits.map((l) => `ulimit ${l} && `).join('')}exec "$0" "$1" doctor --json ${flags.join(' ')}`
  // As root, CAP_IPC_LOCK makes any RLIMIT_MEMLOCK enough: dropped (setpriv) to see the limit bite.
  const [cmd, pre] = withoutIpcLock && process.getuid?.() === 0 ? ['setpriv', ['--bounding-set', '-ipc_lock', 'sh']] : ['sh', []]
  let out: { stdout: string; stderr: string }
  let code = 0
  try {
    out = await run(cmd, [...pre, '-c', script, process.execPath, CLI], { env: { ...process.env, ...env } })
  } catch (e) {
    const f = e as { code: number; stdout: string; stderr: string }
    out = f
    code = f.code
  }
  const parsed = JSON.parse(out.stdout) as { ok: boolean; findings: Finding[] }
  return { code, ...parsed, stderr: out.stderr }
}

function finding(findings: Finding[], check: string): Finding {
  const f = findings.find((x) => x.check === check)
  if (!f) throw new Error(`no ${check} finding in ${JSON.stringify(findings.map((x) => x.check))}`)
  return f
}

async function deployment(database: string, environment = 'ops-test', allowInProduction = false) {
  const key = newKey()
  const vault = await Vault.open({ database, environment, kms: { provider: 'local', key, allowInProduction } })
  await vault.storeWallet(fakeCreatedWallet('EVM'))
  await vault.close()
  return { SHAREVAULT_DATABASE: database, SHAREVAULT_ENVIRONMENT: environment, SHAREVAULT_KMS: JSON.stringify({ provider: 'local', key: key.toString('base64'), allowInProduction }) }
}

describe.each(backends())('sharevault doctor on $name', (backend) => {
  it('a sound deployment: no check fails (the local key is a warning), exit 0', async () => {
    const env = await deployment(await backend.database())
    const r = await doctor(env, ['-S -c 0'])
    expect(r.findings.filter((f) => f.status === 'fail')).toEqual([])
    expect([r.code, r.ok]).toEqual([0, true])
    for (const c of ['schema', 'rotation', 'audit chain', 'RLIMIT_MEMLOCK', 'core dumps']) expect(finding(r.findings, c).status).toBe('ok')
    expect(finding(r.findings, 'local key').status).toBe('warn')
    // The local server may offer TLS (it is loopback either way: no failure).
    if (backend.name === 'postgres') expect(['ok', 'warn']).toContain(finding(r.findings, 'database TLS').status)
    else expect(finding(r.findings, 'database file').status).toBe('ok')
  })
})

describe('sharevault doctor finds each problem it claims to find', () => {
  it('a database file, its -wal, or its directory others may read or write', async () => {
    const path = join(tempDir(), 'vault.db')
    const env = await deployment(path)
    chmodSync(path, 0o644)
    chmodSync(dirname(path), 0o777)
    // The -wal exists while a vault has the database open (another process: this one).
    const key = Buffer.from((JSON.parse(env.SHAREVAULT_KMS) as { key: string }).key, 'base64')
    const open = await Vault.open({ database: path, environment: 'ops-test', kms: { provider: 'local', key } })
    await open.storeWallet(fakeCreatedWallet('EVM'))
    chmodSync(`${path}-wal`, 0o644)
    const r = await doctor(env)
    await open.close()
    expect(r.code).toBe(1)
    expect(finding(r.findings, 'database file')).toMatchObject({ status: 'fail', fix: `chmod 600 ${path}` })
    expect(finding(r.findings, 'database directory').status).toBe('fail')
    expect(finding(r.findings, 'database -wal').status).toBe('fail')
  })

  it('a --kms-file others may read', async () => {
    const env = await deployment(join(tempDir(), 'vault.db'))
    const file = join(tempDir(), 'kms.json')
    writeFileSync(file, env.SHAREVAULT_KMS, { mode: 0o644 })
    chmodSync(file, 0o644)
    const r = await doctor({ ...env, SHAREVAULT_KMS: '' }, ['-S -c 0'], false, ['--kms-file', file])
    expect(r.code).toBe(1)
    expect(finding(r.findings, 'KMS settings file')).toMatchObject({ status: 'fail', fix: `chmod 600 ${file}` })
    chmodSync(file, 0o600)
    expect(finding((await doctor({ ...env, SHAREVAULT_KMS: '' }, ['-S -c 0'], false, ['--kms-file', file])).findings, 'KMS settings file').status).toBe('ok')
  })

  it('the local key in a production-like environment', async () => {
    const env = await deployment(join(tempDir(), 'vault.db'), 'eu-prod', true)
    const r = await doctor(env)
    expect(r.code).toBe(1)
    expect(finding(r.findings, 'local key')).toMatchObject({ status: 'fail' })
  })

  it('RLIMIT_MEMLOCK too low, and core dumps enabled', async () => {
    const env = await deployment(join(tempDir(), 'vault.db'))
    const low = await doctor(env, ['-S -c 0', '-S -l 64'], true)
    expect(low.code).toBe(1)
    expect(finding(low.findings, 'RLIMIT_MEMLOCK')).toMatchObject({ status: 'fail', detail: expect.stringContaining('64 KiB') })
    const dumps = await doctor(env, ['-S -c unlimited'])
    expect(dumps.code).toBe(1)
    expect(finding(dumps.findings, 'core dumps')).toMatchObject({ status: 'fail', detail: expect.stringContaining('enabled') })
  })

  it('a schema that is not there (migrate not run)', async () => {
    const path = join(tempDir(), 'empty.db')
    writeFileSync(path, '')
    chmodSync(path, 0o600)
    const r = await doctor({ SHAREVAULT_DATABASE: path, SHAREVAULT_ENVIRONMENT: 'ops-test', SHAREVAULT_KMS: JSON.stringify({ provider: 'local', key: newKey().toString('base64') }) })
    expect(r.code).toBe(1)
    expect(finding(r.findings, 'schema')).toMatchObject({ status: 'fail', fix: expect.stringContaining('sharevault migrate') })
  })

  it('an audit chain that does not verify', async () => {
    const path = join(tempDir(), 'vault.db')
    const env = await deployment(path)
    sqlInChild(path, `db.exec("DROP TRIGGER audit_append_only_update; UPDATE audit SET actor = 'nobody' WHERE seq = 2")`)
    const r = await doctor(env)
    expect(r.code).toBe(1)
    expect(finding(r.findings, 'audit chain')).toMatchObject({ status: 'fail', detail: expect.stringContaining('seq 2') })
  })

  it('plain http to a KMS endpoint that is not loopback (the vault refuses it too)', async () => {
    const r = await doctor({
      SHAREVAULT_DATABASE: join(tempDir(), 'vault.db'),
      SHAREVAULT_ENVIRONMENT: 'ops-test',
      SHAREVAULT_KMS: JSON.stringify({ provider: 'aws', keyId: 'alias/x', region: 'eu-west-1', endpoint: 'http://kms.example.com' }),
    })
    expect(r.code).toBe(1)
    expect(finding(r.findings, 'KMS transport').status).toBe('fail')
    expect(finding(r.findings, 'open')).toMatchObject({ status: 'fail', detail: expect.stringContaining('ERR_INVALID_INPUT') })
  })

  // A server of the test's own on the machine's first address that is not loopback, without TLS.
  const address = Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal)?.address
  ;(address ? it : it.skip)('no TLS to a database host that is not loopback (allowed by allowInsecureTransport)', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { startCluster } = require('../bench/pg-cluster') as { startCluster: (o: { host: string }) => Promise<{ adminUrl: string; stop: () => void } | undefined> }
    const cluster = await startCluster({ host: address as string })
    if (!cluster) throw new Error('no PostgreSQL server binaries to start a cluster with')
    try {
      const key = newKey()
      const vault = await Vault.open({ database: cluster.adminUrl, environment: 'ops-test', kms: { provider: 'local', key }, allowInsecureTransport: true })
      await vault.close()
      const env = { SHAREVAULT_DATABASE: cluster.adminUrl, SHAREVAULT_ENVIRONMENT: 'ops-test', SHAREVAULT_KMS: JSON.stringify({ provider: 'local', key: key.toString('base64') }) }
      // Without the flag the vault itself refuses it; with it, the doctor says so.
      const refused = await doctor(env)
      expect(finding(refused.findings, 'open').detail).toContain('ERR_INVALID_INPUT')
      const r = await doctor(env, ['-S -c 0'], false, ['--allow-insecure-transport'])
      expect(r.code).toBe(1)
      expect(finding(r.findings, 'database TLS')).toMatchObject({ status: 'fail', detail: `no TLS to ${address}` })
    } finally {
      cluster.stop()
    }
  })

  it('an unreachable database: exit 3, the findings printed, no password', async () => {
    const r = await doctor({
      SHAREVAULT_DATABASE: 'postgres://app:hunter2-secret@127.0.0.1:1/nothing?connect_timeout=2',
      SHAREVAULT_ENVIRONMENT: 'ops-test',
      SHAREVAULT_KMS: JSON.stringify({ provider: 'local', key: newKey().toString('base64') }),
    })
    expect(r.code).toBe(3)
    expect(finding(r.findings, 'open').detail).toContain('ERR_DB_UNAVAILABLE')
    expect(JSON.stringify(r)).not.toContain('hunter2')
  })
})
