//! Row mapping: the column lists, SQLite rows to store types, and the statements that write
//! one wallet row or one audit row. The audit chain's arithmetic is `audit::ChainHead`'s.

use super::db_err;
use crate::audit::{AuditEntry, AuditRecord, ChainHead, SignedHead};
use crate::envelope::{KekRef, SealedRecord};
use crate::error::{Error, ErrorCode, Result};
use crate::integrity::IntegrityKey;
use crate::keyring::{KeyState, KeyringEntry};
use crate::store::{Applied, Change, MetadataRow, WalletRow};
use rusqlite::{params, Connection, OptionalExtension, Row};

/// Ends one row's rotation lease: its re-wrap committed, or its rotator gave it up.
pub(super) const END_CLAIM: &str = "DELETE FROM rotation_claims WHERE environment = ?1 AND address_key = ?2";

/// The seq of the audit row that records a wallet's latest write in its own environment (see
/// `WalletRow::state`), through the partial index `audit_wallet_states` on (environment,
/// address, seq), named so no other index is ever used (an earlier query that SQLite planned
/// over another index read far more than the wallet's writes: filling 10,000 hydrates of one
/// wallet took 15.8 s, 0.6 s after). A scalar subquery, and the row itself is read by its seq in
/// a second statement: as a `LEFT JOIN audit s ON s.seq = (…)` SQLite re-prepared the whole
/// statement on every use (its bindings cleared between uses expire it; measured with
/// `SQLITE_STMTSTATUS_REPREPARE`: 149 of 150 runs), which cost metadata reads four fifths of
/// their throughput.
macro_rules! state_seq {
    () => {
        "(SELECT a.seq FROM audit a INDEXED BY audit_wallet_states WHERE a.environment = w.environment \
         AND a.address = w.address_key AND a.wallet_mac IS NOT NULL ORDER BY a.seq DESC LIMIT 1)"
    };
}
/// `SELECT … FROM wallets w`, the state's seq last: add the `WHERE`.
pub(super) const SELECT_WALLETS: &str = concat!(
    "SELECT w.address, w.address_key, w.wallet_id, w.chain_name, w.environment, w.metadata, w.version, w.generation, \
     w.format, w.alg, w.kek_provider, w.kek_key_id, w.kek_key_version, w.wrapped_dek, w.nonce, w.ciphertext, w.mac, \
     w.sealed_digest, w.wrapped_at, w.sealed_at, ",
    state_seq!(),
    " FROM wallets w"
);
pub(super) const SELECT_METADATA: &str = concat!(
    "SELECT w.address, w.address_key, w.wallet_id, w.chain_name, w.environment, w.metadata, w.version, w.generation, \
     w.sealed_digest, w.mac, ",
    state_seq!(),
    " FROM wallets w"
);
pub(super) const AUDIT_COLUMNS: &str =
    "seq, at, environment, actor, action, address, wallet_id, purpose, outcome, wallet_mac, prev_hash, hash, mac";

fn kek_of(r: &Row<'_>, base: usize) -> rusqlite::Result<KekRef> {
    Ok(KekRef { provider: r.get(base)?, key_id: r.get(base + 1)?, key_version: r.get(base + 2)? })
}

/// A wallet row and the seq of its state row (read with `with_state`).
pub(super) fn wallet_from_row(r: &Row<'_>) -> rusqlite::Result<(WalletRow, Option<i64>)> {
    let row = WalletRow {
        address: r.get(0)?,
        address_key: r.get(1)?,
        wallet_id: r.get(2)?,
        chain_name: r.get(3)?,
        environment: r.get(4)?,
        metadata_json: r.get(5)?,
        version: r.get(6)?,
        generation: r.get(7)?,
        sealed: SealedRecord {
            format: r.get(8)?,
            alg: r.get(9)?,
            kek: kek_of(r, 10)?,
            wrapped_dek: r.get(13)?,
            nonce: r.get(14)?,
            ciphertext: r.get(15)?,
            wrapped_at: r.get(18)?,
            sealed_at: r.get(19)?,
        },
        mac: r.get(16)?,
        sealed_digest: r.get(17)?,
        state: None,
    };
    Ok((row, r.get(20)?))
}

/// A metadata row and the seq of its state row (read with `with_state`).
pub(super) fn meta_from_row(r: &Row<'_>) -> rusqlite::Result<(MetadataRow, Option<i64>)> {
    let row = MetadataRow {
        address: r.get(0)?,
        address_key: r.get(1)?,
        wallet_id: r.get(2)?,
        chain_name: r.get(3)?,
        environment: r.get(4)?,
        metadata_json: r.get(5)?,
        version: r.get(6)?,
        generation: r.get(7)?,
        sealed_digest: r.get(8)?,
        mac: r.get(9)?,
        state: None,
    };
    Ok((row, r.get(10)?))
}

