//! The append-only, hash-chained audit log: every row's hash covers its fields and the previous
//! row's hash, so deleting, reordering or editing a row breaks the chain at that row.

use sha2::{Digest, Sha256};

/// One audited event. Never carries share material: only who, what, which wallet, why, result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub environment: String,
    pub actor: String,
    pub action: &'static str,
    pub address: String,
    pub wallet_id: Option<String>,
    pub purpose: Option<String>,
    pub outcome: String,
    /// On a write (store, merge, replace, delete): the wallet row's MAC as written (empty for a
    /// delete), so a hydrate can tell the current row from an older copy put back.
    pub wallet_mac: Option<Vec<u8>>,
}

/// Where committed audit entries go besides the database (`onAudit`: a SIEM, a log pipeline).
/// `offer` must never block: it queues the entry or refuses it (a full queue), and a refusal is
/// counted as dropped. The vault's calls never wait for it.
pub trait AuditSink: Send + Sync {
    fn offer(&self, entry: &AuditEntry) -> bool;
}

/// A stored audit row, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at_ms: i64,
    pub environment: String,
    pub actor: String,
    pub action: String,
    pub address: String,
    pub wallet_id: Option<String>,
    pub purpose: Option<String>,
    pub outcome: String,
    pub wallet_mac: Option<Vec<u8>>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    /// The MAC of this row's position (seq and hash) under its environment's integrity key;
    /// `None` on rows written before the log was authenticated.
    pub mac: Option<Vec<u8>>,
}

/// An environment's audit head (the sequence number and hash of its last row) with its MAC:
/// stored with every append, and handed to operators as a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    pub environment: String,
    pub seq: i64,
    pub hash: Vec<u8>,
    pub mac: Vec<u8>,
}

pub const GENESIS: [u8; 32] = [0u8; 32];

/// The audit actions the vault's integrity bookkeeping writes (beside the wallet operations).
/// An operator turned authentication on for rows written before it (schema 1), explicitly.
pub const INTEGRITY_ENABLED: &str = "integrity_enabled";
/// One existing wallet row authenticated by that step; its `wallet_mac` is the row's MAC.
pub const AUTHENTICATED: &str = "authenticate";
/// An operator acknowledged a break of the log (a cut tail, a deleted or rolled-back head) so
/// the environment may write again; the row says what was found, and stays.
pub const BREAK_ACKNOWLEDGED: &str = "audit_break_acknowledged";

const HEAD_MISSING: &str = "the environment's authenticated head is missing (deleted)";

/// The end of the chain: the last row's sequence number and hash (`0` and [`GENESIS`] when the
/// log is empty). Every backend appends through [`ChainHead::link`], so all write the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: Vec<u8>,
}

/// The chain fields of the row that appends an entry after a head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    pub seq: i64,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl ChainHead {
    pub fn genesis() -> ChainHead {
        ChainHead { seq: 0, hash: GENESIS.to_vec() }
    }

    /// The next row's sequence number, previous hash and hash for `e`.
    pub fn link(&self, e: &AuditEntry) -> ChainLink {
        let seq = self.seq + 1;
        ChainLink { seq, prev_hash: self.hash.clone(), hash: entry_hash(&self.hash, seq, e).to_vec() }
    }
}

