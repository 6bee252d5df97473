//! SQLite storage: one writer thread that group-commits (many callers' changes share one
//! transaction and one fsync, each isolated by a savepoint, each acknowledged only after COMMIT),
//! and a pool of reader connections used from tokio's blocking pool. WAL mode, `synchronous=FULL`,
//! `secure_delete=ON`, database file created with mode 0600.

use super::{Applied, AuditQuery, Change, ListQuery, MetadataRow, WalletRow, WalletStore};
use crate::audit::{entry_hash, AuditEntry, AuditRecord, GENESIS};
use crate::envelope::{KekRef, SealedRecord};
use crate::error::{Error, ErrorCode, Result};
use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The newest schema this build knows.
const SCHEMA_VERSION: i64 = 1;
const MIGRATIONS: &[&str] = &[r#"
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
"#];

const WALLET_COLUMNS: &str =
    "address, address_key, wallet_id, chain_name, environment, metadata, version, generation, \
     format, alg, kek_provider, kek_key_id, kek_key_version, wrapped_dek, nonce, ciphertext";
const META_COLUMNS: &str = "address_key, wallet_id, chain_name, environment, metadata, version, generation";
const AUDIT_COLUMNS: &str =
    "seq, at, environment, actor, action, address, wallet_id, purpose, outcome, prev_hash, hash";
/// How many queued jobs one transaction may take.
const MAX_BATCH: usize = 512;
/// Idle reader connections kept open.
const MAX_IDLE_READERS: usize = 8;

fn db_err(context: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::storage(context, e)
}

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An absolute path: SQLite interprets a file name as a URI only when it starts with
    /// `file:` (the bundled library is built with `SQLITE_USE_URI`, so not asking for URIs is not
    /// enough), and an absolute path never does. It also keeps the reader connections on the
    /// same file if the process changes directory.
    File(PathBuf),
    Memory,
}

/// The scheme of a URL-looking string (`file:…`, `postgres://…`), if it has one. A one-letter
/// "scheme" is a Windows drive letter, not a scheme.
fn url_scheme(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    (valid && scheme.len() > 1).then_some(scheme)
}

impl Location {
    /// `sqlite://path`, `sqlite:path`, a plain path, or `:memory:`. `file:` URIs and every other
    /// scheme are refused, never taken for a file name.
    pub fn parse(database: &str) -> Result<Location> {
        let bad = |m: String| Error::invalid("database", m);
        if database.contains('\0') {
            return Err(bad("contains a NUL byte".into()));
        }
        let lower = database.to_ascii_lowercase();
        let rest = if lower.starts_with("sqlite://") {
            &database[9..]
        } else if lower.starts_with("sqlite:") {
            &database[7..]
        } else {
            database
        };
        let is_url = rest.len() != database.len();
        if rest.is_empty() {
            return Err(bad("must name a file, or ':memory:'".into()));
        }
        if rest == ":memory:" {
            return Ok(Location::Memory);
        }
        if let Some(scheme) = url_scheme(rest) {
            return Err(bad(if scheme.eq_ignore_ascii_case("file") {
                "file: URIs are not accepted (SQLite would read them as URIs: ':memory:' variants and \
                 query parameters silently change where data goes); use sqlite://path, a plain path, or ':memory:'"
                    .into()
            } else if is_url {
                format!("names a file that looks like a '{scheme}:' URL; use sqlite://path or a plain path")
            } else {
                format!("'{scheme}:' databases are not supported; use sqlite://path, a plain path, or ':memory:'")
            }));
        }
        if is_url && (rest.contains('?') || rest.contains('#')) {
            return Err(bad("sqlite:// URLs take no query parameters or fragments".into()));
        }
        let path = std::path::absolute(rest).map_err(|e| bad(format!("is not a usable path: {e}")))?;
        Ok(Location::File(path))
    }
}

enum Job {
    Apply(Box<Change>, AuditEntry, oneshot::Sender<Result<Applied>>),
    Audit(AuditEntry, oneshot::Sender<Result<()>>),
    Read(Box<dyn FnOnce(&Connection) + Send>),
    Close(oneshot::Sender<()>),
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

fn configure(conn: &Connection, writer: bool) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db_err("setting the busy timeout"))?;
    conn.pragma_update(None, "secure_delete", "ON").map_err(db_err("enabling secure_delete"))?;
    if writer {
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db_err("enabling WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(db_err("setting synchronous=FULL"))?;
    }
    Ok(())
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

#[cfg(unix)]
fn create_private_file(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::storage("creating the database file", e)),
    }
}

#[cfg(not(unix))]
fn create_private_file(_path: &std::path::Path) -> Result<()> {
    Ok(())
}

fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err("starting the migration"))?;
    let run = || -> Result<()> {
        let current: i64 =
            conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_err("reading the schema version"))?;
        if current > SCHEMA_VERSION {
            return Err(Error::new(
                ErrorCode::Storage,
                format!("the database has schema version {current}, newer than this sharevault ({SCHEMA_VERSION})"),
            ));
        }
        let current = usize::try_from(current)
            .map_err(|_| Error::new(ErrorCode::Storage, "the database has a negative schema version"))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            conn.execute_batch(sql).map_err(db_err("running a migration"))?;
            conn.pragma_update(None, "user_version", (i + 1) as i64).map_err(db_err("recording the schema version"))?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => conn.execute_batch("COMMIT").map_err(db_err("committing the migration")),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database, and starts the writer thread.
    pub fn open(location: Location) -> Result<SqliteStore> {
        let (conn, readers) = match &location {
            Location::Memory => (Connection::open_in_memory().map_err(db_err("opening the database"))?, None),
            Location::File(path) => {
                create_private_file(path)?;
                // No SQLITE_OPEN_URI, and an absolute path: the name is a file name, never a URI.
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(db_err("opening the database"))?;
                (conn, Some(Arc::new(ReaderPool { path: path.clone(), idle: Mutex::new(Vec::new()) })))
            }
        };
        configure(&conn, true)?;
        migrate(&conn)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("sharevault-writer".into())
            .spawn(move || writer_loop(conn, rx))
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
            None => {
                let (tx, rx) = oneshot::channel();
                self.send(Job::Read(Box::new(move |c| {
                    let _ = tx.send(f(c));
                })))?;
                rx.await.map_err(|_| Error::closed())?
            }
        }
    }
}

#[derive(Clone, Copy)]
enum ReadKind {
    Inline,
    Blocking,
}

fn kek_of(r: &Row<'_>, base: usize) -> rusqlite::Result<KekRef> {
    Ok(KekRef { provider: r.get(base)?, key_id: r.get(base + 1)?, key_version: r.get(base + 2)? })
}

fn wallet_from_row(r: &Row<'_>) -> rusqlite::Result<WalletRow> {
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

fn meta_from_row(r: &Row<'_>) -> rusqlite::Result<MetadataRow> {
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

fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
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

fn apply_change(conn: &Connection, change: &Change, now: i64) -> Result<Applied> {
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
                Err(e) => Err(Error::storage("storing a wallet", e)),
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

struct ChainHead {
    seq: i64,
    hash: Vec<u8>,
}

fn chain_head(conn: &Connection) -> Result<ChainHead> {
    let head = conn
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        .and_then(|mut s| s.query_row([], |r| Ok(ChainHead { seq: r.get(0)?, hash: r.get(1)? })).optional())
        .map_err(db_err("reading the audit chain"))?;
    Ok(head.unwrap_or(ChainHead { seq: 0, hash: GENESIS.to_vec() }))
}

fn insert_audit(conn: &Connection, head: &ChainHead, e: &AuditEntry) -> Result<ChainHead> {
    let seq = head.seq + 1;
    let hash = entry_hash(&head.hash, seq, e).to_vec();
    conn.prepare_cached(&format!(
        "INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            seq,
            e.at_ms,
            e.environment,
            e.actor,
            e.action,
            e.address,
            e.wallet_id,
            e.purpose,
            e.outcome,
            head.hash,
            hash
        ])
    })
    .map_err(db_err("writing the audit log"))?;
    Ok(ChainHead { seq, hash })
}

enum Reply {
    Apply(oneshot::Sender<Result<Applied>>, Result<Applied>),
    Audit(oneshot::Sender<Result<()>>, Result<()>),
}

impl Reply {
    fn fail_if_ok(self, err: &Error) -> Reply {
        match self {
            Reply::Apply(tx, Ok(_)) => Reply::Apply(tx, Err(err.clone())),
            Reply::Audit(tx, Ok(())) => Reply::Audit(tx, Err(err.clone())),
            other => other,
        }
    }

    fn send(self) {
        match self {
            Reply::Apply(tx, r) => {
                let _ = tx.send(r);
            }
            Reply::Audit(tx, r) => {
                let _ = tx.send(r);
            }
        }
    }
}

/// Pushes every committed page into the database file and empties the WAL (`TRUNCATE`), waiting
/// (through the busy handler) for readers that still hold older snapshots. With `secure_delete`,
/// the new pages hold zeros where a deleted or replaced record was, so afterwards no byte of it
/// is left in the database, its WAL or its shared-memory file. Returns whether it completed.
fn shred(conn: &Connection) -> bool {
    // A memory database has no files: nothing lingers. `busy` is 1 when a reader kept the
    // checkpoint from completing; the log then still holds frames.
    let r: rusqlite::Result<(i64, i64, i64)> =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)));
    match r {
        Ok((busy, log, _)) => busy == 0 && log <= 0,
        Err(_) => false,
    }
}