pub(super) fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    audit_at(r, 0)
}

fn audit_at(r: &Row<'_>, b: usize) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get(b)?,
        at_ms: r.get(b + 1)?,
        environment: r.get(b + 2)?,
        actor: r.get(b + 3)?,
        action: r.get(b + 4)?,
        address: r.get(b + 5)?,
        wallet_id: r.get(b + 6)?,
        purpose: r.get(b + 7)?,
        outcome: r.get(b + 8)?,
        wallet_mac: r.get(b + 9)?,
        prev_hash: r.get(b + 10)?,
        hash: r.get(b + 11)?,
        mac: r.get(b + 12)?,
    })
}

/// A row read with the seq of its state row (`WalletRow`, `MetadataRow`).
pub(super) trait WithState {
    fn set_state(&mut self, state: Option<AuditRecord>);
}

impl WithState for WalletRow {
    fn set_state(&mut self, state: Option<AuditRecord>) {
        self.state = state;
    }
}

impl WithState for MetadataRow {
    fn set_state(&mut self, state: Option<AuditRecord>) {
        self.state = state;
    }
}

/// Each row with its state row, read by seq (append-only, so reading it after the wallet's row
/// in a statement of its own sees the same row; a changed one fails its MAC).
pub(super) fn with_states<T: WithState>(
    conn: &Connection,
    rows: impl IntoIterator<Item = (T, Option<i64>)>,
) -> rusqlite::Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq = ?1"))?;
    rows.into_iter()
        .map(|(mut row, seq)| {
            let state = match seq {
                Some(seq) => stmt.query_row([seq], audit_from_row).optional()?,
                None => None,
            };
            row.set_state(state);
            Ok(row)
        })
        .collect()
}

/// The audit row recording the latest write of `address_key` in `environment`.
pub(super) fn latest_state(conn: &Connection, environment: &str, address_key: &str) -> Result<Option<AuditRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {AUDIT_COLUMNS} FROM audit INDEXED BY audit_wallet_states WHERE environment = ?1 AND address = ?2 \
         AND wallet_mac IS NOT NULL ORDER BY seq DESC LIMIT 1"
    ))
    .and_then(|mut s| s.query_row([environment, address_key], audit_from_row).optional())
    .map_err(db_err("reading a wallet's history"))
}

