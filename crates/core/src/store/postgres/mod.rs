//! PostgreSQL storage, through sqlx: one vault shared by many processes on many hosts.
//!
//! Writes are group-committed per process, as on SQLite: a writer task takes every queued change
//! and audit row, and applies them in one transaction that first locks the audit chain's head row
//! (`SELECT … FOR UPDATE`), so appends from every instance are serialised and the chain never
//! forks, and every lock is taken in the same order (head, then wallet rows), so batches never
//! deadlock. Changes compare-and-swap on the row version; an insert of a stored address is
//! `ON CONFLICT DO NOTHING`, so a conflict never aborts the batch. All audit rows of a batch go in
//! one `INSERT … SELECT FROM unnest(…)`: a hydrate costs a share of one round trip and one fsync.
//! A batch of audit rows only (hydrates) is one autocommitted statement that moves the head on
//! from where this process last left it, and only if it is still there; if another instance has
//! appended since, nothing is written and the batch takes the locking path.
//! A serialization failure or deadlock (should one happen) retries the batch, bounded; a lost
//! connection fails the batch with `ERR_DB_UNAVAILABLE` and nothing of it is acknowledged.
//! Point reads of concurrent calls are batched the same way (`reader`).
//!
//! One concern per module: `config` (the URL, TLS rule, pool options), `schema` (migrations),
//! `writer` (group commit), `reader` (batched lookups); row mapping and other reads are here.

pub mod config;
mod schema;
mod writer;

pub use config::{PgTarget, PoolConfig};

use super::{
    ask, behind_sql, Applied, AuditQuery, Change, ClaimQuery, Claimed, Compacted, HeadRepair, KeyringRead, ListQuery,
    MetadataRow, Migrated, Migrations, WalletRow, WalletStore, WrappedKey,
};
use crate::audit::{now_ms, AuditEntry, AuditRecord, SignedHead};
use crate::envelope::{KekRef, SealedRecord};
use crate::error::{Error, Result};
use crate::integrity::IntegrityKey;
use crate::keyring::{KeyState, KeyringEntry};
use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use std::sync::Arc;
use std::sync::Mutex;
use tokio::sync::{mpsc, oneshot};
use writer::{Job, Write};

// Column lists as macros: sqlx takes only `&'static str` SQL (no formatted strings), and
// `concat!` builds those at compile time.
/// The audit row that records a wallet's latest write in its own environment (see
/// `WalletRow::state`), joined to every wallet read through the partial index
/// `audit_wallet_states` on (environment, address, seq).
macro_rules! state_join {
    () => {
        "LEFT JOIN LATERAL (SELECT a.seq, a.at, a.environment, a.actor, a.action, a.address, a.wallet_id, a.purpose, \
         a.outcome, a.wallet_mac, a.prev_hash, a.hash, a.mac FROM audit a WHERE a.environment = w.environment \
         AND a.address = w.address_key AND a.wallet_mac IS NOT NULL ORDER BY a.seq DESC LIMIT 1) s ON true"
    };
}
macro_rules! state_columns {
    () => {
        "s.seq, s.at, s.environment, s.actor, s.action, s.address, s.wallet_id, s.purpose, s.outcome, s.wallet_mac, \
         s.prev_hash, s.hash, s.mac"
    };
}
/// `SELECT … FROM wallets w` with the state join: add the `WHERE`.
macro_rules! select_wallets {
    () => {
        concat!(
            "SELECT w.address, w.address_key, w.wallet_id, w.chain_name, w.environment, w.metadata, w.version, \
             w.generation, w.format, w.alg, w.kek_provider, w.kek_key_id, w.kek_key_version, w.wrapped_dek, w.nonce, \
             w.ciphertext, w.mac, w.sealed_digest, w.wrapped_at, w.sealed_at, ",
            state_columns!(),
            " FROM wallets w ",
            state_join!()
        )
    };
}
macro_rules! select_metadata {
    () => {
        concat!(
            "SELECT w.address, w.address_key, w.wallet_id, w.chain_name, w.environment, w.metadata, w.version, \
             w.generation, w.sealed_digest, w.mac, ",
            state_columns!(),
            " FROM wallets w ",
            state_join!()
        )
    };
}
macro_rules! audit_columns {
    () => {
        "seq, at, environment, actor, action, address, wallet_id, purpose, outcome, wallet_mac, prev_hash, hash, mac"
    };
}

