//! The vault: orchestration of store, hydrate, merge, replace, delete and list over the storage
//! and key-wrapping seams. No SQL and no cipher code here: those live in `store`, `envelope` and
//! `kms`.

use crate::audit::{
    now_ms, AuditEntry, AuditRecord, AuditSink, ChainCheck, ChainVerifier, Expectations, SignedHead, AUTHENTICATED,
    BREAK_ACKNOWLEDGED, INTEGRITY_ENABLED,
};
use crate::envelope::{self, Binding, SealedRecord, ALG_AES_256_GCM, FORMAT_V1};
use crate::error::{Error, ErrorCode, Result};
use crate::integrity::{sealed_digest, IntegrityKey, RowFacts};
use crate::kms::{GeneratedKey, KeyContext, KeyWrapping};
use crate::model::{self, Scheme};
use crate::permissions::{Permission, Permissions};
use crate::secret::SecretBuf;
use crate::shares;
use crate::stats::{Stats, StatsSnapshot};
use crate::store::{
    Applied, AuditQuery, Change, ClaimQuery, HeadRepair, ListQuery, MetadataRow, RowAuth, WalletRow, WalletStore,
};
use crate::tamper;
use crate::unpersisted::Unpersisted;
use std::future::Future;

mod compact;
pub mod delegations;
mod delete;
mod hydrate;
pub mod keys;
mod log;
mod replace;
pub mod rotate;
mod sealed;
mod store;
mod summary;

pub use keys::{KeyReport, KeyStatus, VersionCount, DEFAULT_ROTATE_AFTER_DAYS};
pub use rotate::{BatchOutcome, RotationPlan};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
pub use summary::Summary;
use tokio::sync::{Notify, OnceCell};

/// A count of calls in progress, and a way to wait until there are none.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// One call in progress; dropped (finished, failed, cancelled or unwound) it is counted out.
struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    fn enter(&self) -> InFlightGuard<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self)
    }

    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

const MAX_ACTOR_LEN: usize = 256;
/// The audit actor of a vault opened without one.
pub const DEFAULT_ACTOR: &str = "sharevault";

/// What new shares were derived from: the wallet (by id, so a wallet deleted and stored again at
/// the same address is not taken for it) and its share generation at the time.
#[derive(Debug, Clone, Copy)]
pub struct Basis<'a> {
    pub wallet_id: &'a str,
    pub generation: i64,
}
const MAX_PURPOSE_LEN: usize = 256;
/// How often a compare-and-swap write is retried when another writer got there first.
const MAX_CAS_ATTEMPTS: usize = 64;

/// Before retrying a compare-and-swap that lost: a jittered, growing pause (1 ms up to 64 ms), so
/// writers contending on one wallet from many processes spread out instead of colliding again in
/// lockstep; 64 attempts give a writer a few seconds before it reports `ERR_CONFLICT`.
async fn cas_backoff(attempt: usize) {
    use aes_gcm::aead::rand_core::RngCore;
    let cap_us = 1000u64 << attempt.min(6);
    let jitter = u64::from(aes_gcm::aead::OsRng.next_u32()) % cap_us;
    tokio::time::sleep(std::time::Duration::from_micros(cap_us / 2 + jitter / 2)).await;
}
pub const DEFAULT_LIST_LIMIT: u32 = 100;
pub const MAX_LIST_LIMIT: u32 = 1000;

/// What a hydrate hands to the binding: the metadata JSON and the plaintext shares encoding.
#[derive(Debug)]
pub struct Hydrated {
    pub metadata_json: String,
    pub shares: SecretBuf,
    pub generation: i64,
}

pub struct Vault {
    store: Arc<dyn WalletStore>,
    kms: Arc<KeyWrapping>,
    stats: Arc<Stats>,
    environment: String,
    actor: String,
    closed: AtomicBool,
    /// The one close every `close()` call waits for.
    closing: OnceCell<Result<()>>,
    /// Calls that passed the `closed` check and have not finished: `close` waits for them, so a
    /// call accepted before `close()` finishes normally rather than losing its store mid-call.
    in_flight: InFlight,
    /// Grants beyond the ordinary, fixed at open.
    allow: Permissions,
    /// This environment's MAC key: wallet rows and the audit head are checked with it.
    integrity: Arc<IntegrityKey>,
    /// `onAudit`: where committed entries are also offered.
    sink: Option<Arc<dyn AuditSink>>,
    /// The spare data key (see `permit_operation`): generated before the first SDK call whose
    /// result the vault must keep, and what a seal of that result uses when the KMS cannot give
    /// a fresh key. Zeroized at close.
    spare: tokio::sync::Mutex<Option<Arc<GeneratedKey>>>,
    /// The delegation webhooks' RSA key, when given at open (else the imported record is used).
    delegation_key: Option<Arc<crate::delegation::crypto::DelegationKey>>,
    /// Webhooks of one wallet, one at a time (see `delegations`).
    webhook_locks: delegations::WalletLocks,
}