/// The outcome recorded for a webhook event (see `Change::Event`).
pub(super) fn webhook_event(conn: &Connection, environment: &str, event_id: &str) -> Result<Option<(String, Vec<u8>)>> {
    conn.prepare_cached("SELECT outcome, mac FROM webhook_events WHERE environment = ?1 AND event_id = ?2")
        .and_then(|mut s| s.query_row([environment, event_id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(db_err("reading a webhook event"))
}

fn row_state(conn: &Connection, environment: &str, address_key: &str) -> Result<Applied> {
    let exists: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM wallets WHERE environment = ?1 AND address_key = ?2")
        .and_then(|mut s| s.query_row([environment, address_key], |r| r.get(0)).optional())
        .map_err(db_err("checking a wallet"))?;
    Ok(if exists.is_some() { Applied::Stale } else { Applied::NotFound })
}

/// Applies `change` to the wallets of `environment` (the audit entry's: a vault never writes
/// another environment's rows).
pub(super) fn apply_change(conn: &Connection, change: &Change, environment: &str, now: i64) -> Result<Applied> {
    match change {
        Change::Event { event_id, outcome, mac, then } => {
            // The writer holds the write lock: no other process records the event meanwhile.
            // The event is recorded only once `then` is done (a stale `then` writes nothing).
            if webhook_event(conn, environment, event_id)?.is_some() {
                return Ok(Applied::Stale);
            }
            if let Some(inner) = then {
                let applied = apply_change(conn, inner, environment, now)?;
                if applied != Applied::Done {
                    return Ok(applied);
                }
            }
            conn.prepare_cached(
                "INSERT INTO webhook_events (environment, event_id, outcome, received_at, mac) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![environment, event_id, outcome, now, mac]))
            .map_err(db_err("recording a webhook event"))?;
            Ok(Applied::Done)
        }
        Change::Insert { row: w, auth, state_seq } => {
            if w.environment != environment {
                return Err(Error::internal("a wallet row of another environment"));
            }
            // The writer holds the database's write lock and every job appends its audit row
            // before the next runs: this is the latest state, this batch's included.
            if latest_state(conn, environment, &w.address_key)?.map(|s| s.seq) != *state_seq {
                return Ok(Applied::Stale);
            }
            let mut stmt = conn
                .prepare_cached(
                    "INSERT INTO wallets (address, address_key, wallet_id, chain_name, environment, metadata, version, \
                     generation, format, alg, kek_provider, kek_key_id, kek_key_version, wrapped_dek, nonce, ciphertext, \
                     created_at, updated_at, mac, sealed_digest, wrapped_at, sealed_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?17, ?18, ?19, \
                     ?20, ?21)",
                )
                .map_err(db_err("preparing an insert"))?;
            let s = &w.sealed;
            match stmt.execute(params![
                w.address,
                w.address_key,
                w.wallet_id,
                w.chain_name,
                w.environment,
                w.metadata_json,
                w.version,
                w.generation,
                s.format,
                s.alg,
                s.kek.provider,
                s.kek.key_id,
                s.kek.key_version,
                s.wrapped_dek,
                s.nonce,
                s.ciphertext,
                now,
                auth.mac,
                auth.sealed_digest,
                s.wrapped_at,
                s.sealed_at
            ]) {
                Ok(_) => Ok(Applied::Done),
                Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => Err(
                    Error::new(ErrorCode::Conflict, format!("a wallet is already stored for address {}", w.address)),
                ),
                Err(e) => Err(db_err("storing a wallet")(e)),
            }
        }
        Change::UpdateMetadata { address_key, expected_version, metadata_json, auth } => {
            let n = conn
                .prepare_cached(
                    "UPDATE wallets SET metadata = ?1, version = version + 1, updated_at = ?2, mac = ?5 \
                     WHERE address_key = ?3 AND version = ?4 AND environment = ?6",
                )
                .and_then(|mut s| {
                    s.execute(params![metadata_json, now, address_key, expected_version, auth.mac, environment])
                })
                .map_err(db_err("updating metadata"))?;
            if n == 1 {
                Ok(Applied::Done)
            } else {
                row_state(conn, environment, address_key)
            }
        }
        Change::ReplaceShares { address_key, expected_version, metadata_json, generation, sealed: s, auth } => {
            let n = conn
                .prepare_cached(
                    "UPDATE wallets SET metadata = ?1, version = version + 1, generation = ?2, format = ?3, alg = ?4, \
                     kek_provider = ?5, kek_key_id = ?6, kek_key_version = ?7, wrapped_dek = ?8, nonce = ?9, \
                     ciphertext = ?10, updated_at = ?11, mac = ?14, sealed_digest = ?15, wrapped_at = ?17, \
                     sealed_at = ?18 \
                     WHERE address_key = ?12 AND version = ?13 AND environment = ?16",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        metadata_json,
                        generation,
                        s.format,
                        s.alg,
                        s.kek.provider,
                        s.kek.key_id,
                        s.kek.key_version,
                        s.wrapped_dek,
                        s.nonce,
                        s.ciphertext,
                        now,
                        address_key,
                        expected_version,
                        auth.mac,
                        auth.sealed_digest,
                        environment,
                        s.wrapped_at,
                        s.sealed_at
                    ])
                })
                .map_err(db_err("replacing shares"))?;
            if n == 1 {
                Ok(Applied::Done)
            } else {
                row_state(conn, environment, address_key)
            }
        }
        Change::Delete { address_key } => {
            let n = conn
                .prepare_cached("DELETE FROM wallets WHERE environment = ?1 AND address_key = ?2")
                .and_then(|mut s| s.execute([environment, address_key]))
                .map_err(db_err("deleting a wallet"))?;
            Ok(if n == 1 { Applied::Done } else { Applied::NotFound })
        }
        Change::Authenticate { address_key, expected_version, auth } => {
            let n = conn
                .prepare_cached(
                    "UPDATE wallets SET mac = ?1, sealed_digest = ?2 \
                     WHERE environment = ?3 AND address_key = ?4 AND version = ?5",
                )
                .and_then(|mut s| {
                    s.execute(params![auth.mac, auth.sealed_digest, environment, address_key, expected_version])
                })
                .map_err(db_err("authenticating a row"))?;
            if n == 1 {
                Ok(Applied::Done)
            } else {
                row_state(conn, environment, address_key)
            }
        }
        Change::Rewrap { address_key, expected_version, sealed: s, auth, .. } => {
            let n = conn
                .prepare_cached(
                    "UPDATE wallets SET version = version + 1, format = ?1, alg = ?2, kek_provider = ?3, \
                     kek_key_id = ?4, kek_key_version = ?5, wrapped_dek = ?6, nonce = ?7, ciphertext = ?8, \
                     wrapped_at = ?9, sealed_at = ?10, updated_at = ?11, mac = ?12, sealed_digest = ?13 \
                     WHERE environment = ?14 AND address_key = ?15 AND version = ?16",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        s.format,
                        s.alg,
                        s.kek.provider,
                        s.kek.key_id,
                        s.kek.key_version,
                        s.wrapped_dek,
                        s.nonce,
                        s.ciphertext,
                        s.wrapped_at,
                        s.sealed_at,
                        now,
                        auth.mac,
                        auth.sealed_digest,
                        environment,
                        address_key,
                        expected_version
                    ])
                })
                .map_err(db_err("re-wrapping a data key"))?;
            if n == 1 {
                // The row is under the primary: its rotator's lease has done its work.
                conn.prepare_cached(END_CLAIM)
                    .and_then(|mut st| st.execute([environment, address_key]))
                    .map_err(db_err("ending a rotation claim"))?;
                Ok(Applied::Done)
            } else {
                row_state(conn, environment, address_key)
            }
        }
        Change::PutKey { entry: e, expected_version } => {
            if e.environment != environment {
                return Err(Error::internal("a keyring entry of another environment"));
            }
            let n = match expected_version {
                None => conn.prepare_cached(
                    "INSERT INTO keyring (environment, kek_provider, kek_key_id, kek_key_version, state, added_at, \
                     changed_at, version, reencrypt_before, mac) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                     ON CONFLICT (environment, kek_provider, kek_key_id) DO NOTHING",
                ),
                Some(_) => conn.prepare_cached(
                    "UPDATE keyring SET kek_key_version = ?4, state = ?5, added_at = ?6, changed_at = ?7, \
                     version = ?8, reencrypt_before = ?9, mac = ?10 \
                     WHERE environment = ?1 AND kek_provider = ?2 AND kek_key_id = ?3 AND version = ?11",
                ),
            }
            .and_then(|mut st| {
                let base = params![
                    e.environment,
                    e.kek.provider,
                    e.kek.key_id,
                    e.kek.key_version,
                    e.state.as_str(),
                    e.added_at,
                    e.changed_at,
                    e.version,
                    e.reencrypt_before,
                    e.mac
                ];
                match expected_version {
                    None => st.execute(base),
                    Some(v) => {
                        let mut all: Vec<&dyn rusqlite::ToSql> = base.to_vec();
                        all.push(v);
                        st.execute(all.as_slice())
                    }
                }
            })
            .map_err(db_err("writing the keyring"))?;
            Ok(if n == 1 { Applied::Done } else { Applied::Stale })
        }
        Change::MoveIntegrityKey { from, to } => {
            let n = conn
                .prepare_cached(
                    "UPDATE integrity_keys SET kek_provider = ?1, kek_key_id = ?2, kek_key_version = ?3, wrapped = ?4 \
                     WHERE environment = ?5 AND kek_provider = ?6 AND kek_key_id = ?7",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        to.kek.provider,
                        to.kek.key_id,
                        to.kek.key_version,
                        to.wrapped,
                        environment,
                        from.provider,
                        from.key_id
                    ])
                })
                .map_err(db_err("moving the integrity key"))?;
            Ok(if n == 1 { Applied::Done } else { Applied::Stale })
        }
    }
}

