//! Delegated access: Dynamic's delegation webhooks received (signature first, then the event),
//! their two secrets decrypted in Rust and sealed as one record per wallet, hydrated for one
//! signing call, and shredded on revocation.
//!
//! A delegation is a wallet row at the reserved address `sharevault:delegation:<walletId>`, and
//! the webhooks' RSA key one at `sharevault:delegation-key`: the same envelope (its AAD binds the
//! reserved address, so no record moves between a delegation and a wallet), row MAC, audited
//! state, rotation and shredding as every wallet, through the one read path. No wallet call can
//! name a reserved address, and listing and counting wallets leave them out.

use super::*;
use crate::delegation::crypto::{self, DelegationKey};
use crate::delegation::{self as webhook, Envelope};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const DELEGATION_PREFIX: &str = "sharevault:delegation:";
pub const KEY_ADDRESS: &str = "sharevault:delegation-key";
/// The chain column of the key's record (it is no wallet's).
const KEY_CHAIN: &str = "sharevault";
/// The chain column of every delegation row (the wallet's own chain, which a revocation may not
/// name, is in the row's facts): a revocation's tombstone and the delegation after it are one row.
const DELEGATION_CHAIN: &str = "delegation";
/// A delegation revoked: its row keeps only this marker and the revoking event's time, so an
/// older `created` (a delayed retry, a replayed capture) never brings it back.
const REVOKED: &str = "revoked";
const LIVE: &str = "delegation";
/// How a future-dated event's refusal starts (a clock that is behind: retried, not dropped).
const AHEAD: &str = "the event is dated ahead of this host's clock";
/// Events older than this (by Dynamic's `timestamp`) are refused unless the caller sets its own.
pub const DEFAULT_MAX_AGE_MS: i64 = 24 * 60 * 60 * 1000;
/// How far ahead of this host's clock an event's timestamp may be.
const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

pub fn delegation_address(wallet_id: &str) -> String {
    format!("{DELEGATION_PREFIX}{wallet_id}")
}

/// What a webhook call answers: the HTTP status for Dynamic and what was done. Recorded with the
/// event, so a replay answers exactly what the first delivery did (`replay: true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookOutcome {
    pub status: u16,
    /// `stored`, `replaced`, `revoked`, `not_found` (a revocation of nothing), `stale` (older
    /// than the delegation stored), `pong`, `ignored` (another event), or `refused` / `failed`.
    pub outcome: String,
    pub event_id: Option<String>,
    pub event_name: Option<String>,
    pub wallet_id: Option<String>,
    #[serde(default)]
    pub replay: bool,
    pub code: Option<String>,
    pub message: Option<String>,
    pub path: Option<String>,
}

impl WebhookOutcome {
    fn done(status: u16, outcome: &str, env: &Envelope, wallet_id: Option<&str>) -> WebhookOutcome {
        WebhookOutcome {
            status,
            outcome: outcome.to_string(),
            event_id: Some(env.event_id.clone()),
            event_name: Some(env.event_name.clone()),
            wallet_id: wallet_id.map(str::to_string),
            replay: false,
            code: None,
            message: None,
            path: None,
        }
    }

    /// A refusal (4xx: Dynamic should not retry it) or a failure (5xx: it should).
    pub fn from_error(e: &Error, env: Option<&Envelope>) -> WebhookOutcome {
        let status = match e.code {
            ErrorCode::BadSignature => 401,
            ErrorCode::Forbidden => 403,
            // A field encrypted to another key than ours is, for a correctly signed event, our
            // key that is wrong or just replaced: worth Dynamic's retry once the operator fixes it.
            ErrorCode::InvalidInput if e.path.as_deref().is_some_and(|p| p.ends_with(".ek")) => 503,
            ErrorCode::WebhookExpired if e.message.starts_with(AHEAD) => 503,
            ErrorCode::InvalidInput | ErrorCode::WebhookExpired => 400,
            // Contention (another delivery or process moved the record): a retry settles it.
            ErrorCode::Conflict | ErrorCode::KmsUnavailable | ErrorCode::DbUnavailable | ErrorCode::Closed => 503,
            _ => 500,
        };
        WebhookOutcome {
            status,
            outcome: if status < 500 { "refused" } else { "failed" }.to_string(),
            event_id: env.map(|e| e.event_id.clone()),
            event_name: env.map(|e| e.event_name.clone()),
            wallet_id: None,
            replay: false,
            code: Some(e.code.as_str().to_string()),
            message: Some(e.message.clone()),
            path: e.path.clone(),
        }
    }
}