impl ChainLink {
    /// The head once this row is written.
    pub fn head(&self) -> ChainHead {
        ChainHead { seq: self.seq, hash: self.hash.clone() }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn put(h: &mut Sha256, s: Option<&str>) {
    match s {
        None => h.update([0u8]),
        Some(s) => {
            h.update([1u8]);
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
    }
}

/// The hash of a row: SHA-256 over the previous hash, the sequence number and every field. The
/// wallet MAC, added later, is appended only when present, so rows without one (every row
/// written before it existed) hash exactly as they always did.
#[allow(clippy::too_many_arguments)]
pub fn row_hash(
    prev: &[u8],
    seq: i64,
    at_ms: i64,
    environment: &str,
    actor: &str,
    action: &str,
    address: &str,
    wallet_id: Option<&str>,
    purpose: Option<&str>,
    outcome: &str,
    wallet_mac: Option<&[u8]>,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sharevault/audit/v1");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(at_ms.to_be_bytes());
    for s in [Some(environment), Some(actor), Some(action), Some(address), wallet_id, purpose, Some(outcome)] {
        put(&mut h, s);
    }
    if let Some(m) = wallet_mac {
        h.update([2u8]);
        h.update((m.len() as u64).to_be_bytes());
        h.update(m);
    }
    h.finalize().into()
}

impl AuditRecord {
    /// The hash this row's fields and previous hash give: a row is what it says only if it
    /// equals `hash` (and, for an environment's own rows, its MAC verifies over that hash).
    pub fn computed_hash(&self) -> [u8; 32] {
        row_hash(
            &self.prev_hash,
            self.seq,
            self.at_ms,
            &self.environment,
            &self.actor,
            &self.action,
            &self.address,
            self.wallet_id.as_deref(),
            self.purpose.as_deref(),
            &self.outcome,
            self.wallet_mac.as_deref(),
        )
    }
}

pub fn entry_hash(prev: &[u8], seq: i64, e: &AuditEntry) -> [u8; 32] {
    row_hash(
        prev,
        seq,
        e.at_ms,
        &e.environment,
        &e.actor,
        e.action,
        &e.address,
        e.wallet_id.as_deref(),
        e.purpose.as_deref(),
        &e.outcome,
        e.wallet_mac.as_deref(),
    )
}

/// Result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainCheck {
    pub rows: u64,
    /// The sequence number of the first row that is wrong or missing, if any.
    pub broken_at: Option<i64>,
    /// What is wrong there, in words (no row content).
    pub reason: Option<String>,
    /// The sequence numbers of this environment's authenticated rows that record an operator's
    /// acknowledgement of an earlier break (a cut log or a lost head): the evidence that stays.
    pub acknowledged: Vec<i64>,
}

/// Checks an audit row's MAC: `(seq, hash, mac)`.
pub type RowMacCheck<'a> = dyn Fn(i64, &[u8], &[u8]) -> bool + Sync + 'a;

/// What the verifier holds the log to besides its hash links: rows of `environment` carry a
/// valid MAC from the first one that does on, the authenticated head is in the log with its
/// hash and no row of the environment follows it, and a checkpoint (an earlier head) is still
/// in the log with its hash.
pub struct Expectations<'a> {
    pub environment: &'a str,
    pub row_ok: &'a RowMacCheck<'a>,
    /// The environment's authenticated head; `None` (deleted) is itself a break.
    pub head: Option<&'a SignedHead>,
    pub since: Option<&'a SignedHead>,
}

/// Verifies the log fed to it in sequence order, a page at a time, from the genesis hash: it
/// keeps only the previous hash and what it is still waiting for, so memory stays constant
/// whatever the length of the log.
pub struct ChainVerifier<'a> {
    expect: Expectations<'a>,
    prev: Vec<u8>,
    last_seq: i64,
    rows: u64,
    macs_started: bool,
    head_seen: bool,
    since_seen: bool,
    broken: Option<(i64, String)>,
    acknowledged: Vec<i64>,
}