/// The key context's wallet id of the spare data key: no wallet's (wallet ids are the SDK's
/// UUIDs), so a spare-wrapped key never unwraps as a wallet's, nor the reverse.
pub(crate) const SPARE_CONTEXT: &str = "sharevault:unpersisted";

/// How many audit rows chain verification reads at a time.
const VERIFY_PAGE: u32 = 5000;

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("environment", &self.environment).field("actor", &self.actor).finish()
    }
}

/// Checks the `environment` option.
pub fn check_environment(environment: &str) -> Result<()> {
    if environment.trim().is_empty() || environment.len() > 128 {
        return Err(Error::invalid("environment", "must be a non-empty string of at most 128 characters"));
    }
    Ok(())
}

/// Checks the `actor` option.
pub fn check_actor(actor: Option<&str>) -> Result<()> {
    check_label(actor, "actor", MAX_ACTOR_LEN)
}

fn check_label(v: Option<&str>, path: &str, max: usize) -> Result<()> {
    if let Some(s) = v {
        if s.is_empty() || s.len() > max {
            return Err(Error::invalid(path, format!("must be a non-empty string of at most {max} characters")));
        }
    }
    Ok(())
}

/// Reads a stored row's metadata. It was accepted when it was written, so no size limit applies
/// here (a limit is a rule for input, never a reason to call a stored row tampered).
fn stored_metadata(json: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(o)) => Ok(o),
        _ => Err(Error::tampered("the stored metadata is not readable")),
    }
}

/// Serializes metadata after a change, refusing a result over the size limit before anything is
/// written: a merge may not grow a wallet's metadata past what a store would accept.
fn changed_metadata(obj: &serde_json::Map<String, serde_json::Value>) -> Result<String> {
    let json = serde_json::to_string(obj).map_err(|_| Error::internal("serializing metadata"))?;
    if json.len() > model::MAX_METADATA_BYTES {
        return Err(Error::invalid(
            "backupInfo",
            format!(
                "would make the wallet's metadata {} bytes, larger than the limit of {} bytes",
                json.len(),
                model::MAX_METADATA_BYTES
            ),
        ));
    }
    Ok(json)
}

fn parse_backup_info(json: &str) -> Result<serde_json::Value> {
    if json.len() > model::MAX_METADATA_BYTES {
        return Err(Error::invalid("backupInfo", "is larger than 1 MiB"));
    }
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|_| Error::invalid("backupInfo", "is not valid JSON data"))?;
    model::check_backup_info(Some(&v), "backupInfo")?;
    Ok(v)
}

impl Vault {
    pub fn new(
        store: Arc<dyn WalletStore>,
        kms: Arc<KeyWrapping>,
        stats: Arc<Stats>,
        environment: &str,
        actor: Option<&str>,
        integrity: Arc<IntegrityKey>,
    ) -> Result<Vault> {
        check_environment(environment)?;
        if integrity.environment() != environment {
            return Err(Error::internal("the integrity key is another environment's"));
        }
        check_label(actor, "actor", MAX_ACTOR_LEN)?;
        Ok(Vault {
            store,
            kms,
            stats,
            environment: environment.to_string(),
            actor: actor.unwrap_or(DEFAULT_ACTOR).to_string(),
            closed: AtomicBool::new(false),
            closing: OnceCell::new(),
            in_flight: InFlight::default(),
            allow: Permissions::default(),
            integrity,
            sink: None,
            spare: tokio::sync::Mutex::new(None),
            delegation_key: None,
            webhook_locks: Default::default(),
        })
    }

    /// The vault that decrypts delegation webhooks with `key` (given at open) rather than an
    /// imported one.
    pub fn with_delegation_key(self, key: Option<crate::delegation::crypto::DelegationKey>) -> Vault {
        Vault { delegation_key: key.map(Arc::new), ..self }
    }