/// A webhook as the route received it.
pub struct WebhookInput<'a> {
    pub raw_body: &'a [u8],
    /// The `x-dynamic-signature-256` header.
    pub signature: Option<&'a str>,
    pub secret: &'a SecretBuf,
    /// Refuse events older than this (ms); `None`: [`DEFAULT_MAX_AGE_MS`]; `Some(0)`: no limit.
    pub max_age_ms: Option<i64>,
    /// The Dynamic environment this vault serves: an event of another one is refused.
    pub environment_id: Option<&'a str>,
}

/// The webhook key, as `delegationKey()` reports it (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelegationKeyInfo {
    pub fingerprint: String,
    pub bits: u32,
    /// `vault` (imported, sealed in the database) or `options` (given at open).
    pub source: String,
    pub imported_at: Option<i64>,
}

/// What a delegation's row holds besides its sealed secrets (its metadata JSON). The identity
/// fields every row carries (`walletId`, `accountAddress` = the reserved address, `chainName`)
/// are kept for the read path's identity check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredDelegation {
    wallet_id: String,
    account_address: String,
    /// Always [`DELEGATION_CHAIN`] (the row's identity); the wallet's chain is `chain`.
    chain_name: String,
    /// [`LIVE`], or [`REVOKED`] for a tombstone.
    kind: String,
    chain: String,
    /// The wallet's address (`publicKey` in the webhook).
    address: String,
    user_id: String,
    share_set_id: Option<String>,
    event_id: Option<String>,
    event_timestamp: Option<i64>,
    delegated_at: i64,
}

/// A delegation as `getDelegation` and `listDelegations` show it: no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelegationInfo {
    pub wallet_id: String,
    pub chain: String,
    pub address: String,
    pub user_id: String,
    pub share_set_id: Option<String>,
    pub event_id: Option<String>,
    pub delegated_at: i64,
    /// 1 for the first delegation, one more for each re-delegation.
    pub generation: i64,
}

/// What `withDelegation` hands the binding: the delegation (no secret) and the plaintext
/// `{ keyShare, walletApiKey }` encoding.
#[derive(Debug)]
pub struct HydratedDelegation {
    pub info: DelegationInfo,
    pub secrets: SecretBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredKey {
    wallet_id: String,
    account_address: String,
    chain_name: String,
    kind: String,
    fingerprint: String,
    bits: u32,
    imported_at: i64,
}

/// Webhooks of one wallet are handled one at a time in a process (50 deliveries of one event do
/// the work once; different wallets run side by side); across processes the event's record,
/// written with the change, decides.
#[derive(Default)]
pub(super) struct WalletLocks(std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

struct WalletLock<'a> {
    locks: &'a WalletLocks,
    key: String,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WalletLocks {
    async fn lock(&self, key: &str) -> WalletLock<'_> {
        let m = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        let held = m.lock_owned().await;
        WalletLock { locks: self, key: key.to_string(), held: Some(held) }
    }
}

impl Drop for WalletLock<'_> {
    fn drop(&mut self) {
        drop(self.held.take());
        let mut map = self.locks.0.lock().unwrap_or_else(|p| p.into_inner());
        // Nobody else holds or waits for it: forget it, so the map does not grow.
        if map.get(&self.key).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&self.key);
        }
    }
}

/// The plaintext of a delegation: `{ keyShare: <the share JSON>, walletApiKey: <string> }`,
/// encoded as shares are, and the share validated like a stored one.
fn delegation_plaintext(share_json: &SecretBuf, api_key: &SecretBuf, share_path: &str) -> Result<SecretBuf> {
    let key = std::str::from_utf8(api_key.as_slice())
        .map_err(|_| Error::invalid("data.encryptedWalletApiKey", "does not decrypt to UTF-8 text"))?;
    if key.is_empty() {
        return Err(Error::invalid("data.encryptedWalletApiKey", "decrypts to an empty key"));
    }
    let mut enc = shares::Encoder::new();
    enc.begin_object(2)?;
    enc.key("keyShare")?;
    shares::encode_json(share_json.as_slice(), &mut enc, share_path)?;
    enc.key("walletApiKey")?;
    enc.string(key)?;
    let buf = enc.finish();
    let doc = shares::decode(&buf).map_err(|_| Error::internal("reading a delegation back"))?;
    let share = doc.field("keyShare").ok_or_else(|| Error::internal("reading a delegation back"))?;
    shares::validate_share(share, share_path)?;
    Ok(buf)
}

fn parse_stored<T: for<'de> Deserialize<'de>>(json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|_| Error::tampered("the stored delegation record is not readable"))
}

impl StoredDelegation {
    fn info(self, generation: i64) -> DelegationInfo {
        DelegationInfo {
            wallet_id: self.wallet_id,
            chain: self.chain,
            address: self.address,
            user_id: self.user_id,
            share_set_id: self.share_set_id,
            event_id: self.event_id,
            delegated_at: self.delegated_at,
            generation,
        }
    }
}

