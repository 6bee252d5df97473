//! Storage: the trait the vault writes through, [`open`] that picks the backend from the
//! `database` option, and the backends. All SQL lives in this module tree.

pub mod postgres;
pub mod sqlite;

use crate::audit::{AuditEntry, AuditRecord, SignedHead};
use crate::envelope::{KekRef, SealedRecord};
use crate::error::{Error, ErrorCode, Result};
use crate::integrity::IntegrityKey;
use crate::keyring::KeyringEntry;
use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Hands a backend's writer (or reader) a job that carries its reply channel, and waits for the
/// reply. A writer that is gone, or drops the job unanswered at close, means the store is closed.
pub(crate) async fn ask<T>(send: impl FnOnce(oneshot::Sender<Result<T>>) -> Result<()>) -> Result<T> {
    let (tx, rx) = oneshot::channel();
    send(tx)?;
    rx.await.map_err(|_| Error::closed())?
}

/// Where a vault's data lives, parsed strictly from the `database` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Sqlite(sqlite::Location),
    Postgres(Box<postgres::PgTarget>),
}

/// Options of the store besides its location.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Allow a PostgreSQL connection without TLS to a host that is not loopback.
    pub allow_insecure_transport: bool,
    /// Allow a PostgreSQL connection over TLS 1.2 (an old server); TLS 1.3 is required otherwise.
    pub allow_tls12: bool,
    /// PostgreSQL connection pool (ignored by SQLite).
    pub pool: postgres::PoolConfig,
    /// Whether opening may create or upgrade the schema.
    pub migrations: Migrations,
}

/// Whether [`open`] may change the schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Migrations {
    /// Create the schema, or bring it up to date, when opening (the default).
    #[default]
    OnOpen,
    /// Never run DDL: a schema that is missing or older than this build is refused, so the
    /// application's database role needs no `CREATE` or `ALTER` (run [`migrate`] separately).
    Never,
}

/// What [`migrate`] found and left: schema versions (0: no schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub from: i64,
    pub to: i64,
}

/// The refusal of a schema that is older than this build when migrations are off.
fn not_migrated(current: i64, wanted: i64) -> Error {
    Error::new(
        ErrorCode::Storage,
        format!(
            "the database has schema version {current} and this sharevault needs {wanted}, and migrations are off \
             (migrate: false): run `sharevault migrate` (or `migrate()`) with a role that may create tables"
        ),
    )
}

/// Applies the embedded migrations to the database `database` names and returns; starts no
/// writer. Concurrent runs (and opens) migrate once. The command behind `sharevault migrate`.
pub async fn migrate(database: &str, options: &StoreOptions) -> Result<Migrated> {
    match Target::parse(database, options)? {
        Target::Postgres(target) => postgres::migrate_only(*target, options.pool, options.allow_tls12).await,
        Target::Sqlite(location) => tokio::task::spawn_blocking(move || sqlite::migrate_only(location))
            .await
            .map_err(|_| Error::internal("migrating the database panicked"))?,
    }
}

impl Target {
    /// `postgres://…` or `postgresql://…`; `sqlite://path`, `sqlite:path`, a plain path, or
    /// `:memory:`. Anything that looks like a URL of another scheme (`file:`, `mysql://` …) is
    /// refused rather than taken for a file name: a store that reports success into a database
    /// nobody will read again is the worst outcome there is.
    pub fn parse(database: &str, options: &StoreOptions) -> Result<Target> {
        let lower = database.get(..13).unwrap_or(database).to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Ok(Target::Postgres(Box::new(postgres::PgTarget::parse(
                database,
                options.allow_insecure_transport,
            )?)));
        }
        Ok(Target::Sqlite(sqlite::Location::parse(database)?))
    }
}

/// Opens (creating and migrating if needed) the store the `database` option names, dispatching
/// on its form; what it does not know is refused with `ERR_INVALID_INPUT` (path `database`).
pub async fn open(database: &str, options: &StoreOptions) -> Result<Arc<dyn WalletStore>> {
    match Target::parse(database, options)? {
        Target::Postgres(target) => {
            Ok(Arc::new(postgres::PgStore::open(*target, options.pool, options.migrations, options.allow_tls12).await?))
        }
        Target::Sqlite(location) => {
            let migrations = options.migrations;
            let store = tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(location, migrations))
                .await
                .map_err(|_| Error::internal("opening the database panicked"))??;
            Ok(Arc::new(store))
        }
    }
}

