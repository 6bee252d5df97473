//! The SQLite schema and its migrations, tracked in `PRAGMA user_version`. A database whose
//! schema is newer than this build is refused.

use super::db_err;
use crate::error::{Error, ErrorCode, Result};
use rusqlite::Connection;

/// The newest schema this build knows.
pub const SCHEMA_VERSION: i64 = 6;
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE wallets (
  id              INTEGER PRIMARY KEY,
  address_key     TEXT    NOT NULL UNIQUE,
  address         TEXT    NOT NULL,
  wallet_id       TEXT    NOT NULL,
  chain_name      TEXT    NOT NULL,
  environment     TEXT    NOT NULL,
  metadata        TEXT    NOT NULL,
  version         INTEGER NOT NULL,
  generation      INTEGER NOT NULL,
  format          INTEGER NOT NULL,
  alg             INTEGER NOT NULL,
  kek_provider    TEXT    NOT NULL,
  kek_key_id      TEXT    NOT NULL,
  kek_key_version TEXT    NOT NULL,
  wrapped_dek     BLOB    NOT NULL,
  nonce           BLOB    NOT NULL,
  ciphertext      BLOB    NOT NULL,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL
);
CREATE INDEX wallets_by_env ON wallets (environment, address_key);
CREATE INDEX wallets_by_env_chain ON wallets (environment, chain_name, address_key);
CREATE TABLE audit (
  seq         INTEGER PRIMARY KEY,
  at          INTEGER NOT NULL,
  environment TEXT    NOT NULL,
  actor       TEXT    NOT NULL,
  action      TEXT    NOT NULL,
  address     TEXT    NOT NULL,
  wallet_id   TEXT,
  purpose     TEXT,
  outcome     TEXT    NOT NULL,
  prev_hash   BLOB    NOT NULL,
  hash        BLOB    NOT NULL
);
CREATE INDEX audit_by_address ON audit (address, seq);
CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#,
    r#"
-- Authenticated rows (see `integrity`): the MAC of every wallet row and the digest of its sealed
-- record; on audit rows, the MAC of the row's position and, on writes, the wallet row's MAC as
-- written; the authenticated head of each environment's log; the wrapped integrity keys.
ALTER TABLE wallets ADD COLUMN mac BLOB;
ALTER TABLE wallets ADD COLUMN sealed_digest BLOB;
ALTER TABLE audit ADD COLUMN wallet_mac BLOB;
ALTER TABLE audit ADD COLUMN mac BLOB;
CREATE INDEX audit_wallet_states ON audit (address, seq) WHERE wallet_mac IS NOT NULL;
CREATE TABLE audit_heads (
  environment TEXT    PRIMARY KEY,
  seq         INTEGER NOT NULL,
  hash        BLOB    NOT NULL,
  mac         BLOB    NOT NULL
);
CREATE TABLE integrity_keys (
  environment     TEXT    PRIMARY KEY,
  kek_provider    TEXT    NOT NULL,
  kek_key_id      TEXT    NOT NULL,
  kek_key_version TEXT    NOT NULL,
  wrapped         BLOB    NOT NULL,
  created_at      INTEGER NOT NULL
);
"#,
    r#"
-- Addresses are unique per environment (a vault sees nothing of another environment's wallets,
-- not even that an address is taken), and a wallet's latest audited state is looked up within
-- its own environment. SQLite cannot change a table's constraints in place: the table is rebuilt,
-- its columns in the same order.
CREATE TABLE wallets_v3 (
  id              INTEGER PRIMARY KEY,
  address_key     TEXT    NOT NULL,
  address         TEXT    NOT NULL,
  wallet_id       TEXT    NOT NULL,
  chain_name      TEXT    NOT NULL,
  environment     TEXT    NOT NULL,
  metadata        TEXT    NOT NULL,
  version         INTEGER NOT NULL,
  generation      INTEGER NOT NULL,
  format          INTEGER NOT NULL,
  alg             INTEGER NOT NULL,
  kek_provider    TEXT    NOT NULL,
  kek_key_id      TEXT    NOT NULL,
  kek_key_version TEXT    NOT NULL,
  wrapped_dek     BLOB    NOT NULL,
  nonce           BLOB    NOT NULL,
  ciphertext      BLOB    NOT NULL,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL,
  mac             BLOB,
  sealed_digest   BLOB,
  UNIQUE (environment, address_key)
);
INSERT INTO wallets_v3 SELECT id, address_key, address, wallet_id, chain_name, environment, metadata, version,
  generation, format, alg, kek_provider, kek_key_id, kek_key_version, wrapped_dek, nonce, ciphertext, created_at,
  updated_at, mac, sealed_digest FROM wallets;
