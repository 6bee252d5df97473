//! Row mapping: the column lists, SQLite rows to store types, and the statements that write
//! one wallet row or one audit row. The audit chain's arithmetic is `audit::ChainHead`'s.

use super::db_err;
use crate::audit::{AuditEntry, AuditRecord, ChainHead};
use crate::envelope::{KekRef, SealedRecord};
use crate::error::{Error, ErrorCode, Result};
use crate::store::{Applied, Change, MetadataRow, WalletRow};
use rusqlite::{params, Connection, OptionalExtension, Row};

pub(super) const WALLET_COLUMNS: &str =
    "address, address_key, wallet_id, chain_name, environment, metadata, version, generation, \
     format, alg, kek_provider, kek_key_id, kek_key_version, wrapped_dek, nonce, ciphertext";
pub(super) const META_COLUMNS: &str = "address_key, wallet_id, chain_name, environment, metadata, version, generation";
pub(super) const AUDIT_COLUMNS: &str =
    "seq, at, environment, actor, action, address, wallet_id, purpose, outcome, prev_hash, hash";

fn kek_of(r: &Row<'_>, base: usize) -> rusqlite::Result<KekRef> {
    Ok(KekRef { provider: r.get(base)?, key_id: r.get(base + 1)?, key_version: r.get(base + 2)? })
}

pub(super) fn wallet_from_row(r: &Row<'_>) -> rusqlite::Result<WalletRow> {
    Ok(WalletRow {
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
        },
    })
}

pub(super) fn meta_from_row(r: &Row<'_>) -> rusqlite::Result<MetadataRow> {
    Ok(MetadataRow {
        address_key: r.get(0)?,
        wallet_id: r.get(1)?,
        chain_name: r.get(2)?,
        environment: r.get(3)?,
        metadata_json: r.get(4)?,
        version: r.get(5)?,
        generation: r.get(6)?,
    })
}

pub(super) fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get(0)?,
        at_ms: r.get(1)?,
        environment: r.get(2)?,
        actor: r.get(3)?,
        action: r.get(4)?,
        address: r.get(5)?,
        wallet_id: r.get(6)?,
        purpose: r.get(7)?,
        outcome: r.get(8)?,
        prev_hash: r.get(9)?,
        hash: r.get(10)?,
    })
}

fn row_state(conn: &Connection, address_key: &str) -> Result<Applied> {
    let exists: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM wallets WHERE address_key = ?1")
        .and_then(|mut s| s.query_row([address_key], |r| r.get(0)).optional())
        .map_err(db_err("checking a wallet"))?;
    Ok(if exists.is_some() { Applied::Stale } else { Applied::NotFound })
}

pub(super) fn apply_change(conn: &Connection, change: &Change, now: i64) -> Result<Applied> {
    match change {
        Change::Insert(w) => {
            let mut stmt = conn
                .prepare_cached(
                    "INSERT INTO wallets (address, address_key, wallet_id, chain_name, environment, metadata, version, \
                     generation, format, alg, kek_provider, kek_key_id, kek_key_version, wrapped_dek, nonce, ciphertext, \
                     created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?17)",
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
                now
            ]) {
                Ok(_) => Ok(Applied::Done),
                Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => Err(
                    Error::new(ErrorCode::Conflict, format!("a wallet is already stored for address {}", w.address)),
                ),
                Err(e) => Err(db_err("storing a wallet")(e)),
            }
        }
        Change::UpdateMetadata { address_key, expected_version, metadata_json } => {
            let n = conn
                .prepare_cached(
                    "UPDATE wallets SET metadata = ?1, version = version + 1, updated_at = ?2 \
                     WHERE address_key = ?3 AND version = ?4",
                )
                .and_then(|mut s| s.execute(params![metadata_json, now, address_key, expected_version]))
                .map_err(db_err("updating metadata"))?;
            if n == 1 {
                Ok(Applied::Done)
            } else {
                row_state(conn, address_key)
            }
        }
        Change::ReplaceShares { address_key, expected_version, metadata_json, generation, sealed: s } => {
            let n = conn
                .prepare_cached(
                    "UPDATE wallets SET metadata = ?1, version = version + 1, generation = ?2, format = ?3, alg = ?4, \
                     kek_provider = ?5, kek_key_id = ?6, kek_key_version = ?7, wrapped_dek = ?8, nonce = ?9, \
                     ciphertext = ?10, updated_at = ?11 WHERE address_key = ?12 AND version = ?13",
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
                        expected_version
                    ])
                })
                .map_err(db_err("replacing shares"))?;
            if n == 1 {
                Ok(Applied::Done)
            } else {
                row_state(conn, address_key)
            }
        }
        Change::Delete { address_key } => {
            let n = conn
                .prepare_cached("DELETE FROM wallets WHERE address_key = ?1")
                .and_then(|mut s| s.execute([address_key]))
                .map_err(db_err("deleting a wallet"))?;
            Ok(if n == 1 { Applied::Done } else { Applied::NotFound })
        }
    }
}

pub(super) fn chain_head(conn: &Connection) -> Result<ChainHead> {
    let head = conn
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        .and_then(|mut s| s.query_row([], |r| Ok(ChainHead { seq: r.get(0)?, hash: r.get(1)? })).optional())
        .map_err(db_err("reading the audit chain"))?;
    Ok(head.unwrap_or_else(ChainHead::genesis))
}

pub(super) fn insert_audit(conn: &Connection, head: &ChainHead, e: &AuditEntry) -> Result<ChainHead> {
    let link = head.link(e);
    conn.prepare_cached(&format!(
        "INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
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
            link.prev_hash,
            link.hash
        ])
    })
    .map_err(db_err("writing the audit log"))?;
    Ok(link.head())
}