/// A stored wallet: identity columns, the whole metadata JSON, and the current sealed shares.
#[derive(Debug, Clone)]
pub struct WalletRow {
    pub address: String,
    pub address_key: String,
    pub wallet_id: String,
    pub chain_name: String,
    pub environment: String,
    pub metadata_json: String,
    /// Bumped by every change; writers compare-and-swap on it so no update is lost.
    pub version: i64,
    /// The share generation the sealed record belongs to (part of its AAD).
    pub generation: i64,
    pub sealed: SealedRecord,
    /// The row's MAC (see `integrity`); `None` on a row written before rows were authenticated.
    pub mac: Option<Vec<u8>>,
    /// Read only: the stored digest of the sealed record (see `MetadataRow`); written from
    /// `RowAuth`.
    pub sealed_digest: Option<Vec<u8>>,
    /// Read only: the audit row of this environment that records the wallet's latest write
    /// (its `wallet_mac` is the row MAC written, empty for a deletion); `None` if the log holds
    /// none. Trusted only once its own MAC verifies (see `tamper`).
    pub state: Option<AuditRecord>,
}

/// Metadata only: what `getMetadata` and `listWallets` read (no sealed bytes).
#[derive(Debug, Clone)]
pub struct MetadataRow {
    pub address: String,
    pub address_key: String,
    pub wallet_id: String,
    pub chain_name: String,
    pub environment: String,
    pub metadata_json: String,
    pub version: i64,
    pub generation: i64,
    /// The stored digest of the sealed record (the row MAC covers it), so a metadata read can
    /// check the MAC without reading the sealed bytes.
    pub sealed_digest: Option<Vec<u8>>,
    pub mac: Option<Vec<u8>>,
    /// As `WalletRow::state`.
    pub state: Option<AuditRecord>,
}

/// What authenticates a row as written: its MAC and the digest of its sealed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowAuth {
    pub mac: Vec<u8>,
    pub sealed_digest: Vec<u8>,
}

/// What [`WalletStore::repair_head`] may do to an environment's authenticated head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadRepair {
    /// Make the environment's first head (only if it has none).
    Create,
    /// Replace a head that is missing, fails its MAC, or is no longer in the log (only then).
    Acknowledge,
}

/// A key stored wrapped under the key provider's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub kek: KekRef,
    pub wrapped: Vec<u8>,
}

/// A change, written together with its audit row in one transaction.
#[derive(Debug)]
pub enum Change {
    /// A new wallet; `ERR_CONFLICT` if the address is already stored. Only if the latest audit
    /// row recording the address's state (see [`WalletStore::latest_state`]) is still the one at
    /// `state_seq` (`None`: there is none), read and checked by the caller: `Stale` otherwise
    /// (a delete or a store committed in between, in this batch or another process's). So what
    /// the caller concluded from the history (deleted, never stored) still holds when it inserts.
    Insert { row: Box<WalletRow>, auth: RowAuth, state_seq: Option<i64> },
    /// New metadata, same shares; only if the row is still at `expected_version`.
    UpdateMetadata { address_key: String, expected_version: i64, metadata_json: String, auth: RowAuth },
    /// New metadata and a new sealed generation; only if the row is still at `expected_version`.
    ReplaceShares {
        address_key: String,
        expected_version: i64,
        metadata_json: String,
        generation: i64,
        sealed: SealedRecord,
        auth: RowAuth,
    },
    /// Removes the row: metadata, sealed shares and wrapped data key.
    Delete { address_key: String },
    /// Sets the MAC of an existing row as it is (the explicit operator step for rows written
    /// before rows were authenticated); only if the row is still at `expected_version`.
    Authenticate { address_key: String, expected_version: i64, auth: RowAuth },
    /// A rotation's write: the row's sealed record (re-wrapped data key, or, `reencrypted`, a new
    /// data key and ciphertext) and its times, same metadata and generation; only if the row is
    /// still at `expected_version`. Re-encrypted, it is shredded like a replace: no byte of the
    /// old wrapped key or ciphertext is left in the files when it is acknowledged. Re-wrapped
    /// (the same data key and ciphertext, the old wrapped key useless without the old key), it is
    /// shredded within a second (`SHRED_RETRY`), not before each acknowledgement: a rotation then
    /// costs one checkpoint a second, not one per commit.
    Rewrap { address_key: String, expected_version: i64, sealed: SealedRecord, auth: RowAuth, reencrypted: bool },
    /// A keyring entry: inserted when `expected_version` is `None` (`Stale` if the key is there
    /// already), otherwise written only over that version.
    PutKey { entry: Box<KeyringEntry>, expected_version: Option<i64> },
    /// The environment's integrity key, re-wrapped: written only while it is still wrapped under
    /// `from` (`Stale` otherwise: another process moved it first).
    MoveIntegrityKey { from: KekRef, to: WrappedKey },
    /// A webhook event handled: `event_id` recorded with its `outcome` (what a replay answers),
    /// and `then` applied, in the same transaction. `Stale` when the event is recorded already
    /// (by this batch or another process) or `then` is stale: nothing is written.
    Event { event_id: String, outcome: String, mac: Vec<u8>, then: Option<Box<Change>> },
}

