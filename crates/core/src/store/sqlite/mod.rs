//! SQLite storage: one writer thread that group-commits (many callers' changes share one
//! transaction and one fsync, each isolated by a savepoint, each acknowledged only after COMMIT),
//! and a pool of reader connections used from tokio's blocking pool. WAL mode, `synchronous=FULL`,
//! `secure_delete=ON`, database file created with mode 0600.
//!
//! One concern per module: `location` (the option, files and connection settings), `schema`
//! (migrations), `writer` (group commit and shredding), `rows` (row mapping and statements).

mod location;
mod rows;
mod schema;
mod writer;

pub use location::Location;
pub use writer::SHRED_RETRY;

use super::{
    ask, behind_sql, Applied, AuditQuery, Change, ClaimQuery, Claimed, Compacted, HeadRepair, KeyringRead, ListQuery,
    MetadataRow, Migrated, Migrations, WalletRow, WalletStore, WrappedKey,
};
use crate::audit::{now_ms, AuditEntry, AuditRecord, SignedHead};
use crate::envelope::KekRef;
use crate::error::{Error, Result};
use crate::integrity::IntegrityKey;
use async_trait::async_trait;
use location::{configure, create_private_file};
use rows::{
    audit_from_row, get_head, meta_from_row, wallet_from_row, with_states, AUDIT_COLUMNS, SELECT_METADATA,
    SELECT_WALLETS,
};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use writer::{writer_loop, Job};

/// Idle reader connections kept open.
const MAX_IDLE_READERS: usize = 8;

/// A SQLite error as a vault error: the database cannot write or be reached (disk full, I/O
/// error, read-only file, cannot open, locked by another process past the busy timeout) is
/// `ERR_DB_UNAVAILABLE`, as a PostgreSQL outage is; anything else is `ERR_STORAGE`.
pub(super) fn db_err(context: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| {
        use rusqlite::ErrorCode as C;
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    C::DiskFull
                        | C::SystemIoFailure
                        | C::ReadOnly
                        | C::CannotOpen
                        | C::DatabaseBusy
                        | C::DatabaseLocked
                        | C::OutOfMemory
                ) =>
            {
                Error::db_unavailable(context, e)
            }
            _ => Error::storage(context, e),
        }
    }
}

pub struct SqliteStore {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// `None` for an in-memory database, whose only connection is the writer's.
    readers: Option<Arc<ReaderPool>>,
}

struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.idle.lock().map_err(|_| Error::internal("reader pool poisoned"))?.pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(db_err("opening a reader connection"))?;
                configure(&c, false)?;
                c
            }
        };
        let out = f(&conn);
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        out
    }
}

/// The writer's connection and, for a file, the reader pool. `create`: the file is created
/// (private) if missing; otherwise a missing file is an error. Not configured yet (see `configure`):
/// with migrations off, the schema is checked before anything is written to the file.
fn connect(location: &Location, create: bool) -> Result<(Connection, Option<Arc<ReaderPool>>)> {
    Ok(match location {
        Location::Memory => (Connection::open_in_memory().map_err(db_err("opening the database"))?, None),
        Location::File(path) => {
            let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            if create {
                create_private_file(path)?;
                flags |= OpenFlags::SQLITE_OPEN_CREATE;
            }
            // No SQLITE_OPEN_URI, and an absolute path: the name is a file name, never a URI.
            let conn = Connection::open_with_flags(path, flags).map_err(|e| {
                if !create && !path.exists() {
                    super::not_migrated(0, schema::SCHEMA_VERSION)
                } else {
                    db_err("opening the database")(e)
                }
            })?;
            (conn, Some(Arc::new(ReaderPool { path: path.clone(), idle: Mutex::new(Vec::new()) })))
        }
    })
}

/// `sharevault migrate` on SQLite: brings the schema up to date and closes.
pub(super) fn migrate_only(location: Location) -> Result<Migrated> {
    let (conn, _) = connect(&location, true)?;
    configure(&conn, true)?;
    let from = schema::migrate(&conn)?;
    Ok(Migrated { from, to: schema::SCHEMA_VERSION })
}