/// At most this many batched lookups in flight at once (see `reader`).
const READ_BATCHES: usize = 4;

/// SQLSTATE classes and codes that mean the database is not there (rather than that the
/// statement was wrong): connection exceptions (08), operator intervention (57: shutdown,
/// cannot connect now, statement timeout), insufficient resources (53).
fn unavailable_state(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57") || code.starts_with("53")
}

/// A sqlx error as a vault error. Messages name what was being done and the server's message,
/// never the connection URL.
pub(super) fn pg_err(context: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| match &e {
        sqlx::Error::Database(db) if db.code().is_some_and(|c| unavailable_state(&c)) => {
            Error::db_unavailable(context, db.message())
        }
        sqlx::Error::Database(db) => Error::storage(context, db.message()),
        sqlx::Error::PoolClosed => Error::closed(),
        sqlx::Error::PoolTimedOut => {
            Error::db_unavailable(context, "no database connection became available within the acquire timeout")
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
            Error::db_unavailable(context, "the connection to the database failed")
        }
        sqlx::Error::Configuration(_) => Error::storage(context, "the database connection is misconfigured"),
        _ => Error::storage(context, "the database failed"),
    }
}

// After the column macros, which it uses.
mod reader;

/// The connection pool, with the statement timeout set on every connection. A connection over
/// TLS older than 1.3 is refused (unless `allow_tls12`) before the pool hands it out, so no
/// statement ever runs over it; what was negotiated is kept in `tls`. An error names the server
/// (never the password).
async fn connect(
    target: &PgTarget,
    pool: PoolConfig,
    allow_tls12: bool,
) -> Result<(PgPool, Arc<Mutex<Option<String>>>)> {
    let timeout_ms = pool.statement_timeout.as_millis().to_string();
    let options = target.options.clone().options([("statement_timeout", timeout_ms.as_str())]);
    let tls: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let refused: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let (seen, why) = (tls.clone(), refused.clone());
    let connected = PgPoolOptions::new()
        .max_connections(pool.max_connections)
        .acquire_timeout(pool.acquire_timeout)
        .after_connect(move |conn, _| {
            let (seen, why) = (seen.clone(), why.clone());
            Box::pin(async move {
                let version: Option<String> =
                    sqlx::query_scalar("SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl")
                        .fetch_optional(&mut *conn)
                        .await?;
                if let Some(v) = version.as_deref().filter(|v| *v != "TLSv1.3" && !allow_tls12) {
                    let message = format!(
                        "the server negotiated {v}; sharevault requires TLS 1.3 on the database connection (set \
                         allowTls12: true for a server that cannot do 1.3)"
                    );
                    if let Ok(mut w) = why.lock() {
                        *w = Some(message.clone());
                    }
                    return Err(sqlx::Error::Configuration(message.into()));
                }
                if let Ok(mut s) = seen.lock() {
                    *s = version;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await;
    match connected {
        Ok(pg) => Ok((pg, tls)),
        Err(e) => {
            if let Some(message) = refused.lock().ok().and_then(|w| w.clone()) {
                return Err(Error::invalid("database", format!("{message} ({})", target.describe())));
            }
            let e = pg_err("connecting to the database")(e);
            Err(Error { message: format!("{} ({})", e.message, target.describe()), ..e })
        }
    }
}

/// `sharevault migrate` on PostgreSQL: brings the schema up to date (under the advisory lock,
/// so it is safe beside running instances and other migrators) and disconnects.
pub(super) async fn migrate_only(target: PgTarget, pool: PoolConfig, allow_tls12: bool) -> Result<Migrated> {
    let (pg, _) = connect(&target, pool, allow_tls12).await?;
    let from = schema::migrate(&pg).await;
    pg.close().await;
    Ok(Migrated { from: from?.into(), to: schema::SCHEMA_VERSION.into() })
}

pub struct PgStore {
    pool: PgPool,
    /// The TLS version the pool's connections negotiated (`None`: plain text).
    tls: Arc<Mutex<Option<String>>>,
    jobs: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    lookups: Mutex<Option<mpsc::UnboundedSender<reader::Lookup<WalletRow>>>>,
    metadata_lookups: Mutex<Option<mpsc::UnboundedSender<reader::Lookup<MetadataRow>>>>,
}

/// The condition of both batched readers: the (environment, address key) pairs of a batch.
macro_rules! where_batch {
    () => {
        " WHERE (w.environment, w.address_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
    };
}

/// What the two batched readers look up (see `reader`).
static WALLETS: reader::Query<WalletRow> = reader::Query {
    select: concat!(select_wallets!(), where_batch!()),
    map: wallet_from_row,
    key: |w| (w.environment.clone(), w.address_key.clone()),
    what: "reading a wallet",
};
static METADATA: reader::Query<MetadataRow> = reader::Query {
    select: concat!(select_metadata!(), where_batch!()),
    map: meta_from_row,
    key: |m| (m.environment.clone(), m.address_key.clone()),
    what: "reading metadata",
};

/// One lookup through a batched reader; `ERR_CLOSED` once the store closed its queue.
async fn batched<R>(
    queue: &Mutex<Option<mpsc::UnboundedSender<reader::Lookup<R>>>>,
    environment: &str,
    address_key: &str,
) -> Result<Option<R>> {
    let (environment, address_key) = (environment.to_string(), address_key.to_string());
    ask(|reply| {
        let guard = queue.lock().map_err(|_| Error::internal("reader queue poisoned"))?;
        let tx = guard.as_ref().ok_or_else(Error::closed)?;
        tx.send(reader::Lookup { environment, address_key, reply }).map_err(|_| Error::closed())
    })
    .await
}

impl PgStore {
    /// Connects, migrates (unless migrations are off), and starts the writer task.
    pub async fn open(
        target: PgTarget,
        pool: PoolConfig,
        migrations: Migrations,
        allow_tls12: bool,
    ) -> Result<PgStore> {
        let (pg, tls) = connect(&target, pool, allow_tls12).await?;
        let checked = match migrations {
            Migrations::OnOpen => schema::migrate(&pg).await.map(|_| ()),
            Migrations::Never => schema::require_current(&pg).await,
        };
        if let Err(e) = checked {
            pg.close().await;
            return Err(e);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer::run(pg.clone(), rx));
        let (lookups, rx) = mpsc::unbounded_channel();
        // Leave the writer a connection, and the list and audit reads some.
        let parallel = (pool.max_connections as usize).saturating_sub(2).clamp(1, READ_BATCHES);
        tokio::spawn(reader::run(pg.clone(), rx, parallel, &WALLETS));
        let (metadata_lookups, rx) = mpsc::unbounded_channel();
        tokio::spawn(reader::run(pg.clone(), rx, parallel, &METADATA));
        Ok(PgStore {
            pool: pg,
            tls,
            jobs: Mutex::new(Some(tx)),
            lookups: Mutex::new(Some(lookups)),
            metadata_lookups: Mutex::new(Some(metadata_lookups)),
        })
    }

    fn send(&self, job: Job) -> Result<()> {
        let guard = self.jobs.lock().map_err(|_| Error::internal("writer queue poisoned"))?;
        match guard.as_ref() {
            Some(tx) => tx.send(job).map_err(|_| Error::closed()),
            None => Err(Error::closed()),
        }
    }

    fn live(&self) -> Result<()> {
        match self.jobs.lock() {
            Ok(g) if g.is_some() => Ok(()),
            _ => Err(Error::closed()),
        }
    }
}

pub(super) fn wallet_from_row(r: &PgRow) -> sqlx::Result<WalletRow> {
    Ok(WalletRow {
        address: r.try_get(0)?,
        address_key: r.try_get(1)?,
        wallet_id: r.try_get(2)?,
        chain_name: r.try_get(3)?,
        environment: r.try_get(4)?,
        metadata_json: r.try_get(5)?,
        version: r.try_get(6)?,
        generation: r.try_get(7)?,
        sealed: SealedRecord {
            format: r.try_get(8)?,
            alg: r.try_get(9)?,
            kek: KekRef { provider: r.try_get(10)?, key_id: r.try_get(11)?, key_version: r.try_get(12)? },
            wrapped_dek: r.try_get(13)?,
            nonce: r.try_get(14)?,
            ciphertext: r.try_get(15)?,
            wrapped_at: r.try_get(18)?,
            sealed_at: r.try_get(19)?,
        },
        mac: r.try_get(16)?,
        sealed_digest: r.try_get(17)?,
        state: state_from_row(r, 20)?,
    })
}

fn meta_from_row(r: &PgRow) -> sqlx::Result<MetadataRow> {
    Ok(MetadataRow {
        address: r.try_get(0)?,
        address_key: r.try_get(1)?,
        wallet_id: r.try_get(2)?,
        chain_name: r.try_get(3)?,
        environment: r.try_get(4)?,
        metadata_json: r.try_get(5)?,
        version: r.try_get(6)?,
        generation: r.try_get(7)?,
        sealed_digest: r.try_get(8)?,
        mac: r.try_get(9)?,
        state: state_from_row(r, 10)?,
    })
}

fn audit_from_row(r: &PgRow) -> sqlx::Result<AuditRecord> {
    audit_at(r, 0)
}

fn audit_at(r: &PgRow, b: usize) -> sqlx::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.try_get(b)?,
        at_ms: r.try_get(b + 1)?,
        environment: r.try_get(b + 2)?,
        actor: r.try_get(b + 3)?,
        action: r.try_get(b + 4)?,
        address: r.try_get(b + 5)?,
        wallet_id: r.try_get(b + 6)?,
        purpose: r.try_get(b + 7)?,
        outcome: r.try_get(b + 8)?,
        wallet_mac: r.try_get(b + 9)?,
        prev_hash: r.try_get(b + 10)?,
        hash: r.try_get(b + 11)?,
        mac: r.try_get(b + 12)?,
    })
}

/// The joined state row, if the join found one.
fn state_from_row(r: &PgRow, base: usize) -> sqlx::Result<Option<AuditRecord>> {
    match r.try_get::<Option<i64>, _>(base)? {
        Some(_) => audit_at(r, base).map(Some),
        None => Ok(None),
    }
}

fn keyring_from_row(r: &PgRow) -> sqlx::Result<KeyringEntry> {
    let state: String = r.try_get(4)?;
    Ok(KeyringEntry {
        environment: r.try_get(0)?,
        kek: KekRef { provider: r.try_get(1)?, key_id: r.try_get(2)?, key_version: r.try_get(3)? },
        // An unknown state fails its MAC (the MAC covers the state as written).
        state: KeyState::parse(&state).unwrap_or(KeyState::Retired),
        added_at: r.try_get(5)?,
        changed_at: r.try_get(6)?,
        version: r.try_get(7)?,
        reencrypt_before: r.try_get(8)?,
        mac: r.try_get(9)?,
    })
}

fn map_rows<T>(rows: Vec<PgRow>, f: fn(&PgRow) -> sqlx::Result<T>, context: &'static str) -> Result<Vec<T>> {
    rows.iter().map(f).collect::<sqlx::Result<Vec<_>>>().map_err(pg_err(context))
}

/// The vault's tables (`compact`).
const VAULT_TABLES: &[&str] = &["wallets", "audit", "audit_head", "audit_heads", "integrity_keys", "keyring"];

/// What PostgreSQL's compaction promises.
const POSTGRES_COMPACT_PROMISE: &str =
    "VACUUM marks the space of deleted and replaced rows free for reuse and returns \
     empty pages at the end of a table to the operating system; it does not overwrite the freed bytes, which stay in \
     the table files until reused, and in the WAL, its archives, replicas and backups. VACUUM FULL (not run: it locks \
     the tables) rewrites the files without them";

#[async_trait]
impl WalletStore for PgStore {
    async fn apply(&self, change: Change, audit: AuditEntry) -> Result<Applied> {
        ask(|tx| self.send(Job::Write(Write::Apply(Box::new(change), audit, tx)))).await
    }

    async fn append_audit(&self, audit: AuditEntry) -> Result<()> {
        ask(|tx| self.send(Job::Write(Write::Audit(audit, tx)))).await
    }

    async fn get(&self, environment: &str, address_key: &str) -> Result<Option<WalletRow>> {
        batched(&self.lookups, environment, address_key).await
    }

    async fn get_metadata(&self, environment: &str, address_key: &str) -> Result<Option<MetadataRow>> {
        batched(&self.metadata_lookups, environment, address_key).await
    }

    async fn latest_state(&self, environment: &str, address_key: &str) -> Result<Option<AuditRecord>> {
        self.live()?;
        let row = sqlx::query(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit WHERE environment = $1 AND address = $2 AND wallet_mac IS NOT NULL ORDER BY seq DESC LIMIT 1"
        ))
        .bind(environment)
        .bind(address_key)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_err("reading a wallet's history"))?;
        row.as_ref().map(audit_from_row).transpose().map_err(pg_err("reading a wallet's history"))
    }

    async fn webhook_event(&self, environment: &str, event_id: &str) -> Result<Option<(String, Vec<u8>)>> {
        self.live()?;
        sqlx::query_as("SELECT outcome, mac FROM webhook_events WHERE environment = $1 AND event_id = $2")
            .bind(environment)
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_err("reading a webhook event"))
    }

    async fn wallet_page(&self, environment: &str, after: Option<&str>, limit: u32) -> Result<Vec<WalletRow>> {
        self.live()?;
        let rows = sqlx::query(concat!(
            select_wallets!(),
            " WHERE w.environment = $1 AND ($2::text IS NULL OR w.address_key > $2) ORDER BY w.address_key LIMIT $3"
        ))
        .bind(environment)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(pg_err("reading wallets"))?;
        map_rows(rows, wallet_from_row, "reading wallets")
    }

    async fn list(&self, q: ListQuery) -> Result<Vec<MetadataRow>> {
        self.live()?;
        let rows = sqlx::query(concat!(
            select_metadata!(),
            " WHERE w.environment = $1 AND ($2::text IS NULL OR w.chain_name = $2) \
             AND ($3::text IS NULL OR w.address_key > $3) AND (CASE WHEN $5::text IS NULL \
             THEN left(w.address_key, 11) <> 'sharevault:' ELSE left(w.address_key, length($5)) = $5 END) \
             ORDER BY w.address_key LIMIT $4"
        ))
        .bind(&q.environment)
        .bind(&q.chain_name)
        .bind(&q.after)
        .bind(i64::from(q.limit))
        .bind(&q.prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(pg_err("listing wallets"))?;
        map_rows(rows, meta_from_row, "listing wallets")
    }

    async fn audit_log(&self, q: AuditQuery) -> Result<Vec<AuditRecord>> {
        self.live()?;
        // Two statements, not one `($1 IS NULL OR address = $1)`: the prepared statement's
        // generic plan would walk the log by seq for one wallet's rows. Without an address, `$1`
        // is still bound (NULL), so both take the same parameters.
        let sql = match q.address_key {
            Some(_) => concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit WHERE address = $1 AND seq > $2 AND environment = $4 ORDER BY seq LIMIT $3"
            ),
            None => concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit WHERE $1::text IS NULL AND seq > $2 AND environment = $4 ORDER BY seq LIMIT $3"
            ),
        };
        let rows = sqlx::query(sql)
            .bind(&q.address_key)
            .bind(q.after_seq.unwrap_or(0))
            .bind(i64::from(q.limit))
            .bind(&q.environment)
            .fetch_all(&self.pool)
            .await
            .map_err(pg_err("reading the audit log"))?;
        map_rows(rows, audit_from_row, "reading the audit log")
    }

    async fn audit_page(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>> {
        self.live()?;
        let rows =
            sqlx::query(concat!("SELECT ", audit_columns!(), " FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"))
                .bind(after_seq)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(pg_err("reading the audit log"))?;
        map_rows(rows, audit_from_row, "reading the audit log")
    }

    async fn bind_audit_key(&self, key: Arc<IntegrityKey>) -> Result<()> {
        self.send(Job::BindKey(key))
    }

    async fn audit_head(&self, environment: &str) -> Result<Option<SignedHead>> {
        self.live()?;
        let row = sqlx::query("SELECT environment, seq, hash, mac FROM audit_heads WHERE environment = $1")
            .bind(environment)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_err("reading the audit head"))?;
        row.map(|r| -> sqlx::Result<SignedHead> {
            Ok(SignedHead { environment: r.try_get(0)?, seq: r.try_get(1)?, hash: r.try_get(2)?, mac: r.try_get(3)? })
        })
        .transpose()
        .map_err(pg_err("reading the audit head"))
    }

    async fn repair_head(&self, entry: Option<AuditEntry>, how: HeadRepair) -> Result<i64> {
        ask(|tx| self.send(Job::Repair(entry, how, tx))).await
    }

    async fn compact(&self) -> Result<Compacted> {
        self.live()?;
        const SIZE: &str = "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
             WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace AND c.relname = ANY($1)";
        let names: Vec<String> = VAULT_TABLES.iter().map(|t| t.to_string()).collect();
        let size = |names: Vec<String>| async move {
            sqlx::query_scalar::<_, i64>(SIZE)
                .bind(names)
                .fetch_one(&self.pool)
                .await
                .map_err(pg_err("reading the size"))
        };
        let bytes_before = size(names.clone()).await? as u64;
        let present: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c WHERE c.relkind = 'r' \
             AND c.relnamespace = current_schema()::regnamespace AND c.relname = ANY($1) ORDER BY 1",
        )
        .bind(names.clone())
        .fetch_all(&self.pool)
        .await
        .map_err(pg_err("listing the vault's tables"))?;
        if !present.is_empty() {
            // Names from the fixed list above, as found in the catalogue: nothing user-supplied.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM (ANALYZE) {}", present.join(", "))))
                .execute(&self.pool)
                .await
                .map_err(pg_err("compacting (VACUUM)"))?;
        }
        Ok(Compacted { bytes_before, bytes_after: size(names).await? as u64, promise: POSTGRES_COMPACT_PROMISE })
    }

    async fn wallets_by_chain(&self, environment: &str) -> Result<Vec<(String, u64)>> {
        self.live()?;
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT chain_name, COUNT(*) FROM wallets WHERE environment = $1 AND left(address_key, 11) <> 'sharevault:' \
             GROUP BY chain_name ORDER BY chain_name",
        )
        .bind(environment)
        .fetch_all(&self.pool)
        .await
        .map_err(pg_err("counting the wallets"))?;
        Ok(rows.into_iter().map(|(c, n)| (c, n as u64)).collect())
    }

    fn schema(&self) -> (&'static str, i64) {
        ("postgres", i64::from(schema::SCHEMA_VERSION))
    }

    async fn environment_has_rows(&self, environment: &str) -> Result<bool> {
        self.live()?;
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM wallets WHERE environment = $1) \
             OR EXISTS (SELECT 1 FROM audit WHERE environment = $1)",
        )
        .bind(environment)
        .fetch_one(&self.pool)
        .await
        .map_err(pg_err("reading the environment's rows"))
    }

    async fn has_wallet_writes(&self, environment: &str) -> Result<bool> {
        self.live()?;
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM audit WHERE environment = $1 AND wallet_mac IS NOT NULL)")
            .bind(environment)
            .fetch_one(&self.pool)
            .await
            .map_err(pg_err("reading the environment's writes"))
    }

    async fn integrity_key(&self, environment: &str) -> Result<Option<WrappedKey>> {
        self.live()?;
        let row = sqlx::query(
            "SELECT kek_provider, kek_key_id, kek_key_version, wrapped FROM integrity_keys WHERE environment = $1",
        )
        .bind(environment)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_err("reading the integrity key"))?;
        row.map(|r| -> sqlx::Result<WrappedKey> {
            Ok(WrappedKey {
                kek: KekRef { provider: r.try_get(0)?, key_id: r.try_get(1)?, key_version: r.try_get(2)? },
                wrapped: r.try_get(3)?,
            })
        })
        .transpose()
        .map_err(pg_err("reading the integrity key"))
    }

    async fn put_integrity_key(&self, environment: &str, key: &WrappedKey) -> Result<()> {
        self.live()?;
        sqlx::query(
            "INSERT INTO integrity_keys (environment, kek_provider, kek_key_id, kek_key_version, wrapped, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (environment) DO NOTHING",
        )
        .bind(environment)
        .bind(&key.kek.provider)
        .bind(&key.kek.key_id)
        .bind(&key.kek.key_version)
        .bind(&key.wrapped)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(pg_err("storing the integrity key"))?;
        Ok(())
    }

    async fn keyring(&self, environment: &str) -> Result<KeyringRead> {
        self.live()?;
        let (lo, hi) = crate::keyring::log_address_range();
        // One snapshot for both reads (REPEATABLE READ): under the default READ COMMITTED each
        // statement would see the commits made before it, and a keyring change between them
        // would look like tampering.
        let mut tx = self.pool.begin().await.map_err(pg_err("reading the keyring"))?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(pg_err("reading the keyring"))?;
        let entries = sqlx::query(
            "SELECT environment, kek_provider, kek_key_id, kek_key_version, state, added_at, changed_at, version, \
             reencrypt_before, mac FROM keyring WHERE environment = $1 ORDER BY added_at, kek_provider, kek_key_id",
        )
        .bind(environment)
        .fetch_all(&mut *tx)
        .await
        .map_err(pg_err("reading the keyring"))?;
        let states = sqlx::query(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit WHERE seq IN (SELECT max(seq) FROM audit WHERE environment = $1 AND address >= $2 \
             AND address < $3 AND wallet_mac IS NOT NULL GROUP BY address) ORDER BY seq"
        ))
        .bind(environment)
        .bind(lo)
        .bind(hi)
        .fetch_all(&mut *tx)
        .await
        .map_err(pg_err("reading the keyring's history"))?;
        tx.commit().await.map_err(pg_err("reading the keyring"))?;
        Ok(KeyringRead {
            entries: map_rows(entries, keyring_from_row, "reading the keyring")?,
            states: map_rows(states, audit_from_row, "reading the keyring's history")?,
        })
    }

    async fn key_holders(&self, kek: &KekRef) -> Result<Vec<String>> {
        self.live()?;
        sqlx::query_scalar(
            "SELECT DISTINCT environment FROM keyring WHERE kek_provider = $1 AND kek_key_id = $2 ORDER BY 1",
        )
        .bind(&kek.provider)
        .bind(&kek.key_id)
        .fetch_all(&self.pool)
        .await
        .map_err(pg_err("reading the keyrings"))
    }

    async fn claim_behind(&self, q: ClaimQuery) -> Result<Claimed> {
        self.live()?;
        // SKIP LOCKED: rows another rotator is claiming right now are left to it, never waited for.
        let mut keys: Vec<String> = sqlx::query_scalar(concat!(
            "UPDATE wallets w SET rotation_claim = $1 FROM (SELECT environment, address_key FROM wallets \
             WHERE environment = $2 AND ($3::text IS NULL OR address_key > $3) AND ",
            behind_sql!("$4", "$5", "$6", "$7", "::bigint"),
            " AND (rotation_claim IS NULL OR rotation_claim < $8) ORDER BY address_key LIMIT $9 \
             FOR UPDATE SKIP LOCKED) c WHERE w.environment = c.environment AND w.address_key = c.address_key \
             RETURNING w.address_key"
        ))
        .bind(q.lease_until_ms)
        .bind(&q.environment)
        .bind(&q.after)
        .bind(&q.primary.provider)
        .bind(&q.primary.key_id)
        .bind(&q.primary.key_version)
        .bind(q.sealed_before)
        .bind(q.now_ms)
        .bind(i64::from(q.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(pg_err("claiming rows to rotate"))?;
        keys.sort();
        let mut held = 0;
        if keys.is_empty() {
            let n: i64 = sqlx::query_scalar(concat!(
                "SELECT count(*) FROM wallets WHERE environment = $1 AND ",
                behind_sql!("$2", "$3", "$4", "$5", "::bigint"),
                " AND rotation_claim >= $6"
            ))
            .bind(&q.environment)
            .bind(&q.primary.provider)
            .bind(&q.primary.key_id)
            .bind(&q.primary.key_version)
            .bind(q.sealed_before)
            .bind(q.now_ms)
            .fetch_one(&self.pool)
            .await
            .map_err(pg_err("counting claimed rows"))?;
            held = n as u64;
        }
        Ok(Claimed { keys, held })
    }

    async fn release_claims(&self, environment: &str, address_keys: Vec<String>) -> Result<()> {
        self.live()?;
        sqlx::query("UPDATE wallets SET rotation_claim = NULL WHERE environment = $1 AND address_key = ANY($2)")
            .bind(environment)
            .bind(&address_keys)
            .execute(&self.pool)
            .await
            .map_err(pg_err("releasing claims"))?;
        Ok(())
    }

    fn transport(&self) -> Option<String> {
        self.tls.lock().ok().and_then(|t| t.clone())
    }

    async fn close(&self) -> Result<()> {
        // Lookups already queued are answered; new ones are refused as closed.
        drop(self.lookups.lock().map_err(|_| Error::internal("reader queue poisoned"))?.take());
        drop(self.metadata_lookups.lock().map_err(|_| Error::internal("reader queue poisoned"))?.take());
        let sender = self.jobs.lock().map_err(|_| Error::internal("writer queue poisoned"))?.take();
        if let Some(s) = sender {
            let (tx, rx) = oneshot::channel();
            if s.send(Job::Close(tx)).is_ok() {
                let _ = rx.await;
            }
        }
        self.pool.close().await;
        Ok(())
    }
}