impl Change {
    /// The wallet this change writes, if it writes one.
    pub fn address_key(&self) -> Option<&str> {
        match self {
            Change::Insert { row, .. } => Some(&row.address_key),
            Change::UpdateMetadata { address_key, .. }
            | Change::ReplaceShares { address_key, .. }
            | Change::Delete { address_key }
            | Change::Authenticate { address_key, .. }
            | Change::Rewrap { address_key, .. } => Some(address_key),
            Change::Event { then, .. } => then.as_deref().and_then(Change::address_key),
            Change::PutKey { .. } | Change::MoveIntegrityKey { .. } => None,
        }
    }

    /// The change an `Event` wraps, or this one.
    pub fn inner(&self) -> Option<&Change> {
        match self {
            Change::Event { then, .. } => then.as_deref(),
            other => Some(other),
        }
    }
}

/// The SQL condition "this row is behind the primary" (the store's form of `vault::keys::behind`),
/// written once for every statement of every backend that needs it: the placeholders of the
/// primary's provider, key id and version, and of the re-encryption time, as that statement
/// numbers them (`?4` on SQLite, `$4` on PostgreSQL).
macro_rules! behind_sql {
    ($provider:literal, $key_id:literal, $version:literal, $sealed_before:literal, $bigint:literal) => {
        concat!(
            "(kek_provider <> ",
            $provider,
            " OR kek_key_id <> ",
            $key_id,
            " OR kek_key_version <> ",
            $version,
            " OR wrapped_at IS NULL OR (",
            $sealed_before,
            $bigint,
            " IS NOT NULL AND (sealed_at IS NULL OR sealed_at < ",
            $sealed_before,
            ")))"
        )
    };
}
pub(crate) use behind_sql;

/// What [`WalletStore::keyring`] read, from one snapshot.
#[derive(Debug, Clone, Default)]
pub struct KeyringRead {
    pub entries: Vec<KeyringEntry>,
    pub states: Vec<AuditRecord>,
}

/// What [`WalletStore::claim_behind`] claimed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claimed {
    pub keys: Vec<String>,
    pub held: u64,
}

/// Which rows a rotation claims: the environment's rows that are behind the primary (wrapped
/// under another key or another version of it, with no wrap time, or, while a re-encryption
/// runs, sealed before `sealed_before`), after `after` in address order, not claimed by another
/// rotator whose lease is still running.
#[derive(Debug, Clone)]
pub struct ClaimQuery {
    pub environment: String,
    pub primary: KekRef,
    pub sealed_before: Option<i64>,
    pub after: Option<String>,
    pub limit: u32,
    /// Now, and until when the claim holds (ms).
    pub now_ms: i64,
    pub lease_until_ms: i64,
}

/// The outcome of a compare-and-swap write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// The row changed since it was read (or is gone): re-read and try again.
    Stale,
    NotFound,
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub environment: String,
    pub chain_name: Option<String>,
    pub after: Option<String>,
    pub limit: u32,
    /// `None`: the wallets (no row at a reserved address, see `model::RESERVED_ADDRESS_PREFIX`);
    /// `Some(p)`: only the rows whose address key starts with `p` (the vault's own records).
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this environment's rows: a vault never reads another environment's log.
    pub environment: String,
    pub address_key: Option<String>,
    pub after_seq: Option<i64>,
    pub limit: u32,
}

/// What `compact` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Compacted {
    /// The database's size before and after, in bytes (SQLite: the file; PostgreSQL: the vault's tables).
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// What the backend's compaction promises about freed bytes, and what it cannot.
    pub promise: &'static str,
}