    /// The vault that also offers every committed audit entry to `sink` (never waiting for it).
    pub fn with_audit_sink(self, sink: Option<Arc<dyn AuditSink>>) -> Vault {
        Vault { sink, ..self }
    }

    /// Hands a committed entry to the sink; a full queue is counted, never waited for.
    fn forward(&self, entry: Option<AuditEntry>) {
        if let (Some(sink), Some(e)) = (&self.sink, entry) {
            if sink.offer(&e) {
                crate::stats::bump(&self.stats.audit_queued);
            } else {
                crate::stats::bump(&self.stats.audit_dropped);
            }
        }
    }

    /// Entries committed outside the vault's own calls (opening's keyring registrations), to the sink.
    pub fn forward_all(&self, entries: Vec<AuditEntry>) {
        entries.into_iter().for_each(|e| self.forward(Some(e)));
    }

    /// `store.apply`, and the audit entry to the sink once it is committed.
    async fn apply(&self, change: Change, audit: AuditEntry) -> Result<Applied> {
        let copy = self.sink.as_ref().map(|_| audit.clone());
        let applied = self.store.apply(change, audit).await;
        if let Ok(Applied::Done) = applied {
            self.forward(copy);
        }
        applied
    }

    /// `store.append_audit`, and the entry to the sink once it is committed.
    async fn append_audit(&self, audit: AuditEntry) -> Result<()> {
        let copy = self.sink.as_ref().map(|_| audit.clone());
        self.store.append_audit(audit).await?;
        self.forward(copy);
        Ok(())
    }

    /// The vault with these grants (see `permissions`).
    pub fn with_permissions(self, allow: Permissions) -> Vault {
        Vault { allow, ..self }
    }

    /// `ERR_FORBIDDEN` unless this handle has `p`; a refusal is audited (outcome `denied`) and
    /// happens before anything is read or any key is touched.
    async fn permit(
        &self,
        p: Permission,
        action: &'static str,
        address: &str,
        purpose: Option<&str>,
        actor: Option<&str>,
    ) -> Result<()> {
        if let Err(e) = self.allow.require(p) {
            let audit = self.audit(actor, action, address, None, purpose, "denied");
            // The caller gets the refusal; a failure to audit it is secondary.
            let _ = self.append_audit(audit).await;
            return Err(e);
        }
        Ok(())
    }

    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// Runs one public operation: refused once the vault is closed, and its error (if any)
    /// counted by code for `stats()`. Every operation goes through here, so every error is
    /// counted exactly once.
    async fn run<T>(&self, op: impl Future<Output = Result<T>>) -> Result<T> {
        // Counted before the check: `close` sets `closed` first and then waits for the count, so
        // a call either sees `closed` or is waited for (never both missed).
        let guard = self.in_flight.enter();
        let r = match self.live() {
            Ok(()) => op.await,
            Err(e) => Err(e),
        };
        drop(guard);
        if let Err(e) = &r {
            self.stats.error(e.code);
        }
        r
    }

