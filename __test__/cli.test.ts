import { execFile, spawn } from 'node:child_process'
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Vault } from '../lib'
import { fakeCreatedWallet } from '../lib/testing'
import { backends, cleanup, newKey, tempDir } from './support/helpers'
import { sqlInChild } from './support/sql'
import { cli, CLI } from './support/cli'

afterEach(cleanup)

const run = promisify(execFile)

/** A vault with `n` wallets and some history, and the environment the command reads it with. */
async function deployment(database: string, n = 2): Promise<{ env: Record<string, string>; key: Buffer }> {
  const key = newKey()
  const vault = await Vault.open({ database, environment: 'ops-test', kms: { provider: 'local', key } })
  for (let i = 0; i < n; i++) {
    const w = fakeCreatedWallet('EVM', { secretShareLength: 300 })
    await vault.storeWallet(w)
    if (i < 2) await vault.withWallet(w.walletMetadata.accountAddress, () => undefined, { purpose: 'sign' })
  }
  await vault.close()
  return { key, env: { SHAREVAULT_DATABASE: database, SHAREVAULT_ENVIRONMENT: 'ops-test', SHAREVAULT_KMS: JSON.stringify({ provider: 'local', key: key.toString('base64') }) } }
}

describe.each(backends())('sharevault keys, checkpoint and audit verify on $name', (backend) => {
  it('report the keyring and the head, and verify the chain from a checkpoint (exit 0, --json parsed)', async () => {
    const { env, key } = await deployment(await backend.database())
    const keys = await cli(['keys'], env)
    expect(keys.code).toBe(0)
    expect(keys.stdout).toMatch(/primary\s+local:\S+\s+records 2/)
    const json = JSON.parse((await cli(['keys', '--json'], env)).stdout) as { keys: { state: string; records: number }[]; behind: number }
    expect(json.keys.map((k) => [k.state, k.records])).toEqual([['primary', 2]])
    expect(json.behind).toBe(0)

    const cp = await cli(['checkpoint'], env)
    expect(cp.code).toBe(0)
    const head = JSON.parse(cp.stdout) as { environment: string; seq: number; mac: string }
    expect(head).toMatchObject({ environment: 'ops-test' })
    expect(head.mac).toMatch(/^[0-9a-f]{64}$/)
    const file = join(tempDir(), 'checkpoint.json')
    writeFileSync(file, cp.stdout)

    const verify = await cli(['audit', 'verify'], env)
    expect(verify.code).toBe(0)
    expect(verify.stdout).toMatch(/audit chain intact: \d+ rows/)
    const since = JSON.parse((await cli(['audit', 'verify', '--since', file, '--json'], env)).stdout) as { ok: boolean; rows: number }
    expect(since.ok).toBe(true)
    expect(since.rows).toBeGreaterThan(0)
    // No key, no password, no share in any output.
    for (const out of [keys, cp, verify]) expect(out.stdout + out.stderr).not.toContain(key.toString('base64'))
  })
})