fn no_delegation(wallet_id: &str) -> Error {
    Error::new(ErrorCode::NotFound, format!("no delegation is stored for wallet {wallet_id}"))
}

fn check_wallet_id(wallet_id: &str) -> Result<()> {
    if wallet_id.is_empty() || wallet_id.len() > model::MAX_ID_LEN {
        return Err(Error::invalid("walletId", "must be a non-empty string of at most 512 characters"));
    }
    Ok(())
}

/// The webhook key for one call: parsed already (given at open), or its sealed record opened.
enum WebhookKey {
    Parsed(Arc<DelegationKey>),
    Sealed(SecretBuf),
}

impl WebhookKey {
    fn parsed(self) -> Result<Arc<DelegationKey>> {
        match self {
            WebhookKey::Parsed(k) => Ok(k),
            WebhookKey::Sealed(der) => DelegationKey::from_pkcs8(&der)
                .map(Arc::new)
                .map_err(|_| Error::tampered("the stored delegation key is not readable")),
        }
    }
}

/// How a reserved record was written.
enum Put {
    /// Written over what was there before: nothing, a live delegation, or a tombstone.
    Written(Prev),
    /// The stored record comes from a later event (or the same one): nothing written.
    Stale,
    /// The event was recorded by another delivery first: its outcome.
    Replayed(String),
}

/// What a delegation's row held before a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prev {
    Nothing,
    Live,
    Revoked,
}

/// A reserved record to write.
struct Record<'a> {
    address: &'a str,
    wallet_id: &'a str,
    chain: &'a str,
    metadata_json: String,
    /// For a delegation: the time of the event (or local revocation) that writes it. A stored
    /// record from that time or later wins, decided against the very row the write swaps.
    order: Option<i64>,
}

/// The outcome an event records, given what the row held.
type OutcomeOf<'a> = &'a (dyn Fn(Prev) -> String + Sync);