impl SqliteStore {
    /// Opens (creating and migrating if needed, unless migrations are off) the database, and
    /// starts the writer thread.
    pub fn open(location: Location, migrations: Migrations) -> Result<SqliteStore> {
        let (conn, readers) = match migrations {
            Migrations::OnOpen => {
                let (conn, readers) = connect(&location, true)?;
                configure(&conn, true)?;
                schema::migrate(&conn)?;
                (conn, readers)
            }
            // Nothing is created or changed (not even the journal mode) unless the schema is
            // this build's.
            Migrations::Never => {
                let (conn, readers) = connect(&location, false)?;
                conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db_err("setting the busy timeout"))?;
                schema::require_current(&conn)?;
                configure(&conn, true)?;
                (conn, readers)
            }
        };
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("sharevault-writer".into())
            .spawn(move || {
                crate::threads::started();
                writer_loop(conn, rx)
            })
            .map_err(|e| Error::internal(format!("starting the writer thread: {e}")))?;
        Ok(SqliteStore { jobs: Mutex::new(Some(tx)), readers })
    }

    fn send(&self, job: Job) -> Result<()> {
        let guard = self.jobs.lock().map_err(|_| Error::internal("writer queue poisoned"))?;
        match guard.as_ref() {
            Some(tx) => tx.send(job).map_err(|_| Error::closed()),
            None => Err(Error::closed()),
        }
    }

    /// Runs a read. `Inline` is for point reads (tens of microseconds on a WAL database, never
    /// waiting for the writer): they run on the runtime's worker, since a hop to the blocking
    /// pool costs more than the read. `Blocking` is for scans (lists, the whole audit log).
    async fn read<T, F>(&self, how: ReadKind, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        match &self.readers {
            Some(pool) => {
                if self.jobs.lock().map(|g| g.is_none()).unwrap_or(true) {
                    return Err(Error::closed());
                }
                match how {
                    ReadKind::Inline => pool.with(f),
                    ReadKind::Blocking => {
                        let pool = pool.clone();
                        tokio::task::spawn_blocking(move || pool.with(f))
                            .await
                            .map_err(|_| Error::internal("a database read panicked"))?
                    }
                }
            }
            None => self.on_writer(f).await,
        }
    }

    /// Runs `f` on the writer's connection, between batches.
    async fn on_writer<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        ask(|tx| {
            self.send(Job::Run(Box::new(move |c| {
                let _ = tx.send(f(c));
            })))
        })
        .await
    }
}