describe.each(backends())('sharevault status on $name', (backend) => {
  it('reports the schema, the wallets per chain, the keyring, rotation and the audit head', async () => {
    const database = await backend.database()
    const { env, key } = await deployment(database, 3)
    const vault = await Vault.open({ database, environment: 'ops-test', kms: { provider: 'local', key } })
    await vault.storeWallet(fakeCreatedWallet('BTC'))
    await vault.close()
    const human = await cli(['status'], env)
    expect(human.code).toBe(0)
    expect(human.stdout).toContain('wallets: 4 (BTC 1, EVM 3)')
    expect(human.stdout).toMatch(/rotation: not due/)
    const s = JSON.parse((await cli(['status', '--json'], env)).stdout) as { backend: string; schemaVersion: number; walletsByChain: Record<string, number>; wallets: number; keys: { keys: unknown[] }; audit: { headSeq: number; headAt: string } }
    expect(s).toMatchObject({ backend: backend.name, schemaVersion: backend.name === 'sqlite' ? 6 : 5, walletsByChain: { EVM: 3, BTC: 1 }, wallets: 4 })
    expect(s.keys.keys).toHaveLength(1)
    expect(s.audit.headSeq).toBeGreaterThan(0)
    expect(Date.parse(s.audit.headAt)).toBeGreaterThan(Date.now() - 600_000)
  })

  it('reports the data-key cache settings the service runs with (--cache, SHAREVAULT_CACHE), checked by the vault', async () => {
    const { env } = await deployment(await backend.database(), 3)
    // Unset: the vault's default cache, with its numbers.
    expect((await cli(['status'], env)).stdout).toContain('data-key cache: 1000 entries, 5 min per key, 10000 uses per key')
    expect((JSON.parse((await cli(['status', '--json'], env)).stdout) as { cache: unknown }).cache).toEqual({ maxEntries: 1000, maxAgeMs: 300_000, maxUses: 10_000 })
    // Given: what is not given is the default; a working set larger than the cache is said.
    const small = await cli(['status', '--cache', '{"maxEntries":2,"maxAgeMs":1500}'], env)
    expect(small.stdout).toContain('data-key cache: 2 entries, 1500 ms per key, 10000 uses per key; 3 wallets do not fit')
    expect((JSON.parse((await cli(['status', '--json'], { ...env, SHAREVAULT_CACHE: '{"maxUses":7}' })).stdout) as { cache: unknown }).cache).toEqual({ maxEntries: 1000, maxAgeMs: 300_000, maxUses: 7 })
    const off = await cli(['status', '--json'], { ...env, SHAREVAULT_CACHE: 'off' })
    expect((JSON.parse(off.stdout) as { cache: unknown }).cache).toBeNull()
    expect((await cli(['status'], { ...env, SHAREVAULT_CACHE: 'off' })).stdout).toContain('data-key cache: off')
    // Settings the vault would refuse at open are refused here: usage errors, exit 2.
    const zero = await cli(['status', '--cache', '{"maxEntries":0}'], env)
    expect([zero.code, zero.stderr]).toEqual([2, expect.stringContaining('cache.maxEntries')])
    const garbage = await cli(['status'], { ...env, SHAREVAULT_CACHE: 'maxEntries=5' })
    expect([garbage.code, garbage.stderr]).toEqual([2, expect.stringContaining('SHAREVAULT_CACHE is neither off nor JSON')])
  })
})

describe.each(backends())('sharevault compact on $name', (backend) => {
  it('reclaims what deletes left, says what it promises, and needs the delete permission', async () => {
    const database = await backend.database()
    const { env, key } = await deployment(database, 40)
    const vault = await Vault.open({ database, environment: 'ops-test', kms: { provider: 'local', key }, allow: ['delete', 'audit:read'] })
    for (const w of await vault.listWallets({ limit: 30 })) await vault.deleteWallet(w.accountAddress)
    await vault.close()
    const r = await cli(['compact', '--json'], env)
    expect(r.code).toBe(0)
    const c = JSON.parse(r.stdout) as { bytesBefore: number; bytesAfter: number; promise: string }
    expect(c.bytesBefore).toBeGreaterThan(0)
    if (backend.name === 'sqlite') expect(c.bytesAfter).toBeLessThan(c.bytesBefore)
    expect(c.promise).toMatch(backend.name === 'sqlite' ? /secure_delete.*VACUUM rewrites the file/ : /VACUUM marks the space.*does not overwrite/)
    expect((await cli(['compact'], env)).stdout).toMatch(/^compacted: [\d.]+ MiB before, [\d.]+ MiB after\n/)
    // From code, a handle with the default permissions may not; what is left still opens, and the chain verifies.
    const plain = await Vault.open({ database, environment: 'ops-test', kms: { provider: 'local', key } })
    await expect(plain.compact()).rejects.toMatchObject({ code: 'ERR_FORBIDDEN' })
    const left = await plain.listWallets()
    expect(left).toHaveLength(10)
    for (const w of left) await plain.withWallet(w.accountAddress, () => undefined, { purpose: 'sign' })
    await plain.close()
    expect((await cli(['audit', 'verify'], env)).code).toBe(0)
  })
})