/// How often a shred that a long reader kept from completing is retried, busy or idle.
pub const SHRED_RETRY: Duration = Duration::from_secs(1);

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut shred_pending = false;
    let mut last_try = Instant::now();
    loop {
        // While a shred is pending, wake at least every SHRED_RETRY even with nothing queued.
        let first = if shred_pending {
            match rx.recv_timeout(SHRED_RETRY) {
                Ok(j) => Some(j),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(j) => Some(j),
                Err(_) => break,
            }
        };
        batch.extend(first);
        while !batch.is_empty() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut close: Option<oneshot::Sender<()>> = None;
        let mut writes = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            match job {
                Job::Read(f) => f(&conn),
                Job::Close(tx) => close = Some(tx),
                w => writes.push(w),
            }
        }
        // Retried at most once a second: each try may wait out the busy timeout on a reader.
        if shred_pending && close.is_none() && last_try.elapsed() >= SHRED_RETRY {
            shred_pending = !shred(&conn);
            last_try = Instant::now();
        }
        if !writes.is_empty() && commit_batch(&conn, writes) {
            shred_pending = true;
            last_try = Instant::now();
        }
        if let Some(tx) = close {
            // Anything queued behind the close is refused as closed when its sender drops.
            shred(&conn);
            drop(conn);
            let _ = tx.send(());
            return;
        }
    }
    // Every handle is gone without a close: finish a pending shred before the connection goes.
    if shred_pending {
        shred(&conn);
    }
}

/// Commits a batch and answers its callers; returns whether a shred is still pending.
fn commit_batch(conn: &Connection, writes: Vec<Job>) -> bool {
    let now = crate::audit::now_ms();
    let mut replies = Vec::with_capacity(writes.len());
    let mut shredded = false;
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let err = Error::storage("starting a transaction", e);
        for job in writes {
            match job {
                Job::Apply(_, _, tx) => Reply::Apply(tx, Err(err.clone())).send(),
                Job::Audit(_, tx) => Reply::Audit(tx, Err(err.clone())).send(),
                _ => {}
            }
        }
        return false;
    }
    let mut head = chain_head(conn);
    let mut aborted = false;
    let mut remaining = writes.into_iter();
    for job in remaining.by_ref() {
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            let err = Error::storage("starting a savepoint", e);
            match job {
                Job::Apply(_, _, tx) => replies.push(Reply::Apply(tx, Err(err))),
                Job::Audit(_, tx) => replies.push(Reply::Audit(tx, Err(err))),
                _ => {}
            }
            continue;
        }
        let (reply, next_head) = match job {
            Job::Apply(change, audit, tx) => {
                let r = head.as_ref().map_err(Clone::clone).and_then(|h| {
                    let applied = apply_change(conn, &change, now)?;
                    if applied == Applied::Done {
                        let nh = insert_audit(conn, h, &audit)?;
                        Ok((applied, Some(nh)))
                    } else {
                        Ok((applied, None))
                    }
                });
                if matches!(r, Ok((Applied::Done, _)))
                    && matches!(*change, Change::Delete { .. } | Change::ReplaceShares { .. })
                {
                    shredded = true;
                }
                match r {
                    Ok((a, nh)) => (Reply::Apply(tx, Ok(a)), nh),
                    Err(e) => (Reply::Apply(tx, Err(e)), None),
                }
            }
            Job::Audit(audit, tx) => {
                match head.as_ref().map_err(Clone::clone).and_then(|h| insert_audit(conn, h, &audit)) {
                    Ok(nh) => (Reply::Audit(tx, Ok(())), Some(nh)),
                    Err(e) => (Reply::Audit(tx, Err(e)), None),
                }
            }
            _ => continue,
        };
        let failed = matches!(&reply, Reply::Apply(_, Err(_)) | Reply::Audit(_, Err(_)));
        if failed {
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
        } else {
            let _ = conn.execute_batch("RELEASE job");
            if let Some(nh) = next_head {
                head = Ok(nh);
            }
        }
        replies.push(reply);
        // Some errors (disk full, I/O, out of memory) make SQLite roll back the whole
        // transaction. Nothing in this batch is durable then: fail every job, never let the
        // next job's savepoint open (and commit) a transaction of its own.
        if conn.is_autocommit() {
            aborted = true;
            break;
        }
    }
    if aborted {
        let err = Error::storage("committing", "the transaction was rolled back by the database");
        for r in replies {
            r.fail_if_ok(&err).send();
        }
        for job in remaining {
            match job {
                Job::Apply(_, _, tx) => Reply::Apply(tx, Err(err.clone())).send(),
                Job::Audit(_, tx) => Reply::Audit(tx, Err(err.clone())).send(),
                _ => {}
            }
        }
        return false;
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        let err = Error::storage("committing", e);
        for r in replies {
            r.fail_if_ok(&err).send();
        }
        return false;
    }
    // Before anyone hears of a delete or a replace: a resolved `deleteWallet` promises that no
    // byte of the wallet's wrapped key or sealed record is left in any of the database's files.
    let pending = shredded && !shred(conn);
    for r in replies {
        r.send();
    }
    pending
}