#[async_trait]
pub trait WalletStore: Send + Sync {
    /// Applies `change` to the wallets of `audit.environment` and appends `audit` in one
    /// transaction; both or neither are durable when this returns. Once a key is bound, a write
    /// extends the log only from the environment's authenticated head, found intact in the log:
    /// otherwise it is refused (`ERR_TAMPERED`) and nothing is written.
    async fn apply(&self, change: Change, audit: AuditEntry) -> Result<Applied>;
    /// Appends an audit row on its own (hydrate, failures), under the same rule as `apply`.
    async fn append_audit(&self, audit: AuditEntry) -> Result<()>;
    /// The environment's wallet at `address_key`, with the audit row of its latest write.
    async fn get(&self, environment: &str, address_key: &str) -> Result<Option<WalletRow>>;
    async fn get_metadata(&self, environment: &str, address_key: &str) -> Result<Option<MetadataRow>>;
    /// The audit row of the environment that records the latest write of `address_key` (a row
    /// with a `wallet_mac`), whether or not the wallet's row is there.
    async fn latest_state(&self, environment: &str, address_key: &str) -> Result<Option<AuditRecord>>;
    async fn list(&self, q: ListQuery) -> Result<Vec<MetadataRow>>;
    /// Up to `limit` whole rows of the environment after the address key `after`, in order.
    async fn wallet_page(&self, environment: &str, after: Option<&str>, limit: u32) -> Result<Vec<WalletRow>>;
    async fn audit_log(&self, q: AuditQuery) -> Result<Vec<AuditRecord>>;
    /// Up to `limit` audit rows of every environment after `after_seq`, in order: chain
    /// verification reads the log a page at a time, in constant memory.
    async fn audit_page(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>>;
    /// Gives the writer the key of this store's environment: from then on every append checks
    /// that environment's authenticated head and moves it, in the same transaction.
    async fn bind_audit_key(&self, key: Arc<IntegrityKey>) -> Result<()>;
    /// The environment's authenticated audit head, if it has one.
    async fn audit_head(&self, environment: &str) -> Result<Option<SignedHead>>;
    /// Appends `entry` at the end of the log (with none, takes the log's last row as it is) and
    /// makes it the bound environment's head, in one transaction, as `how` allows
    /// (`ERR_CONFLICT` otherwise). The only way a head is made or replaced: an environment's
    /// first open, and an operator's explicit step. Returns the head's seq.
    async fn repair_head(&self, entry: Option<AuditEntry>, how: HeadRepair) -> Result<i64>;
    /// Whether the environment has any wallet or audit row.
    async fn environment_has_rows(&self, environment: &str) -> Result<bool>;
    /// Whether the environment's log records any wallet write made with rows authenticated (an
    /// audit row with a `wallet_mac`, which its hash covers): never true of a schema-1 log.
    async fn has_wallet_writes(&self, environment: &str) -> Result<bool>;
    /// The environment's wrapped integrity key, if one was made.
    async fn integrity_key(&self, environment: &str) -> Result<Option<WrappedKey>>;
    /// Stores the environment's wrapped integrity key unless one is stored already (the first
    /// of several processes wins; the others read it back).
    async fn put_integrity_key(&self, environment: &str, key: &WrappedKey) -> Result<()>;
    /// The environment's keyring entries (see `keyring`), as stored, and the latest audit row of
    /// each of its keys (at its `keyring::log_address`), both from one snapshot: read apart, a
    /// change committed between the two reads pairs one moment's entry with the next moment's
    /// audit row, which is what a put-back entry looks like.
    async fn keyring(&self, environment: &str) -> Result<KeyringRead>;
    /// The environments whose keyring holds `kek` (any version, any state).
    async fn key_holders(&self, kek: &KekRef) -> Result<Vec<String>>;
    /// Claims up to `q.limit` rows behind the primary for a rotation (see [`ClaimQuery`]) and
    /// returns their address keys in order. A claim is a lease, not a lock: it keeps other
    /// rotators off the rows; the rotation's write still compares and swaps on the row version
    /// (and clears the claim). With nothing to claim, `held` counts the rows behind that another
    /// rotator's lease still holds (after `after` or not: the whole environment).
    async fn claim_behind(&self, q: ClaimQuery) -> Result<Claimed>;
    /// Ends this rotator's claims on `address_keys` (rows it could not move), so the next
    /// sweep may take them again.
    async fn release_claims(&self, environment: &str, address_keys: Vec<String>) -> Result<()>;
    /// Reclaims the space deleted and replaced rows left (SQLite `VACUUM` and a truncating WAL
    /// checkpoint; PostgreSQL `VACUUM` of the vault's tables), and says what that does and does
    /// not promise about the freed bytes.
    async fn compact(&self) -> Result<Compacted>;
    /// The outcome recorded for a webhook event of the environment and its MAC (see
    /// `Change::Event`; trusted only once the MAC verifies).
    async fn webhook_event(&self, environment: &str, event_id: &str) -> Result<Option<(String, Vec<u8>)>>;
    /// The environment's wallets per chain name (counted, not read), in chain order; the
    /// vault's own records (reserved addresses) are not wallets and not counted.
    async fn wallets_by_chain(&self, environment: &str) -> Result<Vec<(String, u64)>>;
    /// The schema version this store runs (an open store's database is at it: older is
    /// migrated or refused, newer is refused), and the backend's name.
    fn schema(&self) -> (&'static str, i64);
    /// The TLS version the database connections negotiated (`TLSv1.3`), `None` for a connection
    /// without TLS or a file (SQLite).
    fn transport(&self) -> Option<String> {
        None
    }
    /// Finishes queued writes and closes connections.
    async fn close(&self) -> Result<()>;
}