describe('sharevault audit verify on a tampered log', () => {
  it('exits 1 and names the first bad seq and the reason', async () => {
    const path = join(tempDir(), 'vault.db')
    const { env } = await deployment(path)
    sqlInChild(path, `db.exec("DROP TRIGGER audit_append_only_update; UPDATE audit SET purpose = 'innocent' WHERE seq = 4")`)
    const r = await cli(['audit', 'verify'], env)
    expect(r.code).toBe(1)
    expect(r.stdout).toMatch(/audit chain BROKEN at seq 4: /)
    const json = JSON.parse((await cli(['audit', 'verify', '--json'], env)).stdout) as { ok: boolean; brokenAt: number; reason: string }
    expect(json).toMatchObject({ ok: false, brokenAt: 4 })
    expect(typeof json.reason).toBe('string')
  })

  it('a checkpoint the log no longer reaches (a cut log) fails', async () => {
    const path = join(tempDir(), 'vault.db')
    const { env } = await deployment(path)
    const file = join(tempDir(), 'checkpoint.json')
    writeFileSync(file, (await cli(['checkpoint'], env)).stdout)
    sqlInChild(path, `db.exec("DROP TRIGGER IF EXISTS audit_append_only_delete; DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)")`)
    const r = await cli(['audit', 'verify', '--since', file], env)
    expect(r.code).toBe(1)
    expect(r.stdout).toContain('BROKEN')
  })
})

describe('sharevault: usage, configuration and availability', () => {
  const base = { SHAREVAULT_DATABASE: ':memory:', SHAREVAULT_ENVIRONMENT: 'ops-test', SHAREVAULT_KMS: JSON.stringify({ provider: 'local', key: newKey().toString('base64') }) }

  it('exits 2 on an unknown command, a missing setting, or KMS settings that are not JSON, quoting no secret', async () => {
    const secret = 'c2VjcmV0LWtleS1tYXRlcmlhbC1kby1ub3QtcHJpbnQ='
    expect((await cli(['rotate-everything'])).code).toBe(2)
    const typedKey = await cli([secret])
    expect(typedKey.code).toBe(2)
    expect(typedKey.stderr + typedKey.stdout).not.toContain(secret)
    expect((await cli(['audit', 'nothing'])).code).toBe(2)
    const noEnv = await cli(['keys'], { ...base, SHAREVAULT_ENVIRONMENT: '' })
    expect([noEnv.code, noEnv.stderr.includes('SHAREVAULT_ENVIRONMENT')]).toEqual([2, true])
    const noKms = await cli(['keys'], { ...base, SHAREVAULT_KMS: '' })
    expect([noKms.code, noKms.stderr.includes('SHAREVAULT_KMS')]).toEqual([2, true])
    const bad = await cli(['keys'], { ...base, SHAREVAULT_KMS: `{"provider":"local","key":"${secret}"` })
    expect(bad.code).toBe(2)
    expect(bad.stderr + bad.stdout).not.toContain(secret)
    const arg = await cli(['keys', 'postgres://app:hunter2-secret@db/x'], base)
    expect(arg.code).toBe(2)
    expect(arg.stderr + arg.stdout).not.toContain('hunter2')
    const help = await cli(['--help'])
    expect(help.code).toBe(0)
    expect(help.stderr + help.stdout).toContain('exit codes: 0 ok, 1')
  })

  it('reads the KMS settings from --kms-file', async () => {
    const path = join(tempDir(), 'vault.db')
    const { env } = await deployment(path)
    const file = join(tempDir(), 'kms.json')
    writeFileSync(file, env.SHAREVAULT_KMS)
    chmodSync(file, 0o600)
    const r = await cli(['keys', '--kms-file', file], { ...env, SHAREVAULT_KMS: undefined })
    expect(r.code).toBe(0)
    expect((await cli(['keys', '--kms-file', join(tempDir(), 'missing.json')], env)).code).toBe(2)
  })

  it('exits 3 when the database cannot be reached, without the password', async () => {
    const r = await cli(['keys'], { ...base, SHAREVAULT_DATABASE: 'postgres://app:hunter2-secret@127.0.0.1:1/nothing?connect_timeout=2' })
    expect(r.code).toBe(3)
    expect(r.stderr).toContain('ERR_DB_UNAVAILABLE')
    expect(r.stderr + r.stdout).not.toContain('hunter2')
  })

  it('never runs DDL: a database without the schema is refused, and stays empty', async () => {
    const path = join(tempDir(), 'empty.db')
    const r = await cli(['keys'], { ...base, SHAREVAULT_DATABASE: path })
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('sharevault migrate')
  })
})