/// The keyring entries of an environment.
pub(super) fn keyring(conn: &Connection, environment: &str) -> Result<Vec<KeyringEntry>> {
    conn.prepare_cached(
        "SELECT environment, kek_provider, kek_key_id, kek_key_version, state, added_at, changed_at, version, \
         reencrypt_before, mac FROM keyring WHERE environment = ?1 ORDER BY added_at, kek_provider, kek_key_id",
    )
    .and_then(|mut s| {
        s.query_map([environment], |r| {
            let state: String = r.get(4)?;
            Ok(KeyringEntry {
                environment: r.get(0)?,
                kek: KekRef { provider: r.get(1)?, key_id: r.get(2)?, key_version: r.get(3)? },
                // An unknown state fails its MAC (the MAC covers the state as written).
                state: KeyState::parse(&state).unwrap_or(KeyState::Retired),
                added_at: r.get(5)?,
                changed_at: r.get(6)?,
                version: r.get(7)?,
                reencrypt_before: r.get(8)?,
                mac: r.get(9)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(db_err("reading the keyring"))
}

/// The latest audit row of each key of the environment (the log addresses `keyring::log_address`
/// gives, a range of the partial index).
pub(super) fn keyring_states(conn: &Connection, environment: &str) -> Result<Vec<AuditRecord>> {
    let (lo, hi) = crate::keyring::log_address_range();
    conn.prepare_cached(&format!(
        "SELECT {AUDIT_COLUMNS} FROM audit WHERE seq IN (SELECT max(seq) FROM audit INDEXED BY audit_wallet_states \
         WHERE environment = ?1 AND address >= ?2 AND address < ?3 AND wallet_mac IS NOT NULL GROUP BY address) \
         ORDER BY seq"
    ))
    .and_then(|mut s| s.query_map(params![environment, lo, hi], audit_from_row)?.collect::<rusqlite::Result<Vec<_>>>())
    .map_err(db_err("reading the keyring's history"))
}

pub(super) fn chain_head(conn: &Connection) -> Result<ChainHead> {
    let head = conn
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        .and_then(|mut s| s.query_row([], |r| Ok(ChainHead { seq: r.get(0)?, hash: r.get(1)? })).optional())
        .map_err(db_err("reading the audit chain"))?;
    Ok(head.unwrap_or_else(ChainHead::genesis))
}

/// Appends `e` after `head`; with the environment's key, the row carries the MAC of its position.
pub(super) fn insert_audit(
    conn: &Connection,
    head: &ChainHead,
    e: &AuditEntry,
    key: Option<&IntegrityKey>,
) -> Result<ChainHead> {
    let link = head.link(e);
    let mac = key.filter(|k| k.environment() == e.environment).map(|k| k.audit_row_tag(link.seq, &link.hash));
    conn.prepare_cached(&format!(
        "INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            link.seq,
            e.at_ms,
            e.environment,
            e.actor,
            e.action,
            e.address,
            e.wallet_id,
            e.purpose,
            e.outcome,
            e.wallet_mac,
            link.prev_hash,
            link.hash,
            mac
        ])
    })
    .map_err(db_err("writing the audit log"))?;
    Ok(link.head())
}

/// Moves `key`'s environment's authenticated head to `head` (in the batch's transaction, after
/// `check_head` found the old one intact). `create`: make it if missing or replace it
/// whatever it was (`repair_head` only).
pub(super) fn put_head(conn: &Connection, key: &IntegrityKey, head: &ChainHead, create: bool) -> Result<()> {
    conn.prepare_cached(if create {
        "INSERT INTO audit_heads (environment, seq, hash, mac) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (environment) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac"
    } else {
        "UPDATE audit_heads SET seq = ?2, hash = ?3, mac = ?4 WHERE environment = ?1"
    })
    .and_then(|mut s| s.execute(params![key.environment(), head.seq, head.hash, key.head_tag(head.seq, &head.hash)]))
    .map_err(db_err("moving the audit head"))?;
    Ok(())
}

/// Whether the log, whose last row is `tip`, still holds `key`'s environment's authenticated
/// head (see `tamper::head_intact`): a write extends the log only from there.
pub(super) fn check_head(conn: &Connection, key: &IntegrityKey, tip: &ChainHead) -> Result<()> {
    let head = get_head(conn, key.environment())?;
    let at_head = match &head {
        Some(h) if h.seq == tip.seq => Some(tip.hash.clone()),
        Some(h) if h.seq > 0 && h.seq < tip.seq => conn
            .prepare_cached("SELECT hash FROM audit WHERE seq = ?1")
            .and_then(|mut s| s.query_row([h.seq], |r| r.get::<_, Vec<u8>>(0)).optional())
            .map_err(db_err("reading the audit chain"))?,
        _ => None,
    };
    // Rows after the head are other environments' (few: those written since this one's last
    // write), unless the head was put back.
    let rows_after = match &head {
        Some(h) if h.seq < tip.seq => conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM audit WHERE seq > ?1 AND environment = ?2)")
            .and_then(|mut s| s.query_row(params![h.seq, key.environment()], |r| r.get(0)))
            .map_err(db_err("reading the audit chain"))?,
        _ => false,
    };
    crate::tamper::head_intact(key, head.as_ref(), tip, at_head.as_deref(), rows_after)
}

pub(super) fn get_head(conn: &Connection, environment: &str) -> Result<Option<SignedHead>> {
    conn.prepare_cached("SELECT environment, seq, hash, mac FROM audit_heads WHERE environment = ?1")
        .and_then(|mut s| {
            s.query_row([environment], |r| {
                Ok(SignedHead { environment: r.get(0)?, seq: r.get(1)?, hash: r.get(2)?, mac: r.get(3)? })
            })
            .optional()
        })
        .map_err(db_err("reading the audit head"))
}
