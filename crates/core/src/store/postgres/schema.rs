//! The PostgreSQL schema and its migrations, embedded and applied on open inside one
//! transaction that holds an advisory lock, so many instances starting at once migrate once.
//! A database whose schema is newer than this build is refused, as on SQLite.

use super::pg_err;
use crate::error::{Error, ErrorCode, Result};
use sqlx::PgPool;

/// The newest schema this build knows.
pub const SCHEMA_VERSION: i32 = 5;

/// `pg_advisory_xact_lock` key: "sharevlt" as a big-endian i64.
const MIGRATION_LOCK: i64 = 0x7368_6172_6576_6c74;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE wallets (
  address_key     text    PRIMARY KEY,
  address         text    NOT NULL,
  wallet_id       text    NOT NULL,
  chain_name      text    NOT NULL,
  environment     text    NOT NULL,
  metadata        text    NOT NULL,
  version         bigint  NOT NULL,
  generation      bigint  NOT NULL,
  format          bigint  NOT NULL,
  alg             bigint  NOT NULL,
  kek_provider    text    NOT NULL,
  kek_key_id      text    NOT NULL,
  kek_key_version text    NOT NULL,
  wrapped_dek     bytea   NOT NULL,
  nonce           bytea   NOT NULL,
  ciphertext      bytea   NOT NULL,
  created_at      bigint  NOT NULL,
  updated_at      bigint  NOT NULL
);
CREATE INDEX wallets_by_env ON wallets (environment, address_key);
CREATE INDEX wallets_by_env_chain ON wallets (environment, chain_name, address_key);
CREATE TABLE audit (
  seq         bigint PRIMARY KEY,
  at          bigint NOT NULL,
  environment text   NOT NULL,
  actor       text   NOT NULL,
  action      text   NOT NULL,
  address     text   NOT NULL,
  wallet_id   text,
  purpose     text,
  outcome     text   NOT NULL,
  prev_hash   bytea  NOT NULL,
  hash        bytea  NOT NULL
);
CREATE INDEX audit_by_address ON audit (address, seq);
-- The chain's head: every writing transaction locks this row first (SELECT ... FOR UPDATE), so
-- appends from every instance are serialised and the chain never forks.
CREATE TABLE audit_head (
  id   integer PRIMARY KEY CHECK (id = 1),
  seq  bigint  NOT NULL,
  hash bytea   NOT NULL
);
INSERT INTO audit_head VALUES (1, 0, decode(repeat('00', 32), 'hex'));
CREATE FUNCTION sharevault_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
  FOR EACH ROW EXECUTE FUNCTION sharevault_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
  FOR EACH STATEMENT EXECUTE FUNCTION sharevault_audit_append_only();
"#,
    r#"
-- Authenticated rows (see `integrity`): the MAC of every wallet row and the digest of its sealed
-- record; on audit rows, the MAC of the row's position and, on writes, the wallet row's MAC as
-- written; the authenticated head of each environment's log; the wrapped integrity keys.
ALTER TABLE wallets ADD COLUMN mac bytea;
ALTER TABLE wallets ADD COLUMN sealed_digest bytea;
ALTER TABLE audit ADD COLUMN wallet_mac bytea;
ALTER TABLE audit ADD COLUMN mac bytea;
CREATE INDEX audit_wallet_states ON audit (address, seq) WHERE wallet_mac IS NOT NULL;
CREATE TABLE audit_heads (
  environment text   PRIMARY KEY,
  seq         bigint NOT NULL,
  hash        bytea  NOT NULL,
  mac         bytea  NOT NULL
);
CREATE TABLE integrity_keys (
  environment     text   PRIMARY KEY,
  kek_provider    text   NOT NULL,
  kek_key_id      text   NOT NULL,
  kek_key_version text   NOT NULL,
  wrapped         bytea  NOT NULL,
  created_at      bigint NOT NULL
);
"#,
    r#"
-- Addresses are unique per environment (a vault sees nothing of another environment's wallets,
-- not even that an address is taken), and a wallet's latest audited state is looked up within
-- its own environment.
ALTER TABLE wallets DROP CONSTRAINT wallets_pkey;
ALTER TABLE wallets ADD PRIMARY KEY (environment, address_key);
DROP INDEX IF EXISTS wallets_by_env;
DROP INDEX IF EXISTS audit_wallet_states;
CREATE INDEX audit_wallet_states ON audit (environment, address, seq) WHERE wallet_mac IS NOT NULL;
"#,
    r#"