impl Vault {
    /// The row at a reserved address, checked like a wallet's; `None` when the history agrees
    /// there is none.
    async fn reserved_row(&self, address: &str) -> Result<Option<WalletRow>> {
        match self.wallet_row_at(address, address).await {
            Ok(row) => Ok(Some(row)),
            Err(e) if e.code == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Seals `plaintext` as the record at `rec.address`: inserted when there is none, replaced
    /// (a new generation; the old one shredded) when there is, with `event` recorded in the same
    /// transaction. `audit` is the entry to write (its `wallet_mac` is set here).
    async fn put_reserved(
        &self,
        rec: &Record<'_>,
        plaintext: &SecretBuf,
        audit: AuditEntry,
        event: Option<(&str, OutcomeOf<'_>)>,
    ) -> Result<Put> {
        for attempt in 0..MAX_CAS_ATTEMPTS {
            if let Some((id, _)) = event {
                if let Some(first) = self.recorded_event(id).await? {
                    return Ok(Put::Replayed(first));
                }
            }
            let existing = self.reserved_row(rec.address).await?;
            let prev = match &existing {
                None => Prev::Nothing,
                Some(row) if rec.order.is_some() => {
                    let stored: StoredDelegation = parse_stored(&row.metadata_json)?;
                    if stored.event_timestamp.zip(rec.order).is_some_and(|(t, o)| o <= t) {
                        return Ok(Put::Stale);
                    }
                    if stored.kind == REVOKED {
                        Prev::Revoked
                    } else {
                        Prev::Live
                    }
                }
                Some(_) => Prev::Live,
            };
            let mut audit = audit.clone();
            let (change, ctx) = match &existing {
                None => {
                    let state_seq = self.store.latest_state(&self.environment, rec.address).await?.map(|s| s.seq);
                    let sealed = self.seal_generation(rec.wallet_id, rec.address, rec.chain, 1, plaintext).await?;
                    let row = WalletRow {
                        address: rec.address.to_string(),
                        address_key: rec.address.to_string(),
                        wallet_id: rec.wallet_id.to_string(),
                        chain_name: rec.chain.to_string(),
                        environment: self.environment.clone(),
                        metadata_json: rec.metadata_json.clone(),
                        version: 1,
                        generation: 1,
                        sealed,
                        mac: None,
                        sealed_digest: None,
                        state: None,
                    };
                    let digest = sealed_digest(&row.sealed);
                    let auth = self.row_auth(tamper::wallet_facts(&row, &digest));
                    audit.wallet_mac = Some(auth.mac.clone());
                    let ctx = (row.sealed.kek.clone(), row.sealed.wrapped_dek.clone());
                    (Change::Insert { row: Box::new(row), auth, state_seq }, ctx)
                }
                Some(row) => {
                    if row.wallet_id != rec.wallet_id || row.chain_name != rec.chain {
                        return Err(Error::invalid(
                            "data.chain",
                            format!("does not match the stored delegation's chain ({})", row.chain_name),
                        ));
                    }
                    let generation = row.generation + 1;
                    let sealed = self
                        .seal_generation(&row.wallet_id, &row.address_key, &row.chain_name, generation, plaintext)
                        .await?;
                    let digest = sealed_digest(&sealed);
                    let auth = self.row_auth(RowFacts {
                        metadata_json: &rec.metadata_json,
                        generation,
                        version: row.version + 1,
                        ..tamper::wallet_facts(row, &digest)
                    });
                    audit.wallet_mac = Some(auth.mac.clone());
                    let ctx = (sealed.kek.clone(), sealed.wrapped_dek.clone());
                    let change = Change::ReplaceShares {
                        address_key: row.address_key.clone(),
                        expected_version: row.version,
                        metadata_json: rec.metadata_json.clone(),
                        generation,
                        sealed,
                        auth,
                    };
                    (change, ctx)
                }
            };
            let change = match event {
                Some((id, outcome)) => self.event_change(id, outcome(prev), Some(change)),
                None => change,
            };
            let key_ctx = self.key_context(rec.wallet_id);
            let applied = self.apply(change, audit).await;
            if !matches!(applied, Ok(Applied::Done)) {
                self.kms.forget(&ctx.0, &ctx.1, &key_ctx);
            }
            match applied? {
                Applied::Done => {
                    if let Some(old) = existing {
                        self.kms.forget(&old.sealed.kek, &old.sealed.wrapped_dek, &key_ctx);
                    }
                    return Ok(Put::Written(prev));
                }
                Applied::Stale | Applied::NotFound => cas_backoff(attempt).await,
            }
        }
        Err(Error::new(ErrorCode::Conflict, "the record kept changing while it was written"))
    }

    /// Imports the webhooks' RSA private key (PKCS#8 PEM): sealed under the environment's key
    /// like a wallet's shares (a new import replaces and shreds the old one). Needs `keys:admin`.
    pub async fn import_delegation_key(&self, pem: &SecretBuf, actor: Option<&str>) -> Result<DelegationKeyInfo> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            self.permit(Permission::KeysAdmin, "delegation_key_import", KEY_ADDRESS, None, actor).await?;
            let der = crypto::pem_to_der(pem.as_slice())?;
            let key = DelegationKey::from_pkcs8(&der)?;
            let stored = StoredKey {
                wallet_id: KEY_ADDRESS.to_string(),
                account_address: KEY_ADDRESS.to_string(),
                chain_name: KEY_CHAIN.to_string(),
                kind: "delegation-key".to_string(),
                fingerprint: key.fingerprint().to_string(),
                bits: key.bits() as u32,
                imported_at: now_ms(),
            };
            let rec = Record {
                address: KEY_ADDRESS,
                wallet_id: KEY_ADDRESS,
                chain: KEY_CHAIN,
                metadata_json: serde_json::to_string(&stored)
                    .map_err(|_| Error::internal("serializing the key record"))?,
                order: None,
            };
            let audit = self.audit(actor, "delegation_key_import", KEY_ADDRESS, Some(KEY_ADDRESS), None, "ok");
            self.put_reserved(&rec, &der, audit, None).await?;
            Ok(DelegationKeyInfo {
                fingerprint: stored.fingerprint,
                bits: stored.bits,
                source: "vault".to_string(),
                imported_at: Some(stored.imported_at),
            })
        })
        .await
    }

