/**
 * Matchers over the kit's helpers, for any runner with jest's `expect.extend` (jest, vitest):
 * `sharevault/testing/jest` installs them in jest and types them; vitest users pass
 * `sharevaultMatchers` to `expect.extend` (README, "Testing your code"). A failure message never
 * prints the received value (it may hold a share): only which wallet's share was found, where.
 */
import { auditOf, type AuditFilter } from './audit'
import { findShares, type ShareFingerprints, type ShareSource } from './leaks'
import type { Vault } from '../vault'

export interface AuditExpectation extends AuditFilter {
  /** Exactly this many matching rows (default: at least one). */
  times?: number
}

/** The matchers' signatures, for a runner's `Matchers` / `Assertion` interface. */
export interface SharevaultMatchers<R = unknown> {
  /** `await expect(vault).toHaveAudited({ address, action: 'hydrate', purpose: 'sign' })`: a matching audit row exists (or exactly `times`). */
  toHaveAudited(expected: AuditExpectation): Promise<R>
  /** `expect(value).not.toContainShareOf(vault)`: no share of the sources' wallets is anywhere in the value (see `findShares`). */
  toContainShareOf(...sources: (ShareSource | ShareFingerprints)[]): R
}

interface Context {
  isNot?: boolean
}

interface Result {
  pass: boolean
  message: () => string
}

function describeFilter(f: AuditFilter): string {
  const parts = Object.entries(f)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
  return `{ ${parts.join(', ')} }`
}

function isVault(v: unknown): v is Vault {
  return v !== null && typeof v === 'object' && typeof (v as { auditLog?: unknown }).auditLog === 'function'
}

export const sharevaultMatchers = {
  async toHaveAudited(this: Context, received: unknown, expected: AuditExpectation): Promise<Result> {
    if (!isVault(received)) return { pass: false, message: () => 'toHaveAudited: the received value is not a vault' }
    const { times, ...filter } = expected ?? {}
    const rows = await auditOf(received, filter)
    const pass = times === undefined ? rows.length > 0 : rows.length === times
    const want = times === undefined ? 'an audit row' : `${times} audit row${times === 1 ? '' : 's'}`
    const near = (await auditOf(received, filter.address !== undefined ? { address: filter.address } : {})).slice(-10)
    const context = near.length
      ? `\nthe last rows${filter.address !== undefined ? ' of the wallet' : ''}:\n${near.map((r) => `  #${r.seq} ${r.action}${r.purpose ? ` (${r.purpose})` : ''} by ${r.actor}: ${r.outcome}`).join('\n')}`
      : '\nthe log holds no row for it'
    return {
      pass,
      message: () => (pass ? `expected no ${want.replace(/^an? /, '')} matching ${describeFilter(filter)}, found ${rows.length}` : `expected ${want} matching ${describeFilter(filter)}, found ${rows.length}${context}`),
    }
  },

  toContainShareOf(this: Context, received: unknown, ...sources: (ShareSource | ShareFingerprints)[]): Result {
    const found = findShares(received, ...sources)
    const pass = found.length > 0
    const list = found
      .slice(0, 10)
      .map((s) => `  share ${s.share} of ${s.wallet} at ${s.path} (${s.encoding})`)
      .join('\n')
    return {
      pass,
      message: () => (pass ? `expected no key share in the value (it is not printed), found ${found.length}:\n${list}` : 'expected a key share of the given sources in the value, found none'),
    }
  },
}