-- The key lifecycle (see `keyring`): when each row's data key was wrapped and its ciphertext
-- made (both under the row MAC; NULL on rows from before, whose times were not recorded), a
-- rotator's lease on a row (not trusted for anything but keeping rotators apart), and each
-- environment's keyring.
ALTER TABLE wallets ADD COLUMN wrapped_at bigint;
ALTER TABLE wallets ADD COLUMN sealed_at bigint;
ALTER TABLE wallets ADD COLUMN rotation_claim bigint;
CREATE TABLE keyring (
  environment      text   NOT NULL,
  kek_provider     text   NOT NULL,
  kek_key_id       text   NOT NULL,
  kek_key_version  text   NOT NULL,
  state            text   NOT NULL,
  added_at         bigint NOT NULL,
  changed_at       bigint NOT NULL,
  version          bigint NOT NULL,
  reencrypt_before bigint,
  mac              bytea  NOT NULL,
  PRIMARY KEY (environment, kek_provider, kek_key_id)
);
CREATE INDEX keyring_by_key ON keyring (kek_provider, kek_key_id);
"#,
    r#"
-- Delegated access: the webhook events each environment has handled (a replay of one writes
-- nothing and answers what the first delivery did). Delegations themselves are wallet rows at
-- reserved addresses (`sharevault:delegation:<walletId>`), under the same MAC, audit and rotation.
CREATE TABLE webhook_events (
  environment text   NOT NULL,
  event_id    text   NOT NULL,
  outcome     text   NOT NULL,
  received_at bigint NOT NULL,
  mac         bytea  NOT NULL,
  PRIMARY KEY (environment, event_id)
);
"#,
];

/// The schema version recorded in the database (0 when it has none), read without DDL, so a
/// role without `CREATE` can open an up-to-date database.
async fn recorded_version(pool: &PgPool) -> Result<i32> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('sharevault_schema') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(pg_err("reading the schema version"))?;
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = sqlx::query_scalar("SELECT max(version) FROM sharevault_schema")
        .fetch_one(pool)
        .await
        .map_err(pg_err("reading the schema version"))?;
    Ok(v.unwrap_or(0))
}

fn newer(current: i32) -> Error {
    Error::new(
        ErrorCode::Storage,
        format!("the database has schema version {current}, newer than this sharevault ({SCHEMA_VERSION})"),
    )
}

/// Opening with migrations off: the schema must already be this build's; no DDL is run.
pub(super) async fn require_current(pool: &PgPool) -> Result<()> {
    let current = recorded_version(pool).await?;
    if current > SCHEMA_VERSION {
        return Err(newer(current));
    }
    if current < SCHEMA_VERSION {
        return Err(crate::store::not_migrated(current.into(), SCHEMA_VERSION.into()));
    }
    Ok(())
}

/// Brings the schema up to date; returns the version it found.
pub(super) async fn migrate(pool: &PgPool) -> Result<i32> {
    // Up to date (the usual open): nothing to lock, nothing to create.
    let current = recorded_version(pool).await?;
    if current > SCHEMA_VERSION {
        return Err(newer(current));
    }
    if current == SCHEMA_VERSION {
        return Ok(current);
    }
    let mut tx = pool.begin().await.map_err(pg_err("starting the migration"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(pg_err("waiting for the migration lock"))?;
    sqlx::query("CREATE TABLE IF NOT EXISTS sharevault_schema (version integer NOT NULL)")
        .execute(&mut *tx)
        .await
        .map_err(pg_err("creating the schema table"))?;
    let current: Option<i32> = sqlx::query_scalar("SELECT max(version) FROM sharevault_schema")
        .fetch_one(&mut *tx)
        .await
        .map_err(pg_err("reading the schema version"))?;
    let current = current.unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(newer(current));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(pg_err("running a migration"))?;
        sqlx::query("INSERT INTO sharevault_schema (version) VALUES ($1)")
            .bind(i as i32 + 1)
            .execute(&mut *tx)
            .await
            .map_err(pg_err("recording the schema version"))?;
    }
    tx.commit().await.map_err(pg_err("committing the migration"))?;
    Ok(current)
}