    /// The webhook key in use (no secret): the one given at open, else the imported one.
    pub async fn delegation_key_info(&self) -> Result<Option<DelegationKeyInfo>> {
        self.run(async {
            if let Some(k) = &self.delegation_key {
                return Ok(Some(DelegationKeyInfo {
                    fingerprint: k.fingerprint().to_string(),
                    bits: k.bits() as u32,
                    source: "options".to_string(),
                    imported_at: None,
                }));
            }
            match self.metadata_row_at(KEY_ADDRESS, KEY_ADDRESS).await {
                Ok(row) => {
                    let k: StoredKey = parse_stored(&row.metadata_json)?;
                    Ok(Some(DelegationKeyInfo {
                        fingerprint: k.fingerprint,
                        bits: k.bits,
                        source: "vault".to_string(),
                        imported_at: Some(k.imported_at),
                    }))
                }
                Err(e) if e.code == ErrorCode::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// The key that decrypts webhooks, for one call: the one given at open, or the imported
    /// record unsealed (its DER only ever in zeroizing memory, parsed and dropped with the call).
    async fn webhook_key(&self) -> Result<WebhookKey> {
        if let Some(k) = &self.delegation_key {
            return Ok(WebhookKey::Parsed(k.clone()));
        }
        let Some(row) = self.reserved_row(KEY_ADDRESS).await? else {
            return Err(Error::new(
                ErrorCode::NotFound,
                "no delegation key: import the RSA private key registered with Dynamic (importDelegationKey) or \
                 give one at open (delegation.privateKeyFile / privateKeyEnv)",
            ));
        };
        Ok(WebhookKey::Sealed(self.open_row(&row).await?))
    }

    /// Handles one delivery of a Dynamic webhook: the signature over the raw body is checked
    /// first (in constant time), then the event. Never throws for what the webhook carries:
    /// every outcome is a [`WebhookOutcome`] the route answers with. `Err` only when the vault
    /// itself cannot run (closed).
    pub async fn receive_webhook(&self, input: WebhookInput<'_>, actor: Option<&str>) -> Result<WebhookOutcome> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            let mut env_seen: Option<Envelope> = None;
            match self.webhook_inner(&input, actor, &mut env_seen).await {
                Ok(outcome) => Ok(outcome),
                Err(e) if e.code == ErrorCode::Closed => Err(e),
                Err(e) => {
                    if e.code != ErrorCode::Forbidden {
                        // The event's wallet id only once it is a valid one (the error may be that it is not).
                        let wallet = env_seen
                            .as_ref()
                            .and_then(|env| env.data.get("walletId"))
                            .and_then(|w| w.as_str())
                            .filter(|w| check_wallet_id(w).is_ok());
                        let address =
                            wallet.map(delegation_address).unwrap_or_else(|| "sharevault:webhook".to_string());
                        let purpose = env_seen.as_ref().map(|env| format!("webhook:{}", env.event_id));
                        let audit = self.audit(actor, "webhook", &address, wallet, purpose.as_deref(), e.code.as_str());
                        // The route gets the refusal; a failure to audit it is secondary.
                        let _ = self.append_audit(audit).await;
                    }
                    self.stats.error(e.code);
                    Ok(WebhookOutcome::from_error(&e, env_seen.as_ref()))
                }
            }
        })
        .await
    }

    async fn webhook_inner(
        &self,
        input: &WebhookInput<'_>,
        actor: Option<&str>,
        seen: &mut Option<Envelope>,
    ) -> Result<WebhookOutcome> {
        self.permit(Permission::DelegationWrite, "webhook", "sharevault:webhook", None, actor).await?;
        let max_age = input.max_age_ms.unwrap_or(DEFAULT_MAX_AGE_MS);
        if max_age < 0 {
            return Err(Error::invalid("maxAgeMs", "must be 0 (no limit) or a positive number of ms"));
        }
        // Bounded before any work: the HMAC of an oversized body is work for whoever sends one.
        if input.raw_body.len() > webhook::MAX_BODY_BYTES {
            return Err(Error::invalid("body", "is larger than 4 MiB"));
        }
        crypto::verify_signature(input.secret.as_slice(), input.raw_body, input.signature)?;
        let env = Envelope::parse(input.raw_body)?;
        *seen = Some(env.clone());
        if let Some(expected) = input.environment_id {
            if env.environment_id.as_deref() != Some(expected) {
                return Err(Error::invalid("environmentId", "is not the Dynamic environment this vault serves"));
            }
        }
        let now = now_ms();
        match env.timestamp_ms {
            Some(ts) if ts - now > MAX_CLOCK_SKEW_MS => {
                return Err(Error::new(
                    ErrorCode::WebhookExpired,
                    format!("{AHEAD} by {} s (allowed: 300 s): check this host's clock", (ts - now) / 1000),
                ))
            }
            // A revocation is never too old: taking signing authority away is the safe direction.
            Some(ts) if max_age > 0 && now - ts > max_age && env.event_name != webhook::REVOKED => {
                return Err(Error::new(
                    ErrorCode::WebhookExpired,
                    format!("the event is {} s old (allowed: {} s)", (now - ts) / 1000, max_age / 1000),
                ))
            }
            None if max_age > 0 && env.event_name != webhook::PING => {
                return Err(Error::invalid("timestamp", "is required (the event's age and order are checked by it)"))
            }
            _ => {}
        }
        // A replay answers what the first delivery did, and writes nothing.
        if let Some(first) = self.recorded_event(&env.event_id).await? {
            return replayed(&first);
        }
        match env.event_name.as_str() {
            webhook::PING => Ok(WebhookOutcome::done(200, "pong", &env, None)),
            webhook::CREATED => self.delegation_created(&env, actor).await,
            webhook::REVOKED => self.delegation_revoked(&env, actor).await,
            _ => Ok(WebhookOutcome::done(200, "ignored", &env, None)),
        }
    }

    async fn delegation_created(&self, env: &Envelope, actor: Option<&str>) -> Result<WebhookOutcome> {
        let c = env.created()?;
        let share_path = env.share_path();
        let key = self.webhook_key().await?;
        // RSA is the costly part (two private-key operations): on a blocking thread, so the
        // runtime's worker goes on with other calls meanwhile.
        let (share, api_key) = (c.share.clone(), c.api_key.clone());
        let plaintext = tokio::task::spawn_blocking(move || {
            let key = key.parsed()?;
            let share = crypto::open_field(&key, Some(&share), share_path)?;
            let api_key = crypto::open_field(&key, Some(&api_key), "data.encryptedWalletApiKey")?;
            delegation_plaintext(&share, &api_key, share_path)
        })
        .await
        .map_err(|_| Error::internal("decrypting a webhook panicked"))??;
        let address = delegation_address(c.wallet_id);
        let _one_at_a_time = self.webhook_locks.lock(&address).await;
        let stored = StoredDelegation {
            wallet_id: c.wallet_id.to_string(),
            account_address: address.clone(),
            chain_name: DELEGATION_CHAIN.to_string(),
            kind: LIVE.to_string(),
            chain: c.chain.to_string(),
            address: c.address.to_string(),
            user_id: c.user_id.to_string(),
            share_set_id: c.share_set_id.map(str::to_string),
            event_id: Some(env.event_id.clone()),
            event_timestamp: env.timestamp_ms,
            delegated_at: now_ms(),
        };
        let rec = Record {
            address: &address,
            wallet_id: c.wallet_id,
            chain: DELEGATION_CHAIN,
            metadata_json: serde_json::to_string(&stored).map_err(|_| Error::internal("serializing a delegation"))?,
            order: env.timestamp_ms,
        };
        let purpose = format!("webhook:{}", env.event_id);
        let audit = self.audit(actor, "delegation_created", &address, Some(c.wallet_id), Some(&purpose), "ok");
        let outcome_for = |prev: Prev| {
            let what = if prev == Prev::Live { "replaced" } else { "stored" };
            WebhookOutcome::done(200, what, env, Some(c.wallet_id))
        };
        let outcome_of = |prev: Prev| serde_json::to_string(&outcome_for(prev)).unwrap_or_default();
        match self.put_reserved(&rec, &plaintext, audit, Some((&env.event_id, &outcome_of))).await? {
            Put::Written(prev) => Ok(outcome_for(prev)),
            Put::Replayed(first) => replayed(&first),
            Put::Stale => self.stale_event(env, &address, c.wallet_id, "delegation_created", actor).await,
        }
    }

    /// An event older than the delegation's record (a delayed retry, a capture replayed):
    /// recorded as `stale`, nothing else written.
    async fn stale_event(
        &self,
        env: &Envelope,
        address: &str,
        wallet_id: &str,
        action: &'static str,
        actor: Option<&str>,
    ) -> Result<WebhookOutcome> {
        let outcome = WebhookOutcome::done(200, "stale", env, Some(wallet_id));
        let record = serde_json::to_string(&outcome).map_err(|_| Error::internal("serializing an outcome"))?;
        let purpose = format!("webhook:{}", env.event_id);
        let audit = self.audit(actor, action, address, Some(wallet_id), Some(&purpose), "stale");
        match self.apply(self.event_change(&env.event_id, record, None), audit).await? {
            Applied::Done => Ok(outcome),
            _ => self.replay_of(&env.event_id).await,
        }
    }

    /// `Change::Event` for this environment's event, its record authenticated.
    fn event_change(&self, event_id: &str, outcome: String, then: Option<Change>) -> Change {
        let mac = self.integrity.event_tag(event_id, &outcome);
        Change::Event { event_id: event_id.to_string(), outcome, mac, then: then.map(Box::new) }
    }

    /// The outcome recorded for an event, once its MAC verifies: a record someone wrote without
    /// the key (to make a revocation look handled) is `ERR_TAMPERED`, never answered.
    async fn recorded_event(&self, event_id: &str) -> Result<Option<String>> {
        match self.store.webhook_event(&self.environment, event_id).await? {
            None => Ok(None),
            Some((outcome, mac)) if self.integrity.event_ok(event_id, &outcome, &mac) => Ok(Some(outcome)),
            Some(_) => Err(Error::tampered(format!(
                "the record of webhook event {event_id} does not verify: it was written or changed outside sharevault"
            ))),
        }
    }

    async fn replay_of(&self, event_id: &str) -> Result<WebhookOutcome> {
        match self.recorded_event(event_id).await? {
            Some(first) => replayed(&first),
            None => Err(Error::new(ErrorCode::Conflict, "the event could not be recorded; deliver it again")),
        }
    }

    async fn delegation_revoked(&self, env: &Envelope, actor: Option<&str>) -> Result<WebhookOutcome> {
        let r = env.revoked()?;
        let address = delegation_address(r.wallet_id);
        let _one_at_a_time = self.webhook_locks.lock(&address).await;
        let purpose = format!("webhook:{}", env.event_id);
        let audit = self.audit(actor, "delegation_revoked", &address, Some(r.wallet_id), Some(&purpose), "ok");
        let outcome_for = |prev: Prev| {
            let what = if prev == Prev::Live { "revoked" } else { "not_found" };
            WebhookOutcome::done(200, what, env, Some(r.wallet_id))
        };
        let outcome_of = |prev: Prev| serde_json::to_string(&outcome_for(prev)).unwrap_or_default();
        let order = env.timestamp_ms.unwrap_or_else(now_ms);
        match self
            .tombstone(r.wallet_id, r.chain, &address, order, Some(&env.event_id), audit, Some(&outcome_of))
            .await?
        {
            Put::Written(prev) => Ok(outcome_for(prev)),
            Put::Replayed(first) => replayed(&first),
            Put::Stale => self.stale_event(env, &address, r.wallet_id, "delegation_revoked", actor).await,
        }
    }

    /// Revokes a delegation by writing its tombstone over it (the secrets shredded with the old
    /// record; a row is written even where there was none, so an older `created` still being
    /// handled, here or in another process, finds it and stays out).
    #[allow(clippy::too_many_arguments)]
    async fn tombstone(
        &self,
        wallet_id: &str,
        chain: Option<&str>,
        address: &str,
        order: i64,
        event_id: Option<&str>,
        audit: AuditEntry,
        outcome: Option<OutcomeOf<'_>>,
    ) -> Result<Put> {
        let stored = StoredDelegation {
            wallet_id: wallet_id.to_string(),
            account_address: address.to_string(),
            chain_name: DELEGATION_CHAIN.to_string(),
            kind: REVOKED.to_string(),
            chain: chain.unwrap_or_default().to_string(),
            address: String::new(),
            user_id: String::new(),
            share_set_id: None,
            event_id: event_id.map(str::to_string),
            event_timestamp: Some(order),
            delegated_at: now_ms(),
        };
        let rec = Record {
            address,
            wallet_id,
            chain: DELEGATION_CHAIN,
            metadata_json: serde_json::to_string(&stored).map_err(|_| Error::internal("serializing a revocation"))?,
            order: Some(order),
        };
        let mut nothing = shares::Encoder::new();
        nothing.null()?;
        let event = event_id.zip(outcome);
        self.put_reserved(&rec, &nothing.finish(), audit, event).await
    }

    /// A delegation's secrets for one call (needs `hydrate:delegated`; audited before they are
    /// handed out, failures with their code).
    pub async fn hydrate_delegation(
        &self,
        wallet_id: &str,
        purpose: Option<&str>,
        actor: Option<&str>,
    ) -> Result<HydratedDelegation> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            check_label(purpose, "purpose", MAX_PURPOSE_LEN)?;
            check_wallet_id(wallet_id)?;
            let address = delegation_address(wallet_id);
            self.permit(Permission::HydrateDelegated, "hydrate_delegation", &address, purpose, actor).await?;
            let opened = async {
                let row = self.reserved_row(&address).await?.ok_or_else(|| no_delegation(wallet_id))?;
                let stored: StoredDelegation = parse_stored(&row.metadata_json)?;
                if stored.kind != LIVE {
                    return Err(no_delegation(wallet_id));
                }
                let secrets = self.open_row(&row).await?;
                Ok::<_, Error>((stored.info(row.generation), secrets))
            };
            match opened.await {
                Ok((info, secrets)) => {
                    let audit = self.audit(actor, "hydrate_delegation", &address, Some(wallet_id), purpose, "ok");
                    self.append_audit(audit).await?;
                    Ok(HydratedDelegation { info, secrets })
                }
                Err(e) => {
                    if e.code != ErrorCode::Closed {
                        let audit = self.audit(
                            actor,
                            "hydrate_delegation",
                            &address,
                            Some(wallet_id),
                            purpose,
                            e.code.as_str(),
                        );
                        let _ = self.append_audit(audit).await;
                    }
                    Err(e)
                }
            }
        })
        .await
    }

    /// A delegation without its secrets (no decryption, no KMS call).
    pub async fn get_delegation(&self, wallet_id: &str) -> Result<DelegationInfo> {
        self.run(async {
            check_wallet_id(wallet_id)?;
            let address = delegation_address(wallet_id);
            let row = match self.metadata_row_at(&address, &address).await {
                Err(e) if e.code == ErrorCode::NotFound => return Err(no_delegation(wallet_id)),
                other => other?,
            };
            let stored: StoredDelegation = parse_stored(&row.metadata_json)?;
            if stored.kind != LIVE {
                return Err(no_delegation(wallet_id));
            }
            Ok(stored.info(row.generation))
        })
        .await
    }

    /// This environment's delegations, by wallet id, `limit` at a time after the wallet id
    /// `after`, optionally only one user's or one chain's.
    pub async fn list_delegations(
        &self,
        user_id: Option<&str>,
        chain: Option<&str>,
        limit: Option<u32>,
        after: Option<&str>,
    ) -> Result<Vec<DelegationInfo>> {
        self.run(async {
            let limit = page_limit(limit)?;
            check_label(chain, "chain", 64)?;
            check_label(user_id, "userId", model::MAX_ID_LEN)?;
            if let Some(a) = after {
                check_wallet_id(a).map_err(|_| Error::invalid("after", "must be a wallet id"))?;
            }
            let mut out = Vec::new();
            let mut cursor = after.map(delegation_address);
            loop {
                let rows = self
                    .store
                    .list(ListQuery {
                        environment: self.environment.clone(),
                        chain_name: None,
                        after: cursor.clone(),
                        limit: MAX_LIST_LIMIT,
                        prefix: Some(DELEGATION_PREFIX.to_string()),
                    })
                    .await?;
                let full = rows.len() as u32 == MAX_LIST_LIMIT;
                for r in rows {
                    if r.environment != self.environment {
                        return Err(Error::tampered("a listed row names another environment"));
                    }
                    tamper::check_metadata(&self.integrity, &r)?;
                    cursor = Some(r.address_key.clone());
                    let d: StoredDelegation = parse_stored(&r.metadata_json)?;
                    let wanted =
                        d.kind == LIVE && user_id.is_none_or(|u| u == d.user_id) && chain.is_none_or(|c| c == d.chain);
                    if wanted {
                        out.push(d.info(r.generation));
                        if out.len() as u32 == limit {
                            return Ok(out);
                        }
                    }
                }
                if !full {
                    return Ok(out);
                }
            }
        })
        .await
    }

    /// Shreds a delegation here (as `deleteWallet`: record and wrapped key), audited. Dynamic is
    /// not told: the SDK wrapper's `revoke` calls Dynamic first. Needs `delete` (a shred, as `deleteWallet`).
    pub async fn revoke_delegation(&self, wallet_id: &str, actor: Option<&str>) -> Result<()> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            check_wallet_id(wallet_id)?;
            let address = delegation_address(wallet_id);
            self.permit(Permission::Delete, "delegation_revoked", &address, None, actor).await?;
            let _one_at_a_time = self.webhook_locks.lock(&address).await;
            let row = self.reserved_row(&address).await?.ok_or_else(|| no_delegation(wallet_id))?;
            let stored: StoredDelegation = parse_stored(&row.metadata_json)?;
            if stored.kind != LIVE {
                return Err(no_delegation(wallet_id));
            }
            let audit = self.audit(actor, "delegation_revoked", &address, Some(wallet_id), Some("local"), "ok");
            // Ordered at now: any `created` Dynamic sent before this moment stays out.
            let order = now_ms().max(stored.event_timestamp.unwrap_or(0) + 1);
            match self.tombstone(wallet_id, Some(&stored.chain), &address, order, None, audit, None).await? {
                Put::Written(_) => Ok(()),
                Put::Stale | Put::Replayed(_) => {
                    Err(Error::new(ErrorCode::Conflict, "the delegation changed while it was revoked"))
                }
            }
        })
        .await
    }
}