    fn live(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(Error::closed())
        } else {
            Ok(())
        }
    }

    fn audit(
        &self,
        actor: Option<&str>,
        action: &'static str,
        address: &str,
        wallet_id: Option<&str>,
        purpose: Option<&str>,
        outcome: &str,
    ) -> AuditEntry {
        AuditEntry {
            at_ms: now_ms(),
            environment: self.environment.clone(),
            actor: actor.unwrap_or(&self.actor).to_string(),
            action,
            // The lookup key (EVM folded to lower case), so every row of a wallet is found by
            // any spelling of its address.
            address: model::address_key(address),
            wallet_id: wallet_id.map(str::to_string),
            purpose: purpose.map(str::to_string),
            outcome: outcome.to_string(),
            wallet_mac: None,
        }
    }

    /// The MAC and sealed digest of a row as it will be written.
    fn row_auth(&self, facts: RowFacts<'_>) -> RowAuth {
        RowAuth { mac: self.integrity.row_tag(&facts), sealed_digest: facts.sealed_digest.to_vec() }
    }

    fn same_environment(&self, row_env: &str, address: &str) -> Result<()> {
        if row_env != self.environment {
            return Err(Error::new(
                ErrorCode::EnvironmentMismatch,
                format!("the wallet {address} belongs to another environment than this vault's ({})", self.environment),
            ));
        }
        Ok(())
    }

    fn key_context(&self, wallet_id: &str) -> KeyContext {
        KeyContext { environment: self.environment.clone(), wallet_id: wallet_id.to_string() }
    }

    async fn seal_generation(
        &self,
        wallet_id: &str,
        address_key: &str,
        chain_name: &str,
        generation: i64,
        plaintext: &SecretBuf,
    ) -> Result<SealedRecord> {
        let now = now_ms();
        let key = self.kms.generate_data_key(&self.key_context(wallet_id)).await?;
        let binding = Binding { environment: &self.environment, wallet_id, address_key, chain_name, generation };
        let (nonce, ciphertext) = envelope::seal(&key.plaintext, &binding, plaintext.as_slice())?;
        Ok(SealedRecord {
            format: FORMAT_V1,
            alg: ALG_AES_256_GCM,
            kek: key.kek,
            wrapped_dek: key.wrapped,
            nonce,
            ciphertext,
            wrapped_at: Some(now),
            sealed_at: Some(now),
        })
    }

    /// The one read path: a row is trusted only once its MAC verifies and it is the state this
    /// environment's own authenticated history says is current; every other outcome (a missing
    /// row the history says exists included) is `ERR_TAMPERED`. Only this environment's rows are
    /// ever read: another environment's wallet at the same address is simply not there.
    async fn metadata_row(&self, address: &str) -> Result<MetadataRow> {
        let key = model::check_address_arg(address)?;
        self.metadata_row_at(address, &key).await
    }

    /// `metadata_row` of the row at the address key `key` (the vault's own records, at reserved
    /// addresses, are read through here; `address` names it in errors).
    async fn metadata_row_at(&self, address: &str, key: &str) -> Result<MetadataRow> {
        let key = key.to_string();
        let Some(row) = self.store.get_metadata(&self.environment, &key).await? else {
            return Err(self.absent(address, &key).await?);
        };
        tamper::check_metadata(&self.integrity, &row)?;
        model::check_stored_identity(&row.metadata_json, &row.wallet_id, &row.address_key, &row.chain_name)?;
        Ok(row)
    }

    /// The whole row (with its sealed record), checked like `metadata_row`.
    async fn wallet_row(&self, address: &str) -> Result<WalletRow> {
        let key = model::check_address_arg(address)?;
        self.wallet_row_at(address, &key).await
    }

    /// `wallet_row` of the row at the address key `key`, as `metadata_row_at`.
    async fn wallet_row_at(&self, address: &str, key: &str) -> Result<WalletRow> {
        let key = key.to_string();
        let Some(row) = self.store.get(&self.environment, &key).await? else {
            return Err(self.absent(address, &key).await?);
        };
        if let Err(e) = tamper::check_wallet(&self.integrity, &row) {
            // An authentic copy put back (a restored backup) under a key no longer trusted (a
            // retired one): refused for its key first, which is what the operator must know.
            if tamper::row_mac_ok(&self.integrity, &row) {
                if let Err(denied) = self.kms.ensure_trusted(&row.sealed.kek) {
                    return Err(Error::new(ErrorCode::KmsDenied, format!("{}; and {}", denied.message, e.message)));
                }
            }
            return Err(e);
        }
        // An authentic record of another key is a configuration matter, said as such.
        self.kms.ensure_trusted(&row.sealed.kek)?;
        model::check_stored_identity(&row.metadata_json, &row.wallet_id, &row.address_key, &row.chain_name)?;
        Ok(row)
    }

    /// The error for an address without a row: `ERR_NOT_FOUND`, unless the history says it exists.
    async fn absent(&self, address: &str, key: &str) -> Result<Error> {
        let state = self.store.latest_state(&self.environment, key).await?;
        match tamper::check_absent(&self.integrity, address, state.as_ref()) {
            // The row and the state are two reads: a store committed between them looks like a
            // deleted row. Were that it, the row is there now, and the wallet was simply not yet
            // stored when it was read. A row deleted outside sharevault is still missing.
            Err(e) if e.code == ErrorCode::Tampered => match self.store.get(&self.environment, key).await? {
                Some(_) => Ok(Error::not_found(address)),
                None => Err(e),
            },
            verdict => verdict,
        }
    }

    async fn open_row(&self, row: &WalletRow) -> Result<SecretBuf> {
        let s = &row.sealed;
        if s.format != FORMAT_V1 || s.alg != ALG_AES_256_GCM {
            return Err(Error::tampered("the sealed record has an unknown format"));
        }
        let ctx = KeyContext { environment: row.environment.clone(), wallet_id: row.wallet_id.clone() };
        let dek = self.kms.unwrap_data_key(&s.kek, &s.wrapped_dek, &ctx).await?;
        let binding = Binding {
            environment: &row.environment,
            wallet_id: &row.wallet_id,
            address_key: &row.address_key,
            chain_name: &row.chain_name,
            generation: row.generation,
        };
        // Authenticated by AES-GCM, so it is exactly the encoding validated at store; the binding
        // decodes it once, on the way out (a second decode here would be hot-path work twice).
        envelope::open(&dek, &binding, &s.nonce, &s.ciphertext)
    }

    /// The SDK wrapper's check before an SDK call it cannot undo (creating a wallet, changing a
    /// password, refreshing or resharing): that this handle has every permission the whole
    /// operation needs, the hydrate for `purpose` (if it hydrates) and the keeping of its
    /// `result` (see `Permission::for_result`), so the SDK is never called for a result the vault
    /// would then refuse to keep. A refusal is audited (outcome `denied`, the method as purpose)
    /// and touches no key.
    pub async fn permit_operation(
        &self,
        method: &str,
        purpose: Option<&str>,
        result: Option<&str>,
        address: &str,
        actor: Option<&str>,
    ) -> Result<()> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            check_label(Some(method), "method", MAX_PURPOSE_LEN)?;
            let write = match result {
                None => None,
                Some(r) => Some(
                    Permission::for_result(r)
                        .ok_or_else(|| Error::invalid("result", "must be wallet, backup or shares"))?,
                ),
            };
            let hydrate = purpose.map(|p| Permission::for_hydrate(Some(p)));
            for p in [hydrate, write].into_iter().flatten() {
                self.permit(p, "sdk_call", address, Some(method), actor).await?;
            }
            // New shares (a new wallet's, a refresh's, a reshare's) exist nowhere else once the
            // SDK has returned them: the vault must be able to seal them even if the KMS is gone
            // by then, so it holds a data key for that before the SDK is called (and refuses the
            // call, with nothing done, if it cannot get one).
            if matches!(write, Some(Permission::Store | Permission::Replace)) {
                self.ensure_spare().await?;
            }
            Ok(())
        })
        .await
    }

    /// Makes sure the spare data key exists, and is under the current primary key (after a
    /// rotation a new one is generated; if the KMS cannot give it, the old one still seals).
    async fn ensure_spare(&self) -> Result<()> {
        let mut spare = self.spare.lock().await;
        if spare.as_ref().is_some_and(|k| k.kek.same_key(self.kms.current_kek())) {
            return Ok(());
        }
        let ctx = self.key_context(SPARE_CONTEXT);
        match self.kms.generate_data_key(&ctx).await {
            Ok(key) => {
                // Never a cache entry: it is used only where the KMS cannot be.
                self.kms.forget(&key.kek, &key.wrapped, &ctx);
                *spare = Some(Arc::new(key));
                Ok(())
            }
            Err(_) if spare.is_some() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The spare data key, if one was generated.
    async fn spare_key(&self) -> Option<Arc<GeneratedKey>> {
        self.spare.lock().await.clone()
    }

    /// Counters: KMS calls, cache hits/misses/evictions, errors by code, hydrate latency.
    pub fn stats(&self) -> StatsSnapshot {
        StatsSnapshot { database_tls: self.store.transport(), ..self.stats.snapshot() }
    }

    /// How many data keys the cache holds right now (0 without a cache).
    pub fn cached_keys(&self) -> usize {
        self.kms.cached_keys()
    }

    /// Finishes queued writes, closes the database and zeroizes every data key the vault holds.
    /// Later calls fail with `ERR_CLOSED`. Every call, first or not, resolves only when the
    /// vault is really closed, with the outcome of that one close.
    pub async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        // Calls already accepted finish first (each is bounded: KMS, pool and statement deadlines).
        self.in_flight.idle().await;
        self.closing
            .get_or_init(|| async {
                let r = self.store.close().await;
                self.kms.close();
                // The last copy of the spare key is this one (a seal holds it only while it runs).
                *self.spare.lock().await = None;
                r
            })
            .await
            .clone()
    }
}

/// The `limit` of a page: 1 to `MAX_LIST_LIMIT`, `DEFAULT_LIST_LIMIT` when not given.
fn page_limit(limit: Option<u32>) -> Result<u32> {
    let limit = limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(Error::invalid("limit", format!("must be an integer from 1 to {MAX_LIST_LIMIT}")));
    }
    Ok(limit)
}
