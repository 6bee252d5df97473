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
use crate::kms::{KeyContext, KeyWrapping};
use crate::model::{self, Scheme};
use crate::permissions::{Permission, Permissions};
use crate::secret::SecretBuf;
use crate::shares;
use crate::stats::{Stats, StatsSnapshot};
use crate::store::{Applied, AuditQuery, Change, HeadRepair, ListQuery, MetadataRow, RowAuth, WalletRow, WalletStore};
use crate::tamper;
use crate::unpersisted::Unpersisted;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
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
}

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
        })
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
        })
    }

    /// Stores a new wallet: validates everything first, then seals the shares under a fresh data
    /// key and writes metadata, sealed record and audit row in one transaction.
    pub async fn store_wallet(
        &self,
        metadata_json: &str,
        created_address: Option<&str>,
        shares: &SecretBuf,
        actor: Option<&str>,
    ) -> Result<String> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            if !self.allow.allows(Permission::Store) {
                // The address for the audit row, as far as the input names one.
                let named = created_address.map(str::to_string).or_else(|| {
                    serde_json::from_str::<serde_json::Value>(metadata_json)
                        .ok()
                        .and_then(|v| v.get("accountAddress").and_then(|a| a.as_str()).map(str::to_string))
                });
                self.permit(Permission::Store, "store", named.as_deref().unwrap_or(""), None, actor).await?;
            }
            let obj = model::parse_metadata(metadata_json)?;
            let id = model::validate_metadata(&obj)?;
            if let Some(a) = created_address {
                if model::address_key(a) != id.address_key {
                    return Err(Error::invalid(
                        "walletMetadata.accountAddress",
                        "does not match the wallet's accountAddress",
                    ));
                }
            }
            shares::validate(shares, id.scheme.external_share_count(), id.scheme.as_str())?;
            // The log says a wallet is stored here: then it is (a conflict), or its row was
            // deleted outside sharevault (tampered), never silently re-created.
            if let Some(latest) = self.store.latest_state(&self.environment, &id.address_key).await? {
                if !tamper::audited_state(&self.integrity, &id.account_address, &latest)?.is_empty() {
                    self.metadata_row(&id.account_address).await?;
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        format!("a wallet is already stored for address {}", id.account_address),
                    ));
                }
            }
            let sealed = self.seal_generation(&id.wallet_id, &id.address_key, &id.chain_name, 1, shares).await?;
            let row = WalletRow {
                address: id.account_address.clone(),
                address_key: id.address_key.clone(),
                wallet_id: id.wallet_id.clone(),
                chain_name: id.chain_name.clone(),
                environment: self.environment.clone(),
                metadata_json: metadata_json.to_string(),
                version: 1,
                generation: 1,
                sealed,
                mac: None,
                sealed_digest: None,
                state: None,
            };
            let digest = sealed_digest(&row.sealed);
            let auth = self.row_auth(tamper::wallet_facts(&row, &digest));
            let mut audit = self.audit(actor, "store", &id.account_address, Some(&id.wallet_id), None, "ok");
            audit.wallet_mac = Some(auth.mac.clone());
            let (kek, wrapped) = (row.sealed.kek.clone(), row.sealed.wrapped_dek.clone());
            if let Err(e) = self.apply(Change::Insert { row: Box::new(row), auth }, audit).await {
                // Not stored: no cached copy of its data key may outlive it.
                self.kms.forget(&kek, &wrapped, &self.key_context(&id.wallet_id));
                return Err(e);
            }
            Ok(metadata_json.to_string())
        })
        .await
    }

    /// The one read path: a row is trusted only once its MAC verifies and it is the state this
    /// environment's own authenticated history says is current; every other outcome (a missing
    /// row the history says exists included) is `ERR_TAMPERED`. Only this environment's rows are
    /// ever read: another environment's wallet at the same address is simply not there.
    async fn metadata_row(&self, address: &str) -> Result<MetadataRow> {
        let key = model::check_address_arg(address)?;
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
        let Some(row) = self.store.get(&self.environment, &key).await? else {
            return Err(self.absent(address, &key).await?);
        };
        tamper::check_wallet(&self.integrity, &row)?;
        // An authentic record of another key is a configuration matter, said as such.
        self.kms.ensure_trusted(&row.sealed.kek)?;
        model::check_stored_identity(&row.metadata_json, &row.wallet_id, &row.address_key, &row.chain_name)?;
        Ok(row)
    }

    /// The error for an address without a row: `ERR_NOT_FOUND`, unless the history says it exists.
    async fn absent(&self, address: &str, key: &str) -> Result<Error> {
        let state = self.store.latest_state(&self.environment, key).await?;
        tamper::check_absent(&self.integrity, address, state.as_ref())
    }

    /// The stored metadata, whole. No decryption and no KMS call.
    pub async fn get_metadata(&self, address: &str) -> Result<String> {
        self.run(async { Ok(self.metadata_row(address).await?.metadata_json) }).await
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

    async fn hydrate_inner(&self, address: &str) -> Result<(WalletRow, SecretBuf)> {
        let row = self.wallet_row(address).await?;
        let plaintext = self.open_row(&row).await?;
        Ok((row, plaintext))
    }

    /// Reads and decrypts a wallet for one SDK call. The access is in the audit log (durably)
    /// before the plaintext is handed out; failed attempts are audited with their error code.
    pub async fn hydrate(&self, address: &str, purpose: Option<&str>, actor: Option<&str>) -> Result<Hydrated> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            check_label(purpose, "purpose", MAX_PURPOSE_LEN)?;
            let started = std::time::Instant::now();
            let hydrated = self.hydrate_audited(address, purpose, actor).await?;
            self.stats.hydrated(started.elapsed());
            Ok(hydrated)
        })
        .await
    }

    async fn hydrate_audited(&self, address: &str, purpose: Option<&str>, actor: Option<&str>) -> Result<Hydrated> {
        // A refused hydrate is audited (outcome `denied`) and decrypts nothing.
        self.permit(Permission::for_hydrate(purpose), "hydrate", address, purpose, actor).await?;
        match self.hydrate_inner(address).await {
            Ok((row, shares)) => {
                let audit = self.audit(actor, "hydrate", &row.address, Some(&row.wallet_id), purpose, "ok");
                self.append_audit(audit).await?;
                Ok(Hydrated { metadata_json: row.metadata_json, shares, generation: row.generation })
            }
            Err(e) => {
                if e.code != ErrorCode::InvalidInput && e.code != ErrorCode::Closed {
                    let audit = self.audit(actor, "hydrate", address, None, purpose, e.code.as_str());
                    // The caller gets the hydrate error; a failure to audit it is secondary.
                    let _ = self.append_audit(audit).await;
                }
                Err(e)
            }
        }
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
            Ok(())
        })
        .await
    }

    /// Replaces `externalServerKeySharesBackupInfo` with `backup_info_json` (after updatePassword
    /// or storeEncryptedBackupByWallet). Shares are not touched.
    pub async fn merge_backup_info(
        &self,
        address: &str,
        backup_info_json: &str,
        actor: Option<&str>,
    ) -> Result<String> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            self.permit(Permission::Backup, "merge_backup_info", address, None, actor).await?;
            let backup = parse_backup_info(backup_info_json)?;
            for attempt in 0..MAX_CAS_ATTEMPTS {
                let row = self.metadata_row(address).await?;
                let mut obj = stored_metadata(&row.metadata_json)?;
                model::apply_update(&mut obj, backup.clone(), None);
                let json = changed_metadata(&obj)?;
                let auth = self.row_auth(RowFacts {
                    metadata_json: &json,
                    version: row.version + 1,
                    ..tamper::metadata_facts(&row)
                });
                let mut audit = self.audit(actor, "merge_backup_info", address, Some(&row.wallet_id), None, "ok");
                audit.wallet_mac = Some(auth.mac.clone());
                let change = Change::UpdateMetadata {
                    address_key: row.address_key.clone(),
                    expected_version: row.version,
                    metadata_json: json.clone(),
                    auth,
                };
                match self.apply(change, audit).await? {
                    Applied::Done => return Ok(json),
                    Applied::Stale => cas_backoff(attempt).await,
                    Applied::NotFound => return Err(Error::not_found(address)),
                }
            }
            Err(Error::new(ErrorCode::Conflict, "the wallet kept changing while its backup info was merged"))
        })
        .await
    }

    /// Writes a new share generation (new data key) together with the new backup info and, on a
    /// reshare, the new scheme, in one transaction.
    pub async fn replace_shares(
        &self,
        address: &str,
        shares: &SecretBuf,
        backup_info_json: &str,
        scheme: Option<&str>,
        actor: Option<&str>,
    ) -> Result<String> {
        self.run(self.replace_shares_at(address, shares, backup_info_json, scheme, actor, None)).await
    }

    /// [`Vault::replace_shares`] for new shares an SDK call derived from `basis` (the wallet and
    /// its generation when the SDK wrapper hydrated it for a refresh or reshare): written only
    /// while the wallet is still that one at that generation, so a retry can never roll a wallet
    /// back to shares a later refresh replaced; if the wallet is at the next generation with
    /// exactly these shares (an earlier attempt committed but its answer was lost), that is success.
    pub async fn replace_shares_from(
        &self,
        address: &str,
        shares: &SecretBuf,
        backup_info_json: &str,
        scheme: Option<&str>,
        actor: Option<&str>,
        basis: Basis<'_>,
    ) -> Result<String> {
        self.run(self.replace_shares_at(address, shares, backup_info_json, scheme, actor, Some(basis))).await
    }

    /// [`Vault::replace_shares`], and if `basis` is given, only onto that wallet at that
    /// generation (checked in the same compare-and-swap as the write).
    async fn replace_shares_at(
        &self,
        address: &str,
        shares: &SecretBuf,
        backup_info_json: &str,
        scheme: Option<&str>,
        actor: Option<&str>,
        basis: Option<Basis<'_>>,
    ) -> Result<String> {
        {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            self.permit(Permission::Replace, "replace_shares", address, None, actor).await?;
            let new_scheme = match scheme {
                None => None,
                Some(s) => Some(Scheme::parse(s).ok_or_else(|| {
                    Error::invalid("thresholdSignatureScheme", "must be TWO_OF_TWO, TWO_OF_THREE or THREE_OF_FIVE")
                })?),
            };
            let backup = parse_backup_info(backup_info_json)?;
            for attempt in 0..MAX_CAS_ATTEMPTS {
                let row = self.wallet_row(address).await?;
                if let Some(b) = basis.filter(|b| b.wallet_id != row.wallet_id) {
                    return Err(Error::tampered(format!(
                        "the new shares belong to wallet {}, not to the wallet now stored at {address}",
                        b.wallet_id
                    )));
                }
                if let Some(base) = basis.map(|b| b.generation).filter(|g| *g != row.generation) {
                    // Already written (by an attempt whose answer was lost)? Compared inside
                    // Rust; the stored plaintext never leaves.
                    if row.generation == base + 1 && self.open_row(&row).await?.as_slice() == shares.as_slice() {
                        return Ok(row.metadata_json);
                    }
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        format!(
                            "the wallet {address} has changed since this state was sealed (its shares are at generation \
                             {}, the sealed state replaces generation {base}): the sealed state is stale",
                            row.generation
                        ),
                    ));
                }
                let mut obj = stored_metadata(&row.metadata_json)?;
                let current = obj
                    .get("thresholdSignatureScheme")
                    .and_then(|v| v.as_str())
                    .and_then(Scheme::parse)
                    .ok_or_else(|| Error::tampered("the stored metadata has no valid scheme"))?;
                let effective = new_scheme.unwrap_or(current);
                if !current.can_reshare_to(effective) {
                    return Err(Error::invalid(
                        "thresholdSignatureScheme",
                        format!(
                            "a reshare from {} to {} is not a path the SDK supports",
                            current.as_str(),
                            effective.as_str()
                        ),
                    ));
                }
                shares::validate(shares, effective.external_share_count(), effective.as_str())?;
                model::apply_update(&mut obj, backup.clone(), new_scheme);
                let json = changed_metadata(&obj)?;
                let generation = row.generation + 1;
                let sealed =
                    self.seal_generation(&row.wallet_id, &row.address_key, &row.chain_name, generation, shares).await?;
                let digest = sealed_digest(&sealed);
                let auth = self.row_auth(RowFacts {
                    metadata_json: &json,
                    generation,
                    version: row.version + 1,
                    ..tamper::wallet_facts(&row, &digest)
                });
                let mut audit = self.audit(actor, "replace_shares", &row.address, Some(&row.wallet_id), None, "ok");
                audit.wallet_mac = Some(auth.mac.clone());
                let ctx = self.key_context(&row.wallet_id);
                let (new_kek, new_wrapped) = (sealed.kek.clone(), sealed.wrapped_dek.clone());
                let change = Change::ReplaceShares {
                    address_key: row.address_key.clone(),
                    expected_version: row.version,
                    metadata_json: json.clone(),
                    generation,
                    sealed,
                    auth,
                };
                let applied = self.apply(change, audit).await;
                if !matches!(applied, Ok(Applied::Done)) {
                    self.kms.forget(&new_kek, &new_wrapped, &ctx);
                }
                match applied? {
                    Applied::Done => {
                        // The old generation is gone: so is any cached copy of its data key.
                        self.kms.forget(&row.sealed.kek, &row.sealed.wrapped_dek, &ctx);
                        return Ok(json);
                    }
                    Applied::Stale => cas_backoff(attempt).await,
                    Applied::NotFound => return Err(Error::not_found(address)),
                }
            }
            Err(Error::new(ErrorCode::Conflict, "the wallet kept changing while its shares were replaced"))
        }
    }

    /// Seals shares the SDK returned that could not be written (see `unpersisted`), bound to the
    /// wallet `metadata_json` names, this vault's environment, and the generation they replace:
    /// with the backup info and scheme that go with them, or, for a new wallet (`base_generation`
    /// 0), with its whole metadata. Needs the KMS, not the database.
    pub async fn seal_unpersisted(
        &self,
        metadata_json: &str,
        base_generation: i64,
        shares: &SecretBuf,
        backup_info_json: Option<&str>,
        scheme: Option<&str>,
    ) -> Result<Vec<u8>> {
        self.run(self.seal_state(metadata_json, base_generation, shares, backup_info_json, scheme, false)).await
    }

    /// [`Vault::seal_unpersisted`] for an SDK result that the share encoding refuses (a `Date`,
    /// a `Map`…): `raw` is that result exactly as it came (the binding's serialization, opaque
    /// here), sealed losslessly the same way, so it is never lost. `recover_sealed` refuses it
    /// (the vault cannot store it as it is); an operator reads it back with `open_sealed`.
    pub async fn seal_unpersisted_raw(
        &self,
        metadata_json: &str,
        base_generation: i64,
        raw: &SecretBuf,
        backup_info_json: Option<&str>,
        scheme: Option<&str>,
    ) -> Result<Vec<u8>> {
        self.run(self.seal_state(metadata_json, base_generation, raw, backup_info_json, scheme, true)).await
    }

    async fn seal_state(
        &self,
        metadata_json: &str,
        base_generation: i64,
        shares: &SecretBuf,
        backup_info_json: Option<&str>,
        scheme: Option<&str>,
        raw: bool,
    ) -> Result<Vec<u8>> {
        {
            let obj = model::parse_metadata(metadata_json)?;
            let id = model::validate_metadata(&obj)?;
            let needed = if base_generation == 0 { Permission::Store } else { Permission::Replace };
            self.permit(needed, "seal_unpersisted", &id.account_address, None, None).await?;
            let effective = match scheme {
                None => id.scheme,
                Some(s) => Scheme::parse(s).ok_or_else(|| {
                    Error::invalid("thresholdSignatureScheme", "must be TWO_OF_TWO, TWO_OF_THREE or THREE_OF_FIVE")
                })?,
            };
            if !raw {
                shares::validate(shares, effective.external_share_count(), effective.as_str())?;
            }
            let payload_json = match (base_generation, backup_info_json) {
                (0, _) => metadata_json.to_string(),
                // The raw result holds its backup info as it came: the copy here is a label.
                (g, b) if g > 0 && raw => b.unwrap_or("null").to_string(),
                (g, Some(b)) if g > 0 => {
                    parse_backup_info(b)?;
                    b.to_string()
                }
                (g, None) if g > 0 => return Err(Error::invalid("backupInfo", "is required")),
                _ => {
                    return Err(Error::invalid(
                        "generation",
                        "must be the generation the shares replace (0 for a wallet not stored yet)",
                    ))
                }
            };
            let ctx = self.key_context(&id.wallet_id);
            let key = self.kms.generate_data_key(&ctx).await?;
            // A one-off key: no cached copy of it should outlive this call.
            self.kms.forget(&key.kek, &key.wrapped, &ctx);
            let mut state = Unpersisted {
                environment: self.environment.clone(),
                wallet_id: id.wallet_id.clone(),
                address: id.account_address.clone(),
                chain_name: id.chain_name.clone(),
                base_generation,
                payload_json,
                scheme: scheme.filter(|_| base_generation > 0).map(|_| effective.as_str().to_string()),
                kek: key.kek,
                wrapped_dek: key.wrapped,
                nonce: Vec::new(),
                ciphertext: Vec::new(),
                raw,
            };
            let (nonce, ciphertext) = envelope::seal_with(&key.plaintext, &state.aad(), shares.as_slice())?;
            state.nonce = nonce;
            state.ciphertext = ciphertext;
            Ok(state.encode())
        }
    }

    /// The operator's way to a raw sealed state (`seal_unpersisted_raw`: an SDK result the vault
    /// could not store as it was): needs `hydrate:export` (it hands out plaintext), checked
    /// before any key use, and is audited (`open_sealed`, purpose `export`) before the plaintext
    /// is returned. A state of the ordinary kind is refused: `recover_sealed` writes it.
    pub async fn open_sealed(&self, blob: &[u8], actor: Option<&str>) -> Result<(Unpersisted, SecretBuf)> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            let state = Unpersisted::decode(blob)?;
            self.same_environment(&state.environment, &state.address)?;
            self.permit(Permission::HydrateExport, "open_sealed", &state.address, Some("export"), actor).await?;
            if !state.raw {
                return Err(Error::invalid("sealed", "holds shares the vault can store: use recoverSealed"));
            }
            let ctx = self.key_context(&state.wallet_id);
            let dek = self.kms.unwrap_data_key(&state.kek, &state.wrapped_dek, &ctx).await?;
            self.kms.forget(&state.kek, &state.wrapped_dek, &ctx);
            let plaintext = envelope::open_with(&dek, &state.aad(), &state.nonce, &state.ciphertext)
                .map_err(|_| Error::tampered("the sealed state failed authentication"))?;
            let audit = self.audit(actor, "open_sealed", &state.address, Some(&state.wallet_id), Some("export"), "ok");
            self.append_audit(audit).await?;
            Ok((state, plaintext))
        })
        .await
    }

    /// Writes a sealed, unpersisted state (from [`Vault::seal_unpersisted`]): a new wallet is
    /// stored (if the same wallet with the same shares is already there, because the first store
    /// did commit, that is success); new shares replace the stored ones if the wallet is still at
    /// the generation they replace (`ERR_CONFLICT` if it has changed since: the state is stale).
    /// A blob of another environment is `ERR_ENVIRONMENT_MISMATCH`, of another wallet or altered
    /// `ERR_TAMPERED`. Resolves to the stored metadata.
    pub async fn recover_sealed(&self, blob: &[u8], actor: Option<&str>) -> Result<String> {
        self.run(async {
            let state = Unpersisted::decode(blob)?;
            self.same_environment(&state.environment, &state.address)?;
            // Refused before any key is touched.
            let needed = if state.base_generation == 0 { Permission::Store } else { Permission::Replace };
            self.permit(needed, "recover_sealed", &state.address, None, actor).await?;
            if state.raw {
                return Err(Error::invalid(
                    "sealed",
                    "holds the SDK's result exactly as it came back, which the vault cannot store as it is (it holds a \
                     value such as a Date or a Map): an operator reads it with vault.openSealed() (needs \
                     hydrate:export), corrects it, and stores it with replaceShares or storeWallet",
                ));
            }
            let ctx = self.key_context(&state.wallet_id);
            let dek = self.kms.unwrap_data_key(&state.kek, &state.wrapped_dek, &ctx).await?;
            self.kms.forget(&state.kek, &state.wrapped_dek, &ctx);
            let shares = envelope::open_with(&dek, &state.aad(), &state.nonce, &state.ciphertext)
                .map_err(|_| Error::tampered("the sealed state failed authentication"))?;
            if state.base_generation == 0 {
                return self.recover_new_wallet(&state, &shares, actor).await;
            }
            let basis = Basis { wallet_id: &state.wallet_id, generation: state.base_generation };
            self.replace_shares_at(
                &state.address,
                &shares,
                &state.payload_json,
                state.scheme.as_deref(),
                actor,
                Some(basis),
            )
            .await
        })
        .await
    }

    async fn recover_new_wallet(&self, state: &Unpersisted, shares: &SecretBuf, actor: Option<&str>) -> Result<String> {
        // Deletion is final: a recovery never brings back a wallet this environment deleted.
        let key = model::check_address_arg(&state.address)?;
        if let Some(latest) = self.store.latest_state(&self.environment, &key).await? {
            if tamper::audited_state(&self.integrity, &state.address, &latest)?.is_empty() {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "wallet {} was deleted (audit seq {}): a recovery never re-creates a deleted wallet",
                        state.address, latest.seq
                    ),
                ));
            }
        }
        match self.store_wallet(&state.payload_json, Some(&state.address), shares, actor).await {
            Err(e) if e.code == ErrorCode::Conflict => {
                // Stored already? Then only if it is this wallet, at its first generation, with
                // exactly these shares (the first store committed but its answer was lost).
                let row = self.wallet_row(&state.address).await?;
                let same = row.wallet_id == state.wallet_id
                    && row.generation == 1
                    && self.open_row(&row).await?.as_slice() == shares.as_slice();
                if same {
                    Ok(row.metadata_json)
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }

    /// Deletes a wallet: metadata, sealed shares and the wrapped data key (crypto-shredding).
    pub async fn delete_wallet(&self, address: &str, actor: Option<&str>) -> Result<()> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            self.permit(Permission::Delete, "delete", address, None, actor).await?;
            let row = self.wallet_row(address).await?;
            let mut audit = self.audit(actor, "delete", address, Some(&row.wallet_id), None, "ok");
            // No row after this write: a row put back later is not the wallet's latest state.
            audit.wallet_mac = Some(Vec::new());
            match self.apply(Change::Delete { address_key: row.address_key.clone() }, audit).await? {
                Applied::Done => {
                    // Crypto-shredding includes the process: drop any cached copy of the data key.
                    self.kms.forget(&row.sealed.kek, &row.sealed.wrapped_dek, &self.key_context(&row.wallet_id));
                    Ok(())
                }
                _ => Err(Error::not_found(address)),
            }
        })
        .await
    }

    /// Metadata of this environment's wallets, ordered by address key, `limit` at a time after
    /// the address `after`.
    pub async fn list_wallets(
        &self,
        chain_name: Option<&str>,
        limit: Option<u32>,
        after: Option<&str>,
    ) -> Result<Vec<String>> {
        self.run(async {
            let limit = page_limit(limit)?;
            check_label(chain_name, "chainName", 64)?;
            let after = after
                .map(model::check_address_arg)
                .transpose()
                .map_err(|_| Error::invalid("after", "must be a non-empty address"))?;
            let rows = self
                .store
                .list(ListQuery {
                    environment: self.environment.clone(),
                    chain_name: chain_name.map(str::to_string),
                    after,
                    limit,
                })
                .await?;
            rows.into_iter()
                .map(|r| {
                    if r.environment != self.environment {
                        return Err(Error::tampered("a listed row names another environment"));
                    }
                    tamper::check_metadata(&self.integrity, &r)?;
                    Ok(r.metadata_json)
                })
                .collect()
        })
        .await
    }

    /// Audit rows, oldest first, optionally for one address.
    pub async fn audit_log(
        &self,
        address: Option<&str>,
        after_seq: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<AuditRecord>> {
        self.run(async {
            self.permit(Permission::AuditRead, "audit_read", address.unwrap_or(""), None, None).await?;
            let limit = page_limit(limit)?;
            if after_seq.is_some_and(|s| s < 0) {
                return Err(Error::invalid("afterSeq", "must be a non-negative integer"));
            }
            let address_key = address.map(model::check_address_arg).transpose()?;
            self.store
                .audit_log(AuditQuery { environment: self.environment.clone(), address_key, after_seq, limit })
                .await
        })
        .await
    }

    /// Verifies the audit log from its first row, a page at a time (constant memory): every
    /// row's hash link; this environment's rows' MACs; that its authenticated head is in the
    /// log, unchanged, and nothing of the environment follows it; and, with `since` (a
    /// checkpoint taken earlier), that the log still holds the checkpoint's row unchanged.
    pub async fn verify_audit_chain(&self, since: Option<&SignedHead>) -> Result<ChainCheck> {
        self.run(async {
            self.permit(Permission::AuditRead, "audit_read", "", None, None).await?;
            if let Some(c) = since {
                if c.environment != self.environment {
                    return Err(Error::new(
                        ErrorCode::EnvironmentMismatch,
                        format!("the checkpoint is of another environment than this vault's ({})", self.environment),
                    ));
                }
                if !self.integrity.head_ok(&c.environment, c.seq, &c.hash, &c.mac) {
                    return Err(Error::tampered("the checkpoint's MAC does not verify: it was changed or forged"));
                }
            }
            let head = self.store.audit_head(&self.environment).await?;
            if let Some(h) = &head {
                if !self.integrity.head_ok(&h.environment, h.seq, &h.hash, &h.mac) {
                    return Ok(ChainCheck {
                        rows: 0,
                        broken_at: Some(h.seq),
                        reason: Some("the authenticated head fails its MAC (changed or forged)".into()),
                        acknowledged: Vec::new(),
                    });
                }
            }
            let key = &self.integrity;
            let row_ok = |seq: i64, hash: &[u8], mac: &[u8]| key.audit_row_ok(key.environment(), seq, hash, mac);
            let mut verifier = ChainVerifier::new(Expectations {
                environment: &self.environment,
                row_ok: &row_ok,
                head: head.as_ref(),
                since,
            });
            loop {
                let page = self.store.audit_page(verifier.last_seq(), VERIFY_PAGE).await?;
                for r in &page {
                    verifier.feed(r);
                }
                if page.len() < VERIFY_PAGE as usize || verifier.is_broken() {
                    break;
                }
            }
            Ok(verifier.finish())
        })
        .await
    }

    /// The operator's acknowledgement of a broken log (a cut tail, a deleted, forged or
    /// rolled-back head), after checking it (`verify_audit_chain`): appends an audited row that
    /// says what was found and why it is accepted, and makes it the environment's head, so writes
    /// resume from there. Refused (`ERR_CONFLICT`) when the log is not broken. The row stays in
    /// the log (`ChainCheck::acknowledged` lists it); cutting it away is a new break.
    pub async fn acknowledge_audit_break(&self, reason: &str, actor: Option<&str>) -> Result<i64> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            check_label(Some(reason), "reason", MAX_PURPOSE_LEN)?;
            self.permit(Permission::IntegrityAdmin, BREAK_ACKNOWLEDGED, "", None, actor).await?;
            let head = self.store.audit_head(&self.environment).await?;
            let found = match &head {
                None => "the authenticated head was missing".to_string(),
                Some(h) if !self.integrity.head_ok(&h.environment, h.seq, &h.hash, &h.mac) => {
                    format!("the authenticated head (seq {}) failed its MAC", h.seq)
                }
                Some(h) => format!("the authenticated head named row {}, which the log no longer holds", h.seq),
            };
            let entry = self.audit(actor, BREAK_ACKNOWLEDGED, "", None, Some(&format!("{found}; {reason}")), "ok");
            let copy = entry.clone();
            let seq = self.store.repair_head(Some(entry), HeadRepair::Acknowledge).await?;
            self.forward(Some(copy));
            Ok(seq)
        })
        .await
    }

    /// The explicit operator step for a database upgraded from schema 1 (rows written before rows
    /// were authenticated): authenticates every row of this environment that carries no MAC, or
    /// no write in the log, trusting it as it is, one audited `authenticate` row each (so its
    /// state is on record like any write's); a row whose MAC fails is never authenticated (it is
    /// counted as refused). The environment gets its head first if it has none (an audited
    /// `integrity_enabled` row). With a head already, only with `force` (rows losing their MAC in
    /// an authenticated environment is tampering: authenticate them only after checking them).
    /// Returns how many rows were authenticated and refused.
    pub async fn authenticate_existing_rows(&self, force: bool, actor: Option<&str>) -> Result<(u64, u64)> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            self.permit(Permission::IntegrityAdmin, INTEGRITY_ENABLED, "", None, actor).await?;
            if self.store.audit_head(&self.environment).await?.is_some() {
                if !force {
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        "this environment's rows are authenticated already (it has an authenticated head): rows \
                         without a MAC here were stripped of it outside sharevault; authenticate them only after \
                         checking them, with force",
                    ));
                }
            } else {
                if !force && self.store.has_wallet_writes(&self.environment).await? {
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        "this environment's log records writes made with rows authenticated, yet its head is gone: its \
                         head and MACs were removed outside sharevault, not left by schema 1. Check the rows \
                         (verifyAuditChain, your onAudit copy), then authenticate them with force",
                    ));
                }
                let entry =
                    self.audit(actor, INTEGRITY_ENABLED, "", None, Some("rows authenticated by an operator"), "ok");
                let copy = entry.clone();
                self.store.repair_head(Some(entry), HeadRepair::Create).await?;
                self.forward(Some(copy));
            }
            let (mut authenticated, mut refused) = (0u64, 0u64);
            let mut after: Option<String> = None;
            loop {
                let rows = self.store.wallet_page(&self.environment, after.as_deref(), MAX_LIST_LIMIT).await?;
                let Some(last) = rows.last() else { break };
                after = Some(last.address_key.clone());
                for r in &rows {
                    let digest = sealed_digest(&r.sealed);
                    let facts = tamper::wallet_facts(r, &digest);
                    match (&r.mac, &r.state) {
                        // A MAC that fails, or a MAC stripped from a row whose write is on
                        // record: tampered, never authenticated.
                        (Some(m), _) if !self.integrity.row_ok(&facts, m) => {
                            refused += 1;
                            continue;
                        }
                        (None, Some(_)) => {
                            refused += 1;
                            continue;
                        }
                        (Some(_), Some(_)) => continue,
                        _ => {}
                    }
                    let auth = self.row_auth(facts);
                    let mut audit = self.audit(actor, AUTHENTICATED, &r.address, Some(&r.wallet_id), None, "ok");
                    audit.wallet_mac = Some(auth.mac.clone());
                    let change =
                        Change::Authenticate { address_key: r.address_key.clone(), expected_version: r.version, auth };
                    if self.apply(change, audit).await? == Applied::Done {
                        authenticated += 1;
                    }
                }
            }
            Ok((authenticated, refused))
        })
        .await
    }

    /// This environment's authenticated audit head, to keep outside the database: a later
    /// `verify_audit_chain(Some(&checkpoint))` proves the log still extends it, which is the
    /// only way a rollback of the whole database to an earlier copy can be seen.
    pub async fn checkpoint(&self) -> Result<SignedHead> {
        self.run(async {
            self.permit(Permission::AuditRead, "audit_read", "", None, None).await?;
            let head = self.store.audit_head(&self.environment).await?.ok_or_else(|| {
                Error::tampered("this environment's authenticated audit head is missing (it was deleted)")
            })?;
            if !self.integrity.head_ok(&head.environment, head.seq, &head.hash, &head.mac) {
                return Err(Error::tampered("the authenticated audit head fails its MAC (changed or forged)"));
            }
            Ok(head)
        })
        .await
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