fn replayed(first: &str) -> Result<WebhookOutcome> {
    let mut o: WebhookOutcome =
        serde_json::from_str(first).map_err(|_| Error::tampered("a recorded webhook outcome is not readable"))?;
    o.replay = true;
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delegations_plaintext_holds_the_share_and_the_key_and_refuses_a_share_without_a_secret() {
        let share = SecretBuf::from_vec(br#"{"pubkey":{"pubkey":[1,2]},"secretShare":"s3"}"#.to_vec());
        let key = SecretBuf::from_vec(b"dyn_key".to_vec());
        let buf = delegation_plaintext(&share, &key, "data.encryptedDelegatedShare").unwrap();
        let doc = shares::decode(&buf).unwrap();
        assert_eq!(doc.field("walletApiKey"), Some(&shares::Value::Str("dyn_key")));
        assert_eq!(doc.field("keyShare").unwrap().field("secretShare"), Some(&shares::Value::Str("s3")));
        let bad = SecretBuf::from_vec(br#"{"pubkey":1}"#.to_vec());
        let e = delegation_plaintext(&bad, &key, "data.encryptedDelegatedShare").unwrap_err();
        assert_eq!(e.path.as_deref(), Some("data.encryptedDelegatedShare.secretShare"));
        let e = delegation_plaintext(&SecretBuf::from_vec(b"{".to_vec()), &key, "p").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput);
        let big = SecretBuf::from_vec(br#"{"secretShare":"x","n":9007199254740993}"#.to_vec());
        assert!(delegation_plaintext(&big, &key, "p").is_err());
    }
}