/** The environment for a move from the deployment's key to a new one. */
function moving(env: Record<string, string>, old: Buffer): { env: Record<string, string>; key: Buffer } {
  const key = newKey()
  return { key, env: { ...env, SHAREVAULT_KMS: JSON.stringify({ provider: 'local', key: key.toString('base64'), previous: [{ provider: 'local', key: old.toString('base64') }] }) } }
}

interface KeysJson {
  keys: { state: string; provider: string; keyId: string; records: number }[]
  behind: number
}

describe.each(backends())('sharevault rotate and retire-key on $name', (backend) => {
  it('moves every record to the new key with a plain progress line off a terminal, then retires the old key', async () => {
    const { env, key: old } = await deployment(await backend.database(), 120)
    const next = moving(env, old)
    const r = await cli(['rotate', '--batch', '10'], next.env)
    expect(r.code).toBe(0)
    expect(r.stderr).toMatch(/^rotate: \d+ of 120 records \(\d+%\), \d+\/s/m)
    expect(r.stderr).not.toContain('\x1b[')
    expect(r.stdout).toMatch(/re-wrapped 120 of 120 records/)
    const keys = JSON.parse((await cli(['keys', '--json'], next.env)).stdout) as KeysJson
    expect(keys.behind).toBe(0)
    const retiring = keys.keys.find((k) => k.state === 'decrypt-only')!
    expect(retiring.records).toBe(0)
    const retired = await cli(['retire-key', `${retiring.provider}:${retiring.keyId}`], next.env)
    expect(retired.code).toBe(0)
    const after = JSON.parse((await cli(['keys', '--json'], next.env)).stdout) as KeysJson
    expect(after.keys.find((k) => k.keyId === retiring.keyId)!.state).toBe('retired')
    expect((await cli(['retire-key', 'nonsense'], next.env)).code).toBe(2)
    for (const out of [r, retired]) expect(out.stdout + out.stderr).not.toContain(next.key.toString('base64'))
  })
})

describe('sharevault rotate on a terminal, and interrupted', () => {
  it('draws a progress bar with rate and ETA on a pseudo-terminal', async () => {
    const path = join(tempDir(), 'vault.db')
    const { env, key: old } = await deployment(path, 60)
    const next = moving(env, old)
    // script(1) runs the command on a real pseudo-terminal.
    const command = [process.execPath, CLI, 'rotate', '--reencrypt', '--batch', '5'].map((a) => `'${a}'`).join(' ')
    const { stdout } = await run('script', ['-q', '-e', '-c', command, '/dev/null'], { env: { ...process.env, ...next.env } })
    expect(stdout).toMatch(/rotate \[[\u2588\u2591]+\] \d+% \| \d+\/60 records \| \d+\/s \| ETA /)
    expect(stdout).toMatch(/re-encrypted 60 of 60 records/)
  })

  it('Ctrl-C stops at a batch boundary, says how to resume, and running it again finishes', async () => {
    const path = join(tempDir(), 'vault.db')
    const { env, key: old } = await deployment(path, 1500)
    const next = moving(env, old)
    const child = spawn(process.execPath, [CLI, 'rotate', '--reencrypt', '--batch', '1', '--concurrency', '1'], { env: { ...process.env, ...next.env } })
    let stderr = ''
    let interrupted = false
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
      if (!interrupted && /^rotate: /m.test(stderr)) {
        interrupted = true
        child.kill('SIGINT')
      }
    })
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
    expect(code).toBe(130)
    expect(stderr).toContain('Run the same command again to resume')
    const mid = JSON.parse((await cli(['keys', '--json'], next.env)).stdout) as KeysJson
    expect(mid.behind).toBeGreaterThan(0)
    const again = await cli(['rotate', '--reencrypt', '--batch', '200'], next.env)
    expect(again.code).toBe(0)
    expect((JSON.parse((await cli(['keys', '--json'], next.env)).stdout) as KeysJson).behind).toBe(0)
  })
})