#[async_trait]
impl WalletStore for SqliteStore {
    async fn apply(&self, change: Change, audit: AuditEntry) -> Result<Applied> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Apply(Box::new(change), audit, tx))?;
        rx.await.map_err(|_| Error::closed())?
    }

    async fn append_audit(&self, audit: AuditEntry) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Audit(audit, tx))?;
        rx.await.map_err(|_| Error::closed())?
    }

    async fn get(&self, address_key: &str) -> Result<Option<WalletRow>> {
        let key = address_key.to_string();
        self.read(ReadKind::Inline, move |c| {
            c.prepare_cached(&format!("SELECT {WALLET_COLUMNS} FROM wallets WHERE address_key = ?1"))
                .and_then(|mut s| s.query_row([key], wallet_from_row).optional())
                .map_err(db_err("reading a wallet"))
        })
        .await
    }

    async fn get_metadata(&self, address_key: &str) -> Result<Option<MetadataRow>> {
        let key = address_key.to_string();
        self.read(ReadKind::Inline, move |c| {
            c.prepare_cached(&format!("SELECT {META_COLUMNS} FROM wallets WHERE address_key = ?1"))
                .and_then(|mut s| s.query_row([key], meta_from_row).optional())
                .map_err(db_err("reading metadata"))
        })
        .await
    }

    async fn list(&self, q: ListQuery) -> Result<Vec<MetadataRow>> {
        self.read(ReadKind::Blocking, move |c| {
            c.prepare_cached(&format!(
                "SELECT {META_COLUMNS} FROM wallets WHERE environment = ?1 AND (?2 IS NULL OR chain_name = ?2) \
                 AND (?3 IS NULL OR address_key > ?3) ORDER BY address_key LIMIT ?4"
            ))
            .and_then(|mut s| {
                s.query_map(params![q.environment, q.chain_name, q.after, q.limit], meta_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(db_err("listing wallets"))
        })
        .await
    }

    async fn audit_log(&self, q: AuditQuery) -> Result<Vec<AuditRecord>> {
        self.read(ReadKind::Blocking, move |c| {
            c.prepare_cached(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE (?1 IS NULL OR address = ?1) AND seq > ?2 \
                 ORDER BY seq LIMIT ?3"
            ))
            .and_then(|mut s| {
                s.query_map(params![q.address_key, q.after_seq.unwrap_or(0), q.limit], audit_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(db_err("reading the audit log"))
        })
        .await
    }

    async fn audit_all(&self) -> Result<Vec<AuditRecord>> {
        self.read(ReadKind::Blocking, move |c| {
            c.prepare(&format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq"))
                .and_then(|mut s| s.query_map([], audit_from_row)?.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(db_err("reading the audit log"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_options_are_parsed_strictly() {
        assert_eq!(Location::parse(":memory:").unwrap(), Location::Memory);
        assert_eq!(Location::parse("sqlite://:memory:").unwrap(), Location::Memory);
        assert_eq!(Location::parse("sqlite::memory:").unwrap(), Location::Memory);
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(Location::parse("vault.db").unwrap(), Location::File(cwd.join("vault.db")));
        assert_eq!(Location::parse("sqlite://./vault.db").unwrap(), Location::File(cwd.join("./vault.db")));
        assert_eq!(Location::parse("sqlite:///tmp/v.db").unwrap(), Location::File(PathBuf::from("/tmp/v.db")));
        for bad in [
            "",
            "sqlite://",
            "file::memory:",
            "file:vault.db",
            "FILE:vault.db",
            "file:///tmp/vault.db",
            "sqlite://file:vault.db",
            "sqlite://vault.db?mode=memory",
            "postgres://localhost/db",
            "mysql://localhost/db",
            "vault\0.db",
        ] {
            let e = Location::parse(bad).unwrap_err();
            assert_eq!(e.path.as_deref(), Some("database"), "{bad:?} was accepted");
        }
    }
}
