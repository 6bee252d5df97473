/**
 * What happened, from the vault's own audit log: for assertions in any test runner. Needs a
 * handle with `audit:read` (a test vault has it unless its `allow` leaves it out).
 */
import type { AuditRecord } from '../types'
import type { Vault } from '../vault'

/** Rows match when every given field is equal (`address` as the vault compares addresses). */
export interface AuditFilter {
  address?: string
  action?: string
  purpose?: string
  actor?: string
  outcome?: string
  walletId?: string
}

const PAGE = 1000

/** Every audit row of the vault's environment that matches `filter`, oldest first. */
export async function auditOf(vault: Vault, filter: AuditFilter = {}): Promise<AuditRecord[]> {
  const out: AuditRecord[] = []
  for (let afterSeq: number | undefined; ; ) {
    const page = await vault.auditLog({ ...(filter.address !== undefined ? { address: filter.address } : {}), ...(afterSeq !== undefined ? { afterSeq } : {}), limit: PAGE })
    for (const r of page) {
      if (filter.action !== undefined && r.action !== filter.action) continue
      if (filter.purpose !== undefined && r.purpose !== filter.purpose) continue
      if (filter.actor !== undefined && r.actor !== filter.actor) continue
      if (filter.outcome !== undefined && r.outcome !== filter.outcome) continue
      if (filter.walletId !== undefined && r.walletId !== filter.walletId) continue
      out.push(r)
    }
    if (page.length < PAGE) return out
    afterSeq = page[page.length - 1].seq
  }
}

export interface Hydrations {
  total: number
  /** Hydrations per purpose (`sign`, `export`, `refresh`, …; `''` for none given). */
  byPurpose: Record<string, number>
  byActor: Record<string, number>
  /** Per outcome: `ok`, `denied`, or the error code. */
  byOutcome: Record<string, number>
  rows: AuditRecord[]
}

/** The hydrations (decryptions of a wallet's shares) that match `filter`, counted. */
export async function hydrationsOf(vault: Vault, filter: Omit<AuditFilter, 'action'> = {}): Promise<Hydrations> {
  const rows = await auditOf(vault, { ...filter, action: 'hydrate' })
  const count = (key: (r: AuditRecord) => string) => {
    const m: Record<string, number> = {}
    for (const r of rows) m[key(r)] = (m[key(r)] ?? 0) + 1
    return m
  }
  return { total: rows.length, byPurpose: count((r) => r.purpose ?? ''), byActor: count((r) => r.actor), byOutcome: count((r) => r.outcome), rows }
}