DROP TABLE wallets;
ALTER TABLE wallets_v3 RENAME TO wallets;
CREATE INDEX wallets_by_env_chain ON wallets (environment, chain_name, address_key);
DROP INDEX IF EXISTS audit_wallet_states;
CREATE INDEX audit_wallet_states ON audit (environment, address, seq) WHERE wallet_mac IS NOT NULL;
"#,
    r#"
-- The key lifecycle (see `keyring`): when each row's data key was wrapped and its ciphertext
-- made (both under the row MAC; NULL on rows from before, whose times were not recorded), a
-- rotator's lease on a row (not trusted for anything but keeping rotators apart), and each
-- environment's keyring.
ALTER TABLE wallets ADD COLUMN wrapped_at INTEGER;
ALTER TABLE wallets ADD COLUMN sealed_at INTEGER;
ALTER TABLE wallets ADD COLUMN rotation_claim INTEGER;
CREATE TABLE keyring (
  environment      TEXT    NOT NULL,
  kek_provider     TEXT    NOT NULL,
  kek_key_id       TEXT    NOT NULL,
  kek_key_version  TEXT    NOT NULL,
  state            TEXT    NOT NULL,
  added_at         INTEGER NOT NULL,
  changed_at       INTEGER NOT NULL,
  version          INTEGER NOT NULL,
  reencrypt_before INTEGER,
  mac              BLOB    NOT NULL,
  PRIMARY KEY (environment, kek_provider, kek_key_id)
);
CREATE INDEX keyring_by_key ON keyring (kek_provider, kek_key_id);
"#,
    r#"
-- A rotator's leases move out of the wallet row into a table of their own. SQLite writes an
-- UPDATE that changes a record's size as a whole new record (every overflow page written again,
-- and, with secure_delete, every old one zeroed), and a lease in the row did that twice per
-- re-wrap (set, then cleared); a re-wrap of the same size now overwrites only the pages that
-- change. PostgreSQL keeps its lease in the row: it claims with FOR UPDATE SKIP LOCKED, and its
-- updates do not copy the row's out-of-line values.
ALTER TABLE wallets DROP COLUMN rotation_claim;
CREATE TABLE rotation_claims (
  environment TEXT    NOT NULL,
  address_key TEXT    NOT NULL,
  until       INTEGER NOT NULL,
  PRIMARY KEY (environment, address_key)
) WITHOUT ROWID;
"#,
    r#"
-- Delegated access: the webhook events each environment has handled (a replay of one writes
-- nothing and answers what the first delivery did). Delegations themselves are wallet rows at
-- reserved addresses (`sharevault:delegation:<walletId>`), under the same MAC, audit and rotation.
CREATE TABLE webhook_events (
  environment TEXT    NOT NULL,
  event_id    TEXT    NOT NULL,
  outcome     TEXT    NOT NULL,
  received_at INTEGER NOT NULL,
  mac         BLOB    NOT NULL,
  PRIMARY KEY (environment, event_id)
) WITHOUT ROWID;
"#,
];

/// The recorded schema version, refused if newer than this build or negative.
fn recorded_version(conn: &Connection) -> Result<i64> {
    let current: i64 =
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_err("reading the schema version"))?;
    if current > SCHEMA_VERSION {
        return Err(Error::new(
            ErrorCode::Storage,
            format!("the database has schema version {current}, newer than this sharevault ({SCHEMA_VERSION})"),
        ));
    }
    if current < 0 {
        return Err(Error::new(ErrorCode::Storage, "the database has a negative schema version"));
    }
    Ok(current)
}

/// Opening with migrations off: the schema must already be this build's.
pub(super) fn require_current(conn: &Connection) -> Result<()> {
    let current = recorded_version(conn)?;
    if current < SCHEMA_VERSION {
        return Err(crate::store::not_migrated(current, SCHEMA_VERSION));
    }
    Ok(())
}

/// Brings the schema up to date in one transaction; returns the version it found.
pub(super) fn migrate(conn: &Connection) -> Result<i64> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err("starting the migration"))?;
    let run = || -> Result<i64> {
        let current = recorded_version(conn)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            conn.execute_batch(sql).map_err(db_err("running a migration"))?;
            conn.pragma_update(None, "user_version", (i + 1) as i64).map_err(db_err("recording the schema version"))?;
        }
        Ok(current)
    };
    match run() {
        Ok(from) => conn.execute_batch("COMMIT").map_err(db_err("committing the migration")).map(|_| from),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
