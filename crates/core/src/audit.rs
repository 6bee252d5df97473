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
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

pub const GENESIS: [u8; 32] = [0u8; 32];

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

/// The hash of a row: SHA-256 over the previous hash, the sequence number and every field.
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
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sharevault/audit/v1");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(at_ms.to_be_bytes());
    for s in [Some(environment), Some(actor), Some(action), Some(address), wallet_id, purpose, Some(outcome)] {
        put(&mut h, s);
    }
    h.finalize().into()
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
    )
}

/// Result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainCheck {
    pub rows: u64,
    /// The sequence number of the first row that does not chain, if any.
    pub broken_at: Option<i64>,
}

/// Verifies rows in sequence order, starting from the genesis hash.
pub fn verify<'a>(rows: impl IntoIterator<Item = &'a AuditRecord>) -> ChainCheck {
    let mut prev: Vec<u8> = GENESIS.to_vec();
    let mut n = 0;
    for r in rows {
        n += 1;
        let expect = row_hash(
            &prev,
            r.seq,
            r.at_ms,
            &r.environment,
            &r.actor,
            &r.action,
            &r.address,
            r.wallet_id.as_deref(),
            r.purpose.as_deref(),
            &r.outcome,
        );
        if r.prev_hash != prev || r.hash != expect {
            return ChainCheck { rows: n, broken_at: Some(r.seq) };
        }
        prev = r.hash.clone();
    }
    ChainCheck { rows: n, broken_at: None }
}
