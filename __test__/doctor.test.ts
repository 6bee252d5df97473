import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, cpSync, readdirSync, writeFileSync } from 'node:fs'
import { networkInterfaces } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { Vault } from '../lib'
import { fakeCreatedWallet } from '../lib/testing'
import { backends, cleanup, newKey, tempDir } from './support/helpers'
import { sqlInChild } from './support/sql'
import { cli, CLI } from './support/cli'

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

  // The service process as the kernel sees it: an unprivileged user (root's /proc files are root's
  // whatever it does), core dumps allowed, hardened or not. It runs from a copy of the package any
  // user can read (the checkout may sit under a directory only root can enter).
  async function service(harden: boolean): Promise<{ child: ChildProcess; pid: string }> {
    const root = join(dirname(CLI), '..')
    const copy = tempDir()
    chmodSync(copy, 0o755)
    cpSync(join(root, 'dist'), join(copy, 'dist'), { recursive: true })
    for (const f of readdirSync(root).filter((n) => n === 'index.js' || n.endsWith('.node'))) cpSync(join(root, f), join(copy, f))
    const key = newKey().toString('base64')
    const code = `const { Vault } = require(${JSON.stringify(join(copy, 'dist'))});
      Vault.open({ database: ':memory:', environment: 'ops-test', kms: { provider: 'local', key: Buffer.from(${JSON.stringify(key)}, 'base64') }, hardenProcess: ${harden} })
        .then(() => { process.stdout.write('ready\\n'); process.stdin.resume() }, (e) => { console.error(e); process.exit(1) })`
    const child = spawn('sh', ['-c', 'ulimit -S -c unlimited && exec setpriv --reuid 65534 --regid 65534 --clear-groups "$0" -e "$1"', process.execPath, code], { stdio: ['pipe', 'pipe', 'inherit'] })
    await new Promise<void>((resolve, reject) => {
      child.stdout?.once('data', () => resolve())
      child.once('exit', (c) => reject(new Error(`the service process exited (${c})`)))
    })
    return { child, pid: String(child.pid) }
  }

  ;(process.getuid?.() === 0 ? it : it.skip)('a service process that is dumpable, and its core dumps enabled (--pid), and one opened with hardenProcess', async () => {
    const env = await deployment(join(tempDir(), 'vault.db'))
    const plain = await service(false)
    const hardened = await service(true)
    try {
      // The doctor's own limits are sound (-c 0): with --pid it reports the service's.
      const bad = await doctor(env, ['-S -c 0'], false, ['--pid', plain.pid])
      expect(bad.code).toBe(1)
      expect(finding(bad.findings, 'process dumpable')).toMatchObject({ status: 'fail', detail: expect.stringContaining(`process ${plain.pid} is dumpable`), fix: expect.stringContaining('hardenProcess') })
      expect(finding(bad.findings, 'core dumps')).toMatchObject({ status: 'fail', detail: expect.stringContaining(`process ${plain.pid}`) })
      const good = await doctor(env, ['-S -c 0'], false, ['--pid', hardened.pid])
      expect(finding(good.findings, 'process dumpable')).toMatchObject({ status: 'ok', detail: `process ${hardened.pid} is not dumpable (hardenProcess)` })
      // Without --pid nothing is claimed about a process the doctor did not look at.
      expect(finding((await doctor(env)).findings, 'process dumpable').status).toBe('skipped')
      // A pid that is no process here is a usage error, not a finding.
      const none = await cli(['doctor', '--pid', '999999999'], env)
      expect([none.code, none.stderr]).toEqual([2, expect.stringContaining('no such process')])
    } finally {
      plain.child.kill()
      hardened.child.kill()
    }
  })

  // libfaketime (Debian's faketime, which .ci/run installs): outside CI a machine without it skips this one.
  const faketime = spawnSync('faketime', ['--version']).status === 0 || process.env.CI === 'true'
  ;(faketime ? it : it.skip)('rotation due: a key and records older than the rotation period (the vault made 100 days ago, libfaketime), and not due once rotated', async () => {
    const path = join(tempDir(), 'vault.db')
    const old = newKey()
    // The vault, its keyring and its first wallet written by a process whose clock reads 100 days ago.
    const code = `const { Vault } = require(${JSON.stringify(dirname(CLI))}); const { fakeCreatedWallet } = require(${JSON.stringify(join(dirname(CLI), 'testing'))});
      (async () => { const v = await Vault.open({ database: ${JSON.stringify(path)}, environment: 'ops-test', kms: { provider: 'local', key: Buffer.from(${JSON.stringify(old.toString('base64'))}, 'base64') } });
        await v.storeWallet(fakeCreatedWallet('EVM')); process.stdout.write(new Date().toISOString()); await v.close() })().catch((e) => { console.error(e); process.exit(1) })`
    const past = await run('faketime', ['-f', '-100d', process.execPath, '-e', code], { env: { ...process.env, FAKETIME_DONT_FAKE_MONOTONIC: '1' } })
    expect(Date.now() - Date.parse(past.stdout)).toBeGreaterThan(99 * 86_400_000)
    const env = { SHAREVAULT_DATABASE: path, SHAREVAULT_ENVIRONMENT: 'ops-test', SHAREVAULT_KMS: JSON.stringify({ provider: 'local', key: old.toString('base64') }) }
    const due = await doctor(env)
    expect(due.code).toBe(1)
    expect(finding(due.findings, 'rotation')).toMatchObject({ status: 'fail', detail: expect.stringContaining('after 90 days'), fix: expect.stringContaining('sharevault rotate') })
    // A longer period the operator chose: not due.
    expect(finding((await doctor(env, ['-S -c 0'], false, ['--rotate-after-days', '365'])).findings, 'rotation').status).toBe('ok')
    const status = await cli(['status'], env)
    expect([status.code, status.stdout]).toEqual([0, expect.stringContaining('rotation: DUE (after 90 days)')])
    expect((await cli(['keys'], env)).stdout).toContain('ROTATION DUE')
    // The fix the doctor names: a new primary key, the old one in previous, sharevault rotate.
    const rotated = { ...env, SHAREVAULT_KMS: JSON.stringify({ provider: 'local', key: newKey().toString('base64'), previous: [{ provider: 'local', key: old.toString('base64') }] }) }
    expect((await cli(['rotate'], rotated)).code).toBe(0)
    const after = await doctor(rotated)
    expect(finding(after.findings, 'rotation')).toMatchObject({ status: 'ok', detail: expect.stringContaining('0 records behind') })
    expect(after.code).toBe(0)
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
