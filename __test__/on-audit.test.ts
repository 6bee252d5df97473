// onAudit: each committed audit entry is forwarded to the caller's log pipeline without ever
// slowing a call: a bounded queue, drops counted in stats(), a throwing handler swallowed.
import { Vault, ALL_PERMISSIONS } from '../lib'
import type { AuditEvent } from '../lib'
import { fakeCreatedWallet } from '../lib/testing'
import { newKey, vaultError } from './support/helpers'

function open(onAudit: unknown): Promise<Vault> {
  return Vault.open({ database: ':memory:', environment: 'test', kms: { provider: 'local', key: newKey() }, allow: ALL_PERMISSIONS, onAudit: onAudit as (e: AuditEvent) => void })
}

/** Waits (up to 20 s) until every queued entry has reached the handler: N-API delivers them from
 * the event loop in chunks, so how long that takes depends on how busy the machine is. */
async function settle(vault: Vault): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    const s = vault.stats().onAudit
    if (s.delivered + s.failed === s.queued) return
    await new Promise((r) => setTimeout(r, 10))
  }
}

describe('onAudit', () => {
  it('receives every committed entry, shaped like auditLog rows, with no share material', async () => {
    const seen: AuditEvent[] = []
    const vault = await open((e: AuditEvent) => seen.push(e))
    const w = fakeCreatedWallet('EVM')
    const address = w.walletMetadata.accountAddress
    await vault.storeWallet(w, { actor: 'onboarding' })
    await vault.withWallet(address, () => 1, { purpose: 'sign', actor: 'payments' })
    await vaultError(vault.withWallet('0x' + '9'.repeat(40), () => 1, { purpose: 'sign' }))
    await settle(vault)
    const log = await vault.auditLog()
    expect(seen.map((e) => [e.action, e.actor, e.purpose ?? null, e.outcome])).toEqual(log.map((r) => [r.action, r.actor, r.purpose ?? null, r.outcome]))
    expect(seen[0].at).toBeInstanceOf(Date)
    // Opening's registration of the key in the keyring is an entry like any other.
    expect(seen[0]).toMatchObject({ environment: 'test', action: 'key_registered' })
    expect(seen[2]).toMatchObject({ environment: 'test', action: 'hydrate', address: address.toLowerCase(), walletId: w.walletMetadata.walletId })
    const text = JSON.stringify(seen)
    for (const s of w.externalServerKeyShares) expect(text.includes(s.secretShare)).toBe(false)
    expect(vault.stats().onAudit).toEqual({ queued: 4, dropped: 0, delivered: 4, failed: 0 })
    await vault.close()
  })

  it('drops entries (counted) rather than wait when the handler holds up the JS thread', async () => {
    let first = true
    let vault: Vault | undefined
    const handler = (e: AuditEvent) => {
      // The first hydrate's entry (not the store's, which may arrive before the hydrates are
      // even issued): every hydrate is in flight by then.
      if (first && e.action === 'hydrate') {
        first = false
        // A handler stuck on the JS thread: the queue fills behind it. Held until the vault has
        // dropped an entry (its counters are read without the JS thread's help), not for a fixed
        // time, which a loaded machine may not fill the queue in.
        const until = Date.now() + 30_000
        while (vault!.stats().onAudit.dropped === 0 && Date.now() < until) {
          // spin
        }
      }
    }
    vault = await open(handler)
    const v = vault
    const w = fakeCreatedWallet('EVM')
    await v.storeWallet(w)
    const n = 6000
    const results = await Promise.all(Array.from({ length: n }, () => v.withWallet(w.walletMetadata.accountAddress, () => 1, { purpose: 'sign' })))
    expect(results).toHaveLength(n)
    await settle(v)
    const s = v.stats().onAudit
    expect(s.queued + s.dropped).toBe(n + 2) // the key's registration, the store, the hydrates
    expect(s.dropped).toBeGreaterThan(0)
    expect(s.delivered).toBe(s.queued)
    expect(await v.auditLog({ afterSeq: n + 1, limit: 10 })).toHaveLength(1) // the log itself has every row
    await v.close()
  })

  it('swallows a handler that throws, and counts it', async () => {
    const vault = await open(() => {
      throw new Error('SIEM down')
    })
    await vault.storeWallet(fakeCreatedWallet('EVM'))
    await settle(vault)
    expect(vault.stats().onAudit).toMatchObject({ queued: 2, delivered: 0, failed: 2 }) // the key's registration and the store
    await vault.close()
  })

  it('refuses an onAudit that is not a function', async () => {
    const e = await vaultError(open('console.log'))
    expect([e.code, e.path]).toEqual(['ERR_INVALID_INPUT', 'onAudit'])
  })
})
