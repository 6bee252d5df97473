// The fault soak's model of a worker's wallets, rebuilt from its history (bench/soak-worker.js
// writes it; bench/soak.js checks the database against it at the end). Each wallet is one of its
// worker's own, and that worker runs one call on it at a time, so its history is sequential:
//   accept:   the share digests a hydrate may return (the acknowledged one, plus any write whose
//             answer was never heard or was an error that may have committed);
//   absentOk: whether the wallet may be missing (a store or delete whose answer is uncertain);
//   state:    'live' or 'deleted' (an acknowledged delete: it must never come back).

const { createHash } = require('node:crypto')

/**
 * Errors after which a write may or may not have committed (the answer was lost). Any other
 * error says the write was not made, and the model holds the vault to it: `ERR_CLOSED` (a handle
 * closed under its call) included, since a call is either refused before it starts or waited for.
 */
const AMBIGUOUS = new Set(['ERR_DB_UNAVAILABLE', 'ERR_STORAGE', 'ERR_INTERNAL', 'ERR_UNPERSISTED_SHARES', 'unknown'])

function applyLine(wallets, e) {
  const w = wallets.get(e.a)
  if (e.k === 'fail' && e.code === 'ERR_NOT_FOUND' && w?.absentOk) {
    // A wallet whose store or delete was never answered, found missing: it is gone.
    Object.assign(w, { state: 'deleted', accept: [], pending: undefined })
    return
  }
  switch (`${e.k} ${e.op ?? ''}`.trim()) {
    case 'intent store':
      // `sdk`: created through sharevault/dynamic (its scheme may change by a reshare).
      wallets.set(e.a, { state: 'live', accept: [e.d], absentOk: true, pending: e.d, sdk: e.sdk === true })
      break
    case 'ack store':
      if (w) Object.assign(w, { accept: [w.pending], absentOk: false, pending: undefined })
      break
    case 'fail store':
      // Refused: the wallet must not be there (the final check reads it).
      if (w && !AMBIGUOUS.has(e.code)) Object.assign(w, { state: 'deleted', accept: [], absentOk: true, pending: undefined })
      break
    case 'intent replace':
      if (w) Object.assign(w, { accept: [...w.accept, e.d], pending: e.d })
      break
    case 'ack replace':
      // `planted`: the self-test's replace that was never made (the worker leaves it alone).
      if (w) Object.assign(w, { accept: [w.pending], pending: undefined, planted: e.planted === true })
      break
    case 'fail replace':
      if (w && !AMBIGUOUS.has(e.code)) Object.assign(w, { accept: w.accept.filter((d) => d !== w.pending), pending: undefined })
      break
    case 'intent delete':
      if (w) w.absentOk = true
      break
    case 'ack delete':
      if (w) Object.assign(w, { state: 'deleted', accept: [], absentOk: true })
      break
    case 'fail delete':
      if (w && !AMBIGUOUS.has(e.code)) w.absentOk = false
      break
    case 'seen':
      // A hydrate answered with these shares: the uncertainty is resolved.
      if (w) Object.assign(w, { accept: [e.d], absentOk: false })
      break
    case 'gone':
      // A wallet whose store or delete was uncertain turned out not to be there.
      if (w) Object.assign(w, { state: 'deleted', accept: [], absentOk: true })
      break
    case 'ack hydrate':
      if (w) w.hydrates = (w.hydrates ?? 0) + 1
      break
  }
}

/** What the history keeps of a wallet's shares: a SHA-256 of their secret parts, never the shares. */
function digest(shares) {
  return createHash('sha256').update(shares.map((s) => s.secretShare).join('\n')).digest('hex')
}

/** A small seeded PRNG (mulberry32): the same seed draws the same schedule and the same mix. */
function mulberry32(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

module.exports = { applyLine, digest, mulberry32 }
