// SECURITY.md's runbooks, run end to end: each drill follows its runbook's numbered steps with
// the commands and SDK calls it names, against the SDK contract fakes, and asserts the end state.
// A runbook and its drill change together.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Vault } from '../lib'
import type { KmsOptions, ServerKeyShare, WalletMetadata } from '../lib'
import { vaulted } from '../lib/dynamic'
import { auditOf, FakeEvmWalletClient } from '../lib/testing'
import { cli } from './support/cli'
import { cleanup, newKey, tempDir, vaultError } from './support/helpers'
import { sqlInChild } from './support/sql'

afterEach(cleanup)

const ENVIRONMENT = 'payments-ops'
const local = (key: Buffer): KmsOptions => ({ provider: 'local', key: key.toString('base64') })

/** A running service: a vault on a file, the SDK fake, and three wallets created through the wrapper. */
async function service(environment = ENVIRONMENT, key = newKey()) {
  const database = join(tempDir(), 'vault.db')
  const sdk = new FakeEvmWalletClient()
  const open = (kms: KmsOptions, actor = 'service') => Vault.open({ database, environment, kms, actor, allow: ['store', 'hydrate:sign', 'replace', 'backup', 'audit:read', 'delete'] })
  const vault = await open(local(key))
  const client = vaulted(sdk, vault)
  const addresses: string[] = []
  for (let i = 0; i < 3; i++) addresses.push((await client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' })).walletMetadata.accountAddress)
  await vault.close()
  const env = (kms: KmsOptions, actor = 'ops:drill:INC-1') => ({ SHAREVAULT_DATABASE: database, SHAREVAULT_ENVIRONMENT: environment, SHAREVAULT_KMS: JSON.stringify(kms), SHAREVAULT_ACTOR: actor })
  return { database, key, sdk, open, addresses, env }
}

type State = { walletMetadata: WalletMetadata; externalServerKeyShares: ServerKeyShare[] }
async function stateOf(vault: Vault, address: string): Promise<State> {
  return vault.withWallet(address, (w) => ({ walletMetadata: w.walletMetadata, externalServerKeyShares: w.externalServerKeyShares }), { purpose: 'sign' })
}

/** The evidence every runbook starts with: a checkpoint and an export, kept outside the database. */
async function evidence(env: Record<string, string>): Promise<string> {
  const dir = tempDir()
  const checkpoint = join(dir, 'checkpoint-before.json')
  const cp = await cli(['checkpoint'], env)
  expect(cp.code).toBe(0)
  writeFileSync(checkpoint, cp.stdout)
  expect((await cli(['audit', 'export', '--jsonl', '--out', join(dir, 'audit-before.jsonl')], env)).code).toBe(0)
  return checkpoint
}

interface KeysJson {
  keys: { state: string; provider: string; keyId: string; records: number }[]
  behind: number
}
const keysOf = async (env: Record<string, string>) => JSON.parse((await cli(['keys', '--json'], env)).stdout) as KeysJson

describe('SECURITY.md runbook drills', () => {
  it('1. the KEK is suspected compromised', async () => {
    const s = await service()
    const before = await evidence(s.env(local(s.key)))
    // 1-2. A new key as primary, the old one as previous; the service is redeployed with it.
    const next = newKey()
    const moving: KmsOptions = { ...local(next), previous: [local(s.key)] }
    const vault = await s.open(moving)
    const oldState = await stateOf(vault, s.addresses[0])
    // 3. Re-encrypt every record under the new key.
    const rotated = await cli(['rotate', '--reencrypt'], s.env(moving))
    expect(rotated.code).toBe(0)
    // 4. Refresh every wallet's shares: the old ones stop signing.
    const client = vaulted(s.sdk, vault, { actor: 'ops:drill:INC-1' })
    for (const w of await vault.listWallets()) await client.refreshWalletAccountShares({ accountAddress: w.accountAddress })
    await expect(s.sdk.signMessage({ ...oldState, message: 'm' })).rejects.toThrow(/not current/)
    expect(typeof (await client.signMessage({ accountAddress: s.addresses[0], message: 'm' }))).toBe('string')
    // 5. The old key holds nothing: retired.
    const keys = await keysOf(s.env(moving))
    const old = keys.keys.find((k) => k.state === 'decrypt-only')!
    expect(old.records).toBe(0)
    expect((await cli(['retire-key', `${old.provider}:${old.keyId}`], s.env(moving))).code).toBe(0)
    await vault.close()
    // 6-7. Without the old key: the chain verifies from the checkpoint, and the old key opens nothing.
    expect((await cli(['audit', 'verify', '--since', before], s.env(local(next)))).code).toBe(0)
    const refused = await vaultError(s.open(local(s.key)))
    expect(['ERR_KMS_DENIED', 'ERR_TAMPERED']).toContain(refused.code)
    const audit = await Vault.open({ database: s.database, environment: ENVIRONMENT, kms: local(next), allow: ['audit:read'] }).then(async (v) => {
      const rows = await auditOf(v)
      await v.close()
      return rows
    })
    const step = (action: string) => audit.filter((r) => r.action === action).map((r) => r.actor)
    expect(step('key_registered')).toContain('service')
    expect(step('reencrypt_started')).toEqual(['ops:drill:INC-1'])
    expect(step('replace_shares').filter((a) => a === 'ops:drill:INC-1')).toHaveLength(3)
    expect(step('key_retired')).toEqual(['ops:drill:INC-1'])
  })

  it('2. the database or a backup was copied', async () => {
    const s = await service()
    const before = await evidence(s.env(local(s.key)))
    const copy = join(tempDir(), 'copy.db')
    sqlInChild(s.database, `db.exec("VACUUM INTO '${copy}'")`)
    // 2. Refresh every wallet: the copy's shares stop signing.
    const vault = await s.open(local(s.key))
    const client = vaulted(s.sdk, vault, { actor: 'ops:drill:INC-2' })
    for (const a of s.addresses) await client.refreshWalletAccountShares({ accountAddress: a })
    // 3. Fresh data keys for every record.
    expect((await cli(['rotate', '--reencrypt'], s.env(local(s.key)))).code).toBe(0)
    // 4. The chain verifies from the checkpoint.
    expect((await cli(['audit', 'verify', '--since', before], s.env(local(s.key)))).code).toBe(0)
    await vault.close()
    // The copy, even opened with the KEK (the worst case), holds shares the SDK no longer takes.
    const stolen = await Vault.open({ database: copy, environment: ENVIRONMENT, kms: local(s.key), allow: ['hydrate:sign'] })
    const state = await stateOf(stolen, s.addresses[1])
    await stolen.close()
    await expect(s.sdk.signMessage({ ...state, message: 'm' })).rejects.toThrow(/not current/)
  })

  it('3. an application host was compromised', async () => {
    const s = await service()
    const before = await evidence(s.env(local(s.key)))
    const cp = JSON.parse((await cli(['checkpoint'], s.env(local(s.key)))).stdout) as { seq: number }
    // The compromised process hydrates one wallet (the window after the last trusted checkpoint).
    const host = await s.open(local(s.key), 'host-7')
    const held = await stateOf(host, s.addresses[2])
    await host.close()
    // 2. Export the window; 3. every wallet hydrated in it gets new shares.
    const dir = tempDir()
    expect((await cli(['audit', 'export', '--jsonl', '--since-seq', String(cp.seq), '--out', join(dir, 'window.jsonl')], s.env(local(s.key)))).code).toBe(0)
    const rows = (await import('node:fs')).readFileSync(join(dir, 'window.jsonl'), 'utf8').trim().split('\n').slice(0, -1).map((l) => JSON.parse(l) as { action: string; address: string; actor: string })
    const exposed = [...new Set(rows.filter((r) => r.action === 'hydrate').map((r) => r.address))]
    expect(exposed).toEqual([s.addresses[2].toLowerCase()])
    expect(rows.find((r) => r.action === 'hydrate')!.actor).toBe('host-7')
    const vault = await s.open(local(s.key))
    const client = vaulted(s.sdk, vault, { actor: 'ops:drill:INC-3' })
    for (const a of exposed) await client.refreshWalletAccountShares({ accountAddress: a })
    await expect(s.sdk.signMessage({ ...held, message: 'm' })).rejects.toThrow(/not current/)
    // 5. Least privilege: a signing handle cannot export.
    const signer = await Vault.open({ database: s.database, environment: ENVIRONMENT, kms: local(s.key), allow: ['hydrate:sign'] })
    expect((await vaultError(signer.withWallet(s.addresses[0], () => 1, { purpose: 'export' }))).code).toBe('ERR_FORBIDDEN')
    await Promise.all([signer.close(), vault.close()])
    // 6.
    expect((await cli(['audit', 'verify', '--since', before], s.env(local(s.key)))).code).toBe(0)
  })

  it('4. one wallet\'s shares leaked', async () => {
    const s = await service()
    await evidence(s.env(local(s.key)))
    const vault = await s.open(local(s.key))
    const leaked = await stateOf(vault, s.addresses[0])
    const untouched = await stateOf(vault, s.addresses[1])
    // 1. Refresh that wallet: the leaked shares stop signing.
    const client = vaulted(s.sdk, vault, { actor: 'ops:drill:INC-4' })
    await client.refreshWalletAccountShares({ accountAddress: s.addresses[0] })
    await expect(s.sdk.signMessage({ ...leaked, message: 'm' })).rejects.toThrow(/not current/)
    expect(typeof (await client.signMessage({ accountAddress: s.addresses[0], message: 'm' }))).toBe('string')
    // Other wallets are not affected.
    expect(typeof (await s.sdk.signMessage({ ...untouched, message: 'm' }))).toBe('string')
    // 3. The wallet's history names who hydrated it.
    const history = await auditOf(vault, { address: s.addresses[0] })
    expect(history.map((r) => r.action)).toEqual(['store', 'hydrate', 'hydrate', 'replace_shares', 'hydrate'])
    await vault.close()
  })

  it('5. the audit chain verification fails: the head cut away', async () => {
    const s = await service()
    await evidence(s.env(local(s.key)))
    const vault = await Vault.open({ database: s.database, environment: ENVIRONMENT, kms: local(s.key), actor: 'ops:drill:INC-5', allow: ['hydrate:sign', 'audit:read', 'integrity:admin'] })
    await stateOf(vault, s.addresses[0])
    sqlInChild(s.database, `db.exec("DROP TRIGGER IF EXISTS audit_append_only_delete; DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)")`)
    // Every write is refused until an operator acts.
    expect((await vaultError(stateOf(vault, s.addresses[0]))).code).toBe('ERR_TAMPERED')
    // 1. The first bad seq and the reason; 2. the evidence, exported as it is.
    const verify = await cli(['audit', 'verify', '--json'], s.env(local(s.key)))
    expect(verify.code).toBe(1)
    const broken = JSON.parse(verify.stdout) as { ok: boolean; brokenAt: number; reason: string }
    expect(broken.ok).toBe(false)
    const dir = tempDir()
    const exported = await cli(['audit', 'export', '--jsonl', '--out', join(dir, 'evidence.jsonl')], s.env(local(s.key)))
    expect(exported.code).toBe(1)
    expect(exported.stderr).toContain(`BROKEN at seq ${broken.brokenAt}`)
    // 4. Acknowledged by an operator: writes resume; 5. verified, the acknowledgement listed.
    await vault.acknowledgeAuditBreak('INC-5: the last row was deleted outside sharevault; compared with the SIEM copy')
    await stateOf(vault, s.addresses[0])
    await vault.close()
    const checked = await cli(['audit', 'verify', '--json'], s.env(local(s.key)))
    expect(checked.code).toBe(0)
    expect((JSON.parse(checked.stdout) as { acknowledged?: number[] }).acknowledged).toHaveLength(1)
    // 6. A new checkpoint, from which the chain verifies.
    const last = join(dir, 'checkpoint-after.json')
    writeFileSync(last, (await cli(['checkpoint'], s.env(local(s.key)))).stdout)
    expect((await cli(['audit', 'verify', '--since', last], s.env(local(s.key)))).code).toBe(0)
  })

  it('5. the audit chain verification fails: a row in the middle changed (it stays reported)', async () => {
    const s = await service()
    const vault = await Vault.open({ database: s.database, environment: ENVIRONMENT, kms: local(s.key), actor: 'ops:drill:INC-5', allow: ['hydrate:sign', 'audit:read', 'integrity:admin'] })
    await stateOf(vault, s.addresses[0])
    const [row] = await auditOf(vault, { action: 'hydrate', address: s.addresses[0] })
    sqlInChild(s.database, `db.exec("DROP TRIGGER audit_append_only_update; UPDATE audit SET actor = 'nobody' WHERE seq = ${row.seq}")`)
    const verify = JSON.parse((await cli(['audit', 'verify', '--json'], s.env(local(s.key)))).stdout) as { brokenAt: number }
    expect(verify.brokenAt).toBe(row.seq)
    // Writes go on (the head is intact), and the break cannot be acknowledged away: it stays the evidence.
    await stateOf(vault, s.addresses[1])
    expect((await vaultError(vault.acknowledgeAuditBreak('INC-5'))).message).toMatch(/nothing to acknowledge/)
    expect((JSON.parse((await cli(['audit', 'verify', '--json'], s.env(local(s.key)))).stdout) as { brokenAt: number }).brokenAt).toBe(row.seq)
    await vault.close()
  })

  it('6. an environment\'s key was used for another environment', async () => {
    // Production and staging, each in its own database, staging wrongly on production's key.
    const prod = await service('payments-main')
    const staging = await service('payments-staging', prod.key)
    // In one database the vault refuses a shared key outright.
    const refused = await vaultError(Vault.open({ database: prod.database, environment: 'payments-staging', kms: { provider: 'local', key: prod.key } }))
    expect(refused.code).toBe('ERR_ENVIRONMENT_MISMATCH')
    // Across databases only the keyrings show it: the same key in both.
    const same = (await keysOf(staging.env(local(prod.key)))).keys[0].keyId
    expect((await keysOf(prod.env(local(prod.key)))).keys[0].keyId).toBe(same)
    // Across databases: staging moves to a key of its own (steps 1-3) ...
    const own = newKey()
    const moving: KmsOptions = { ...local(own), previous: [local(prod.key)] }
    await (await staging.open(moving)).close()
    expect((await cli(['rotate', '--reencrypt'], staging.env(moving))).code).toBe(0)
    const keys = await keysOf(staging.env(moving))
    const old = keys.keys.find((k) => k.state === 'decrypt-only')!
    expect(old.records).toBe(0)
    expect((await cli(['retire-key', `${old.provider}:${old.keyId}`], staging.env(moving))).code).toBe(0)
    expect((await keysOf(staging.env(local(own)))).keys.filter((k) => k.state !== 'retired').map((k) => k.state)).toEqual(['primary'])
    // ... and production rotates its KEK (runbook 1, steps 2-5).
    const prodNext: KmsOptions = { ...local(newKey()), previous: [local(prod.key)] }
    await (await prod.open(prodNext)).close()
    expect((await cli(['rotate', '--reencrypt'], prod.env(prodNext))).code).toBe(0)
    expect((await keysOf(prod.env(prodNext))).behind).toBe(0)
    // 5.
    expect((await cli(['audit', 'verify'], staging.env(local(own)))).code).toBe(0)
    expect((await cli(['audit', 'verify'], prod.env(prodNext))).code).toBe(0)
  })
})