/// Runs `f` in one `BEGIN IMMEDIATE` transaction on `conn`.
fn in_transaction<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err("starting a transaction"))?;
    match f(conn) {
        Ok(v) => conn.execute_batch("COMMIT").map_err(db_err("committing")).map(|_| v),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

#[derive(Clone, Copy)]
enum ReadKind {
    Inline,
    Blocking,
}

/// What SQLite's compaction promises.
const SQLITE_COMPACT_PROMISE: &str = "secure_delete already zeroes a page's freed bytes when a row is deleted or replaced; \
     VACUUM rewrites the file without its free pages and truncates it, and the WAL is checkpointed and truncated. \
     Not covered: copies outside the file (filesystem journals, copy-on-write snapshots, an SSD's remapped blocks, backups)";

#[async_trait]
impl WalletStore for SqliteStore {
    async fn apply(&self, change: Change, audit: AuditEntry) -> Result<Applied> {
        ask(|tx| self.send(Job::Apply(Box::new(change), audit, tx))).await
    }

    async fn append_audit(&self, audit: AuditEntry) -> Result<()> {
        ask(|tx| self.send(Job::Audit(audit, tx))).await
    }

    async fn get(&self, environment: &str, address_key: &str) -> Result<Option<WalletRow>> {
        let (env, key) = (environment.to_string(), address_key.to_string());
        self.read(ReadKind::Inline, move |c| {
            c.prepare_cached(&format!("{SELECT_WALLETS} WHERE w.environment = ?1 AND w.address_key = ?2"))
                .and_then(|mut s| s.query_row([env, key], wallet_from_row).optional())
                .and_then(|found| with_states(c, found).map(|mut rows| rows.pop()))
                .map_err(db_err("reading a wallet"))
        })
        .await
    }

    async fn get_metadata(&self, environment: &str, address_key: &str) -> Result<Option<MetadataRow>> {
        let (env, key) = (environment.to_string(), address_key.to_string());
        self.read(ReadKind::Inline, move |c| {
            c.prepare_cached(&format!("{SELECT_METADATA} WHERE w.environment = ?1 AND w.address_key = ?2"))
                .and_then(|mut s| s.query_row([env, key], meta_from_row).optional())
                .and_then(|found| with_states(c, found).map(|mut rows| rows.pop()))
                .map_err(db_err("reading metadata"))
        })
        .await
    }

    async fn latest_state(&self, environment: &str, address_key: &str) -> Result<Option<AuditRecord>> {
        let (env, key) = (environment.to_string(), address_key.to_string());
        self.read(ReadKind::Inline, move |c| rows::latest_state(c, &env, &key)).await
    }

    async fn webhook_event(&self, environment: &str, event_id: &str) -> Result<Option<(String, Vec<u8>)>> {
        let (env, id) = (environment.to_string(), event_id.to_string());
        self.read(ReadKind::Inline, move |c| rows::webhook_event(c, &env, &id)).await
    }

    async fn wallet_page(&self, environment: &str, after: Option<&str>, limit: u32) -> Result<Vec<WalletRow>> {
        let (env, after) = (environment.to_string(), after.map(str::to_string));
        self.read(ReadKind::Blocking, move |c| {
            c.prepare_cached(&format!(
                "{SELECT_WALLETS} WHERE w.environment = ?1 AND (?2 IS NULL OR w.address_key > ?2) \
                 ORDER BY w.address_key LIMIT ?3"
            ))
            .and_then(|mut s| {
                s.query_map(params![env, after, limit], wallet_from_row)?.collect::<rusqlite::Result<Vec<_>>>()
            })
            .and_then(|rows| with_states(c, rows))
            .map_err(db_err("reading wallets"))
        })
        .await
    }

    async fn list(&self, q: ListQuery) -> Result<Vec<MetadataRow>> {
        self.read(ReadKind::Blocking, move |c| {
            c.prepare_cached(&format!(
                "{SELECT_METADATA} WHERE w.environment = ?1 AND (?2 IS NULL OR w.chain_name = ?2) \
                 AND (?3 IS NULL OR w.address_key > ?3) AND (CASE WHEN ?5 IS NULL \
                 THEN substr(w.address_key, 1, 11) <> 'sharevault:' \
                 ELSE substr(w.address_key, 1, length(?5)) = ?5 END) ORDER BY w.address_key LIMIT ?4"
            ))
            .and_then(|mut s| {
                s.query_map(params![q.environment, q.chain_name, q.after, q.limit, q.prefix], meta_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .and_then(|rows| with_states(c, rows))
            .map_err(db_err("listing wallets"))
        })
        .await
    }

    async fn audit_log(&self, q: AuditQuery) -> Result<Vec<AuditRecord>> {
        self.read(ReadKind::Blocking, move |c| {
            c.prepare_cached(&audit_log_sql(q.address_key.is_some()))
                .and_then(|mut s| {
                    s.query_map(
                        params![q.address_key, q.after_seq.unwrap_or(0), q.limit, q.environment],
                        audit_from_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db_err("reading the audit log"))
        })
        .await
    }

    async fn audit_page(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>> {
        self.read(ReadKind::Blocking, move |c| {
            c.prepare_cached(&format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"))
                .and_then(|mut s| {
                    s.query_map(params![after_seq, limit], audit_from_row)?.collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db_err("reading the audit log"))
        })
        .await
    }

    async fn bind_audit_key(&self, key: Arc<IntegrityKey>) -> Result<()> {
        self.send(Job::BindKey(key))
    }

    async fn audit_head(&self, environment: &str) -> Result<Option<SignedHead>> {
        let env = environment.to_string();
        self.read(ReadKind::Inline, move |c| get_head(c, &env)).await
    }

    async fn repair_head(&self, entry: Option<AuditEntry>, how: HeadRepair) -> Result<i64> {
        ask(|tx| self.send(Job::Repair(entry, how, tx))).await
    }

    async fn compact(&self) -> Result<Compacted> {
        self.on_writer(|c| {
            let size = |c: &Connection| -> Result<u64> {
                let pages: i64 =
                    c.query_row("PRAGMA page_count", [], |r| r.get(0)).map_err(db_err("reading the size"))?;
                let page: i64 =
                    c.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(db_err("reading the size"))?;
                Ok((pages * page) as u64)
            };
            let bytes_before = size(c)?;
            c.execute_batch("VACUUM").map_err(db_err("compacting (VACUUM)"))?;
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(db_err("checkpointing the WAL"))?;
            Ok(Compacted { bytes_before, bytes_after: size(c)?, promise: SQLITE_COMPACT_PROMISE })
        })
        .await
    }

    async fn wallets_by_chain(&self, environment: &str) -> Result<Vec<(String, u64)>> {
        let env = environment.to_string();
        self.read(ReadKind::Blocking, move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT chain_name, COUNT(*) FROM wallets WHERE environment = ?1 \
                     AND substr(address_key, 1, 11) <> 'sharevault:' GROUP BY chain_name ORDER BY chain_name",
                )
                .map_err(db_err("counting the wallets"))?;
            let rows = stmt
                .query_map([env], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
                .map_err(db_err("counting the wallets"))?;
            rows.collect::<std::result::Result<Vec<_>, _>>().map_err(db_err("counting the wallets"))
        })
        .await
    }

    fn schema(&self) -> (&'static str, i64) {
        ("sqlite", schema::SCHEMA_VERSION)
    }

    async fn environment_has_rows(&self, environment: &str) -> Result<bool> {
        let env = environment.to_string();
        self.read(ReadKind::Blocking, move |c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM wallets WHERE environment = ?1) \
                 OR EXISTS (SELECT 1 FROM audit WHERE environment = ?1)",
                [env],
                |r| r.get(0),
            )
            .map_err(db_err("reading the environment's rows"))
        })
        .await
    }

    async fn has_wallet_writes(&self, environment: &str) -> Result<bool> {
        let env = environment.to_string();
        self.read(ReadKind::Inline, move |c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM audit INDEXED BY audit_wallet_states WHERE environment = ?1 \
                 AND wallet_mac IS NOT NULL)",
                [env],
                |r| r.get(0),
            )
            .map_err(db_err("reading the environment's writes"))
        })
        .await
    }

    async fn integrity_key(&self, environment: &str) -> Result<Option<WrappedKey>> {
        let env = environment.to_string();
        self.read(ReadKind::Inline, move |c| {
            c.prepare_cached(
                "SELECT kek_provider, kek_key_id, kek_key_version, wrapped FROM integrity_keys WHERE environment = ?1",
            )
            .and_then(|mut s| {
                s.query_row([env], |r| {
                    Ok(WrappedKey {
                        kek: KekRef { provider: r.get(0)?, key_id: r.get(1)?, key_version: r.get(2)? },
                        wrapped: r.get(3)?,
                    })
                })
                .optional()
            })
            .map_err(db_err("reading the integrity key"))
        })
        .await
    }

    async fn put_integrity_key(&self, environment: &str, key: &WrappedKey) -> Result<()> {
        let (env, key) = (environment.to_string(), key.clone());
        self.on_writer(move |c| {
            c.execute(
                "INSERT INTO integrity_keys (environment, kek_provider, kek_key_id, kek_key_version, wrapped, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (environment) DO NOTHING",
                params![env, key.kek.provider, key.kek.key_id, key.kek.key_version, key.wrapped, now_ms()],
            )
            .map(|_| ())
            .map_err(db_err("storing the integrity key"))
        })
        .await
    }

    async fn keyring(&self, environment: &str) -> Result<KeyringRead> {
        let env = environment.to_string();
        self.read(ReadKind::Inline, move |c| {
            // One read transaction: in WAL mode, one snapshot for both statements.
            let tx = c.unchecked_transaction().map_err(db_err("reading the keyring"))?;
            let entries = rows::keyring(&tx, &env)?;
            let states = rows::keyring_states(&tx, &env)?;
            tx.commit().map_err(db_err("reading the keyring"))?;
            Ok(KeyringRead { entries, states })
        })
        .await
    }

    async fn key_holders(&self, kek: &KekRef) -> Result<Vec<String>> {
        let (provider, key_id) = (kek.provider.clone(), kek.key_id.clone());
        self.read(ReadKind::Inline, move |c| {
            c.prepare_cached(
                "SELECT DISTINCT environment FROM keyring WHERE kek_provider = ?1 AND kek_key_id = ?2 ORDER BY 1",
            )
            .and_then(|mut s| s.query_map([provider, key_id], |r| r.get(0))?.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db_err("reading the keyrings"))
        })
        .await
    }

    async fn claim_behind(&self, q: ClaimQuery) -> Result<Claimed> {
        // On the writer's connection, in a transaction: a claim is a write (another process's
        // claims wait for it). Leases that ran out are cleared first, so a row is claimed when no
        // lease on it is running.
        self.on_writer(move |c| {
            in_transaction(c, |c| {
                c.prepare_cached("DELETE FROM rotation_claims WHERE environment = ?1 AND until < ?2")
                    .and_then(|mut s| s.execute(params![q.environment, q.now_ms]))
                    .map_err(db_err("clearing finished claims"))?;
                let mut keys = c
                    .prepare_cached(concat!(
                        "INSERT INTO rotation_claims (environment, address_key, until) \
                         SELECT w.environment, w.address_key, ?1 FROM wallets w \
                         WHERE w.environment = ?2 AND (?3 IS NULL OR w.address_key > ?3) AND ",
                        behind_sql!("?4", "?5", "?6", "?7", ""),
                        " AND NOT EXISTS (SELECT 1 FROM rotation_claims c WHERE c.environment = w.environment \
                         AND c.address_key = w.address_key) ORDER BY w.address_key LIMIT ?8 \
                         RETURNING address_key"
                    ))
                    .and_then(|mut s| {
                        s.query_map(
                            params![
                                q.lease_until_ms,
                                q.environment,
                                q.after,
                                q.primary.provider,
                                q.primary.key_id,
                                q.primary.key_version,
                                q.sealed_before,
                                q.limit
                            ],
                            |r| r.get::<_, String>(0),
                        )?
                        .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(db_err("claiming rows to rotate"))?;
                keys.sort();
                let held = if keys.is_empty() {
                    c.prepare_cached(concat!(
                        "SELECT count(*) FROM wallets w JOIN rotation_claims c ON c.environment = w.environment \
                         AND c.address_key = w.address_key WHERE w.environment = ?1 AND ",
                        behind_sql!("?2", "?3", "?4", "?5", ""),
                    ))
                    .and_then(|mut s| {
                        s.query_row(
                            params![
                                q.environment,
                                q.primary.provider,
                                q.primary.key_id,
                                q.primary.key_version,
                                q.sealed_before
                            ],
                            |r| r.get::<_, i64>(0),
                        )
                    })
                    .map_err(db_err("counting claimed rows"))? as u64
                } else {
                    0
                };
                Ok(Claimed { keys, held })
            })
        })
        .await
    }

    async fn release_claims(&self, environment: &str, address_keys: Vec<String>) -> Result<()> {
        let env = environment.to_string();
        self.on_writer(move |c| {
            in_transaction(c, |c| {
                let mut s = c.prepare_cached(rows::END_CLAIM).map_err(db_err("releasing claims"))?;
                for k in &address_keys {
                    s.execute(params![env, k]).map_err(db_err("releasing claims"))?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        let sender = self.jobs.lock().map_err(|_| Error::internal("writer queue poisoned"))?.take();
        if let Some(s) = sender {
            if s.send(Job::Close(tx)).is_ok() {
                let _ = rx.await;
            }
        }
        if let Some(pool) = &self.readers {
            if let Ok(mut idle) = pool.idle.lock() {
                idle.clear();
            }
        }
        Ok(())
    }
}

/// `audit_log`'s statement: two, not one `(?1 IS NULL OR address = ?1)`, with which SQLite walks
/// the whole log by seq for one wallet's rows (a read that grew with the log). Without an
/// address, `?1` is still bound (NULL), so both take the same parameters.
fn audit_log_sql(by_address: bool) -> String {
    let filter = if by_address { "address = ?1" } else { "?1 IS NULL" };
    format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE {filter} AND seq > ?2 AND environment = ?4 ORDER BY seq LIMIT ?3")
}

#[cfg(test)]
mod tests {
    use super::{audit_log_sql, db_err, schema};
    use crate::error::ErrorCode;

    /// One wallet's audit rows are read through its index, not by walking the log.
    #[test]
    fn the_audit_log_of_one_wallet_is_read_through_its_index() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        schema::migrate(&conn).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", audit_log_sql(true)))
            .unwrap()
            .query_map(rusqlite::params!["0xabc", 0, 20, "test"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(plan.iter().any(|step| step.contains("USING INDEX audit_by_address")), "{plan:?}");
    }

    /// Disk full, I/O errors, a read-only or unopenable file, a lock held past the timeout: the
    /// database cannot write, which is ERR_DB_UNAVAILABLE as on PostgreSQL. (Faults a test running
    /// as root cannot provoke on a real file: root writes through read-only modes.)
    #[test]
    fn sqlite_faults_that_mean_the_database_cannot_write_are_unavailable() {
        use rusqlite::ffi;
        let err = |code| rusqlite::Error::SqliteFailure(ffi::Error::new(code), None);
        for code in [ffi::SQLITE_FULL, ffi::SQLITE_IOERR, ffi::SQLITE_READONLY, ffi::SQLITE_CANTOPEN, ffi::SQLITE_BUSY]
        {
            assert_eq!(db_err("writing")(err(code)).code, ErrorCode::DbUnavailable, "{code}");
        }
        for code in [ffi::SQLITE_CONSTRAINT, ffi::SQLITE_CORRUPT, ffi::SQLITE_MISMATCH] {
            assert_eq!(db_err("writing")(err(code)).code, ErrorCode::Storage, "{code}");
        }
    }
}