impl<'a> ChainVerifier<'a> {
    pub fn new(expect: Expectations<'a>) -> ChainVerifier<'a> {
        // A head or checkpoint at seq 0 (an environment before its first row) is the genesis.
        let at_start = |p: Option<&SignedHead>| p.is_some_and(|p| p.seq == 0);
        let mut v = ChainVerifier {
            prev: GENESIS.to_vec(),
            last_seq: 0,
            rows: 0,
            macs_started: false,
            head_seen: at_start(expect.head),
            since_seen: at_start(expect.since),
            broken: None,
            acknowledged: Vec::new(),
            expect,
        };
        for p in [v.expect.head, v.expect.since].into_iter().flatten() {
            if p.seq <= 0 && (p.seq < 0 || p.hash != GENESIS) {
                v.broken = Some((1, "a head at seq 0 must name the genesis hash".to_string()));
            }
        }
        v
    }

    /// The last sequence number fed (where the next page starts).
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    fn fail(&mut self, seq: i64, why: String) {
        if self.broken.is_none() {
            self.broken = Some((seq, why));
        }
    }

    pub fn feed(&mut self, r: &AuditRecord) {
        if self.broken.is_some() {
            return;
        }
        self.rows += 1;
        if r.seq != self.last_seq + 1 {
            return self.fail(self.last_seq + 1, format!("row {} is missing", self.last_seq + 1));
        }
        if r.prev_hash != self.prev || r.hash != r.computed_hash() {
            return self.fail(r.seq, format!("row {} does not chain (changed, or a row before it was)", r.seq));
        }
        self.last_seq = r.seq;
        self.prev = r.hash.clone();
        if r.environment == self.expect.environment {
            match &r.mac {
                Some(m) if (self.expect.row_ok)(r.seq, &r.hash, m) => {
                    self.macs_started = true;
                    if r.action == BREAK_ACKNOWLEDGED {
                        self.acknowledged.push(r.seq);
                    }
                }
                Some(_) => {
                    return self.fail(r.seq, format!("row {} fails its MAC (changed, hashes recomputed)", r.seq))
                }
                None if self.macs_started => {
                    return self.fail(r.seq, format!("row {} has no MAC though the rows before it do", r.seq))
                }
                None => {}
            }
            if let Some(h) = self.expect.head.filter(|h| r.seq > h.seq) {
                return self.fail(
                    r.seq,
                    format!("row {} follows the authenticated head (seq {}): the head was put back", r.seq, h.seq),
                );
            }
        }
        for (which, point) in [("head", self.expect.head), ("checkpoint", self.expect.since)] {
            if let Some(p) = point.filter(|p| p.seq == r.seq) {
                if p.hash != r.hash {
                    return self.fail(r.seq, format!("row {} is not the row the {which} names", r.seq));
                }
                if which == "head" {
                    self.head_seen = true;
                } else {
                    self.since_seen = true;
                }
            }
        }
    }

    /// The verdict once every row was fed.
    pub fn finish(mut self) -> ChainCheck {
        let end = self.last_seq;
        if let Some(h) = self.expect.head.filter(|_| !self.head_seen) {
            self.fail(
                end + 1,
                format!("the log ends at row {end} but the authenticated head is row {}: rows were deleted", h.seq),
            );
        }
        if self.expect.head.is_none() {
            self.fail(end + 1, HEAD_MISSING.to_string());
        }
        if let Some(c) = self.expect.since.filter(|_| !self.since_seen) {
            self.fail(
                (end + 1).min(c.seq),
                format!("the log no longer reaches the checkpoint's row {}: it was rolled back or cut", c.seq),
            );
        }
        let (broken_at, reason) = match self.broken {
            Some((seq, why)) => (Some(seq), Some(why)),
            None => (None, None),
        };
        ChainCheck { rows: self.rows, broken_at, reason, acknowledged: self.acknowledged }
    }
}

/// Verifies rows in sequence order by their hash links only (no key, no head): what anyone can
/// check.
pub fn verify<'a>(rows: impl IntoIterator<Item = &'a AuditRecord>) -> ChainCheck {
    let no_mac = |_: i64, _: &[u8], _: &[u8]| false;
    let mut v = ChainVerifier::new(Expectations { environment: "", row_ok: &no_mac, head: None, since: None });
    for r in rows {
        v.feed(r);
    }
    let mut check = v.finish();
    // Without a key there is no head to expect.
    if check.reason.as_deref() == Some(HEAD_MISSING) {
        check.broken_at = None;
        check.reason = None;
    }
    check
}