interface ExportEnd {
  checkpoint: { seq: number; hash: string; mac: string; environment: string }
  rows: number
  firstSeq: number | null
  lastSeq: number | null
  lastHash: string | null
  verified: boolean
  brokenAt?: number
}

function exported(text: string): { rows: { seq: number; hash: string; action: string }[]; end: ExportEnd } {
  const lines = text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  return { rows: lines.slice(0, -1) as never, end: lines[lines.length - 1] as never }
}

describe.each(backends())('sharevault audit export on $name', (backend) => {
  it('streams every row as a JSON line and ends with the checkpoint it stopped at', async () => {
    const database = await backend.database()
    const { env, key } = await deployment(database, 3)
    const r = await cli(['audit', 'export', '--jsonl'], env)
    expect(r.code).toBe(0)
    const { rows, end } = exported(r.stdout)
    const vault = await Vault.open({ database, environment: 'ops-test', kms: { provider: 'local', key }, allow: ['audit:read'] })
    const log = await vault.auditLog({ limit: 1000 })
    await vault.close()
    expect(rows.map((x) => x.seq)).toEqual(log.map((x) => x.seq))
    expect(rows.map((x) => x.hash)).toEqual(log.map((x) => x.hash))
    expect(end).toMatchObject({ rows: log.length, lastSeq: end.checkpoint.seq, lastHash: end.checkpoint.hash, verified: true })
    expect(r.stderr).toContain(`exported ${log.length} audit rows`)
    // From a seq, and up to one.
    const from = exported((await cli(['audit', 'export', '--jsonl', '--since-seq', String(log[1].seq)], env)).stdout)
    expect(from.rows.map((x) => x.seq)).toEqual(log.slice(2).map((x) => x.seq))
    const upTo = exported((await cli(['audit', 'export', '--jsonl', '--until', String(log[2].seq)], env)).stdout)
    expect(upTo.rows.map((x) => x.seq)).toEqual(log.slice(0, 3).map((x) => x.seq))
    expect(r.stdout).not.toContain(key.toString('base64'))
  })
})

describe('sharevault audit export: files and a tampered log', () => {
  it('a reader that stops reading ends it with one line, not a stack trace', async () => {
    const { env } = await deployment(join(tempDir(), 'vault.db'), 1500)
    const child = spawn(process.execPath, [CLI, 'audit', 'export', '--jsonl'], { env: { ...process.env, ...env } })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.stdout.once('data', () => child.stdout.destroy())
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
    expect(code).toBe(1)
    expect(stderr).toBe('sharevault: the output was closed before the command finished\n')
  })

  it('writes --out as a new 0600 file and refuses an existing one', async () => {
    const path = join(tempDir(), 'vault.db')
    const { env } = await deployment(path)
    const out = join(tempDir(), 'audit.jsonl')
    const r = await cli(['audit', 'export', '--jsonl', '--out', out], env)
    expect(r.code).toBe(0)
    expect(statSync(out).mode & 0o777).toBe(0o600)
    expect(exported(readFileSync(out, 'utf8')).end.verified).toBe(true)
    expect((await cli(['audit', 'export', '--jsonl', '--out', out], env)).code).toBe(2)
    expect((await cli(['audit', 'export'], env)).code).toBe(2)
    expect((await cli(['audit', 'export', '--jsonl', '--until', 'yesterday'], env)).code).toBe(2)
  })

  it('exports a tampered log as it is, and exits 1 saying where it breaks', async () => {
    const path = join(tempDir(), 'vault.db')
    const { env } = await deployment(path)
    sqlInChild(path, `db.exec("DROP TRIGGER audit_append_only_update; UPDATE audit SET purpose = 'innocent' WHERE seq = 4")`)
    const r = await cli(['audit', 'export', '--jsonl'], env)
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/audit chain BROKEN at seq 4/)
    const { rows, end } = exported(r.stdout)
    expect(rows.length).toBeGreaterThan(4)
    expect(end).toMatchObject({ verified: false, brokenAt: 4 })
  })
})
