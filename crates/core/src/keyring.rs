//! The keyring of an environment: the key-encryption keys it trusts, each `primary` (wraps every
//! new data key), `decrypt-only` (an earlier primary whose records are still being re-wrapped)
//! or `retired` (no record is read under it any more), with the time of each change.
//!
//! Entries are authenticated like wallet rows: each carries a MAC under the environment's
//! integrity key, and each change is one audit row (at the key's own address in the log,
//! [`log_address`]) that records the MAC written, so an entry changed, deleted, or put back to an
//! earlier authentic copy (a retired key made decrypt-only again) is seen. A key whose entry
//! does not verify is not trusted, whatever it says.
//!
//! `Vault::open` names the primary (and earlier keys that must still unwrap); opening with a new
//! primary registers it, demotes the old one, and moves the integrity key under it at once.

use crate::audit::{now_ms, AuditEntry, AuditRecord};
use crate::envelope::KekRef;
use crate::error::{Error, ErrorCode, Result};
use crate::integrity::{IntegrityKey, KeyringFacts};
use crate::kms::{KeyContext, KeyWrapping, Trusted};
use crate::secret::DataKey;
use crate::store::{Applied, Change, WalletStore, WrappedKey};
use crate::tamper;
use std::sync::Arc;

/// Where a key stands in an environment's keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Primary,
    DecryptOnly,
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Primary => "primary",
            KeyState::DecryptOnly => "decrypt-only",
            KeyState::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<KeyState> {
        match s {
            "primary" => Some(KeyState::Primary),
            "decrypt-only" => Some(KeyState::DecryptOnly),
            "retired" => Some(KeyState::Retired),
            _ => None,
        }
    }
}

/// One stored keyring entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringEntry {
    pub environment: String,
    /// The key; `key_version` is the version (material id) last seen as the key's current one.
    pub kek: KekRef,
    pub state: KeyState,
    pub added_at: i64,
    /// When the state (or the current version) last changed.
    pub changed_at: i64,
    /// Bumped by every change; changes compare-and-swap on it.
    pub version: i64,
    /// On the primary, while a re-encryption runs: every record sealed before this time (ms)
    /// gets a fresh data key and new ciphertext.
    pub reencrypt_before: Option<i64>,
    pub mac: Vec<u8>,
}

impl KeyringEntry {
    pub fn facts(&self) -> KeyringFacts<'_> {
        KeyringFacts {
            environment: &self.environment,
            provider: &self.kek.provider,
            key_id: &self.kek.key_id,
            key_version: &self.kek.key_version,
            state: self.state.as_str(),
            added_at: self.added_at,
            changed_at: self.changed_at,
            version: self.version,
            reencrypt_before: self.reencrypt_before.unwrap_or(-1),
        }
    }
}

/// The address in the audit log under which a key's keyring changes are recorded. No wallet can
/// have it: addresses that start with `sharevault:` are refused (see `model`).
pub fn log_address(kek: &KekRef) -> String {
    format!("{}key:{}:{}", crate::model::RESERVED_ADDRESS_PREFIX, kek.provider, kek.key_id)
}

/// The range of log addresses that holds every key's changes: `[lo, hi)`.
pub fn log_address_range() -> (String, String) {
    let lo = format!("{}key:", crate::model::RESERVED_ADDRESS_PREFIX);
    let hi = format!("{}key;", crate::model::RESERVED_ADDRESS_PREFIX);
    (lo, hi)
}

/// Whether an environment's name says it is production (`prod`, `production`, `live`, `prd`, as
/// a word of it: `eu-prod`, `Production`, `live_2`), where the local development key is refused
/// unless the open accepts it explicitly.
pub fn looks_like_production(environment: &str) -> bool {
    environment
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| matches!(w.to_ascii_lowercase().as_str(), "prod" | "production" | "live" | "prd"))
}

/// One key of the keyring as read and checked.
#[derive(Debug, Clone)]
pub struct Key {
    pub entry: KeyringEntry,
    /// `Some(why)` when the entry does not verify (changed, forged, put back, or deleted while
    /// the log says it exists): the key is then trusted for nothing.
    pub tampered: Option<String>,
}

/// The environment's keyring, checked.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    pub keys: Vec<Key>,
}

impl Keyring {
    /// The primary (the most recently changed, were there ever two).
    pub fn primary(&self) -> Option<&KeyringEntry> {
        self.keys
            .iter()
            .filter(|k| k.tampered.is_none() && k.entry.state == KeyState::Primary)
            .map(|k| &k.entry)
            .max_by_key(|e| (e.changed_at, e.version))
    }

    pub fn find(&self, kek: &KekRef) -> Option<&Key> {
        self.keys.iter().find(|k| k.entry.kek.same_key(kek))
    }

    /// What the key-wrapping seam may use: entries that verify and are not retired.
    pub fn trusted(&self) -> Trusted {
        let mut t = Trusted::default();
        for k in &self.keys {
            match (&k.tampered, k.entry.state) {
                (None, KeyState::Primary | KeyState::DecryptOnly) => t.usable.push(k.entry.kek.clone()),
                _ => t.retired.push(k.entry.kek.clone()),
            }
        }
        t
    }
}

/// Reads the environment's keyring and checks every entry against its MAC and the log.
pub async fn load(store: &Arc<dyn WalletStore>, key: &IntegrityKey) -> Result<Keyring> {
    let environment = key.environment();
    let crate::store::KeyringRead { entries, states } = store.keyring(environment).await?;
    let state_of = |kek: &KekRef| states.iter().find(|s| s.address == log_address(kek));
    let mut keys: Vec<Key> = entries
        .into_iter()
        .map(|entry| {
            let tampered = check_entry(key, &entry, state_of(&entry.kek)).err().map(|e| e.message);
            Key { entry, tampered }
        })
        .collect();
    // A key the log says is in the keyring, whose entry is gone: trusted for nothing.
    for s in &states {
        let present = keys.iter().any(|k| log_address(&k.entry.kek) == s.address);
        if !present && s.wallet_mac.as_deref().is_some_and(|m| !m.is_empty()) {
            if let Some(kek) = kek_of_address(&s.address) {
                let entry = KeyringEntry {
                    environment: environment.to_string(),
                    kek,
                    state: KeyState::Retired,
                    added_at: s.at_ms,
                    changed_at: s.at_ms,
                    version: 0,
                    reencrypt_before: None,
                    mac: Vec::new(),
                };
                let why = format!("the keyring entry of {} was deleted (audit seq {} records it)", s.address, s.seq);
                keys.push(Key { entry, tampered: Some(why) });
            }
        }
    }
    Ok(Keyring { keys })
}

fn kek_of_address(address: &str) -> Option<KekRef> {
    let rest = address.strip_prefix(crate::model::RESERVED_ADDRESS_PREFIX)?.strip_prefix("key:")?;
    let (provider, key_id) = rest.split_once(':')?;
    Some(KekRef { provider: provider.to_string(), key_id: key_id.to_string(), key_version: String::new() })
}

fn check_entry(key: &IntegrityKey, entry: &KeyringEntry, state: Option<&AuditRecord>) -> Result<()> {
    let name = format!("{} key {}", entry.kek.provider, entry.kek.key_id);
    if !key.keyring_ok(&entry.facts(), &entry.mac) {
        return Err(Error::tampered(format!(
            "the keyring entry of {name} does not verify: it was changed outside sharevault"
        )));
    }
    let Some(state) = state else {
        return Err(Error::tampered(format!("the keyring entry of {name} has no change in the audit log")));
    };
    let recorded = tamper::audited_state(key, &log_address(&entry.kek), state)?;
    if recorded != entry.mac.as_slice() {
        return Err(Error::tampered(format!(
            "the keyring entry of {name} is not the one the audit log records last (seq {}): an earlier copy was put back",
            state.seq
        )));
    }
    Ok(())
}

/// Writes `entry` (a new one when `expected` is `None`, else only over that version) with its
/// audit row, and returns that row as committed (for `onAudit`). `Ok(None)`: another process
/// changed it first.
pub async fn put(
    store: &Arc<dyn WalletStore>,
    key: &IntegrityKey,
    mut entry: KeyringEntry,
    expected: Option<i64>,
    actor: &str,
    action: &'static str,
    purpose: String,
) -> Result<Option<AuditEntry>> {
    entry.mac = key.keyring_tag(&entry.facts());
    let audit = AuditEntry {
        at_ms: now_ms(),
        environment: entry.environment.clone(),
        actor: actor.to_string(),
        action,
        address: log_address(&entry.kek),
        wallet_id: None,
        purpose: Some(purpose),
        outcome: "ok".to_string(),
        wallet_mac: Some(entry.mac.clone()),
    };
    let copy = audit.clone();
    match store.apply(Change::PutKey { entry: Box::new(entry), expected_version: expected }, audit).await? {
        Applied::Done => Ok(Some(copy)),
        Applied::Stale | Applied::NotFound => Ok(None),
    }
}

/// The audit actions of the key lifecycle.
pub const KEY_REGISTERED: &str = "key_registered";
pub const KEY_DEMOTED: &str = "key_demoted";
pub const KEY_RETIRED: &str = "key_retired";
pub const KEY_VERSION_SEEN: &str = "key_version_changed";
pub const INTEGRITY_KEY_MOVED: &str = "integrity_key_rewrapped";
pub const REENCRYPT_STARTED: &str = "reencrypt_started";
pub const REENCRYPT_FINISHED: &str = "reencrypt_finished";

fn name(kek: &KekRef) -> String {
    format!("{} key {}", kek.provider, kek.key_id)
}

/// What opening found and did.
pub struct Opened {
    pub integrity: Arc<IntegrityKey>,
    pub keyring: Keyring,
    /// The audit entries opening committed (registrations, the integrity key's move), for `onAudit`.
    pub committed: Vec<AuditEntry>,
}

/// Everything `Vault::open` does with keys: the integrity key (unwrapped by whichever
/// configured key holds it), the keyring read and checked, the configured primary registered
/// if it is new (the old primary demoted to decrypt-only), and the integrity key moved under
/// the primary. A log that refuses writes (broken, or from before schema 2) leaves the keyring
/// as it is: the vault opens with it in memory, as every write is refused until an operator acts.
pub async fn open(
    store: &Arc<dyn WalletStore>,
    kms: &KeyWrapping,
    environment: &str,
    actor: &str,
    local_in_production: bool,
) -> Result<Opened> {
    let primary = kms.current_kek().clone();
    if primary.provider == crate::kms::local::PROVIDER && looks_like_production(environment) && !local_in_production {
        return Err(Error::invalid(
            "kms.allowInProduction",
            format!(
                "environment {environment:?} looks like production, and the local key is for development (it lives in \
                 the process, unprotected by any KMS): use a KMS, or pass kms.allowInProduction: true to accept that"
            ),
        ));
    }
    // Before anything is stored for the environment (its integrity key included).
    refuse_shared(store, &primary, environment).await?;
    let (integrity, stored, root) = tamper::integrity_key(store, kms, environment).await?;
    let integrity = Arc::new(integrity);
    store.bind_audit_key(integrity.clone()).await?;
    tamper::enable(store, &integrity).await?;
    let mut ring = load(store, &integrity).await?;
    // Processes opening with a new primary at once: one registers it, the others find it done.
    let mut committed = Vec::new();
    let mut registered = register(store, kms, &integrity, &ring, &stored, actor, &mut committed).await;
    for _ in 0..4 {
        if !matches!(&registered, Err(e) if e.code == ErrorCode::Conflict) {
            break;
        }
        ring = load(store, &integrity).await?;
        registered = register(store, kms, &integrity, &ring, &stored, actor, &mut committed).await;
    }
    match registered {
        Ok(()) => {
            ring = load(store, &integrity).await?;
            committed.extend(move_integrity_key(store, kms, &integrity, &stored, root, actor).await?);
        }
        // The log refuses writes (broken, or from before schema 2), or the keyring does not
        // verify: nothing is registered until an operator repairs it (`acknowledgeAuditBreak`,
        // `authenticateExistingRows`, which re-register). The vault opens as it is, trusting
        // only what verifies (every write is refused meanwhile anyway).
        Err(e) if e.code == ErrorCode::Tampered => {}
        Err(e) => return Err(e),
    }
    if !ring.keys.is_empty() {
        kms.set_trusted(ring.trusted());
    }
    Ok(Opened { integrity, keyring: ring, committed })
}

/// An operator's repair of the keyring, after the log was repaired (`acknowledgeAuditBreak`) or
/// the rows were authenticated as they are (`authenticateExistingRows`, which passes
/// `reauthenticate`: entries that do not verify are then trusted as they are, each in an audited
/// write, as the rows are). Then the configured primary is registered, as at open, and the seam
/// told what it may trust.
pub async fn repair(
    store: &Arc<dyn WalletStore>,
    kms: &KeyWrapping,
    integrity: &IntegrityKey,
    actor: &str,
    reauthenticate: bool,
) -> Result<Vec<AuditEntry>> {
    let mut committed = Vec::new();
    let ring = load(store, integrity).await?;
    if reauthenticate {
        for k in ring.keys.iter().filter(|k| k.tampered.is_some() && !k.entry.mac.is_empty()) {
            let mut e = k.entry.clone();
            e.version += 1;
            let why = format!("{} authenticated as it is by an operator", name(&e.kek));
            committed.extend(
                put(store, integrity, e, Some(k.entry.version), actor, crate::audit::AUTHENTICATED, why).await?,
            );
        }
    }
    let ring = load(store, integrity).await?;
    if let Some(stored) = store.integrity_key(integrity.environment()).await? {
        register(store, kms, integrity, &ring, &stored, actor, &mut committed).await?;
    }
    let ring = load(store, integrity).await?;
    if !ring.keys.is_empty() {
        kms.set_trusted(ring.trusted());
    }
    Ok(committed)
}

/// Registers the configured primary (see [`open`]).
async fn register(
    store: &Arc<dyn WalletStore>,
    kms: &KeyWrapping,
    integrity: &IntegrityKey,
    ring: &Keyring,
    stored: &WrappedKey,
    actor: &str,
    committed: &mut Vec<AuditEntry>,
) -> Result<()> {
    let environment = integrity.environment();
    let primary = kms.current_kek().clone();
    let now = now_ms();
    let fresh = |kek: &KekRef, state: KeyState| KeyringEntry {
        environment: environment.to_string(),
        kek: kek.clone(),
        state,
        added_at: now,
        changed_at: now,
        version: 1,
        reencrypt_before: None,
        mac: Vec::new(),
    };
    if let Some(current) = ring.primary() {
        if current.kek.same_key(&primary) {
            if current.kek.key_version != primary.key_version {
                // The provider rotated the key's material (the key id stays): recorded, so rows
                // wrapped under the earlier material show as behind.
                let mut e = current.clone();
                let was = std::mem::replace(&mut e.kek.key_version, primary.key_version.clone());
                e.changed_at = now;
                e.version += 1;
                let why = format!("{} now at version {} (was {was})", name(&primary), primary.key_version);
                committed.extend(put(store, integrity, e, Some(current.version), actor, KEY_VERSION_SEEN, why).await?);
            }
            return Ok(());
        }
    }
    if let Some(k) = ring.find(&primary) {
        if let Some(why) = &k.tampered {
            return Err(Error::tampered(format!("{} cannot be made the primary: {why}", name(&primary))));
        }
        match k.entry.state {
            KeyState::Retired => {
                return Err(Error::new(
                    ErrorCode::KmsDenied,
                    format!(
                        "{} is retired in environment {environment}'s keyring: it is never a primary again",
                        name(&primary)
                    ),
                ))
            }
            KeyState::DecryptOnly => {
                let now_primary = ring.primary().map_or_else(|| "another key".to_string(), |p| name(&p.kek));
                return Err(Error::new(
                    ErrorCode::KmsDenied,
                    format!(
                        "{} is no longer environment {environment}'s primary ({now_primary} is): open with that key as \
                         kms and this one in kms.previous",
                        name(&primary)
                    ),
                ));
            }
            KeyState::Primary => {}
        }
    }
    refuse_shared(store, &primary, environment).await?;
    if ring.keys.is_empty() {
        // The first keyring of an environment (new, or from before keyrings): the key that wraps
        // its integrity key (and so every record it has) is trusted with the primary.
        if !stored.kek.same_key(&primary) {
            let why = format!("{} wraps the environment's records and integrity key", name(&stored.kek));
            let entry = fresh(&stored.kek, KeyState::DecryptOnly);
            committed.extend(put(store, integrity, entry, None, actor, KEY_REGISTERED, why).await?);
        }
    } else if let Some(old) = ring.primary() {
        let mut e = old.clone();
        e.state = KeyState::DecryptOnly;
        e.changed_at = now;
        e.version += 1;
        let why = format!("{} replaced as primary by {}", name(&old.kek), name(&primary));
        let Some(done) = put(store, integrity, e, Some(old.version), actor, KEY_DEMOTED, why).await? else {
            return Err(Error::new(
                ErrorCode::Conflict,
                "the keyring changed while the new primary was registered: open again",
            ));
        };
        committed.push(done);
    }
    let why = format!("{} is the primary", name(&primary));
    let Some(done) =
        put(store, integrity, fresh(&primary, KeyState::Primary), None, actor, KEY_REGISTERED, why).await?
    else {
        return Err(Error::new(
            ErrorCode::Conflict,
            "the keyring changed while the new primary was registered: open again",
        ));
    };
    committed.push(done);
    Ok(())
}

/// `ERR_ENVIRONMENT_MISMATCH` if another environment of the database holds `kek` in its keyring.
async fn refuse_shared(store: &Arc<dyn WalletStore>, kek: &KekRef, environment: &str) -> Result<()> {
    let holders = store.key_holders(kek).await?;
    match holders.iter().find(|e| e.as_str() != environment) {
        None => Ok(()),
        Some(other) => Err(Error::new(
            ErrorCode::EnvironmentMismatch,
            format!(
                "{} is already a key of environment {other} in this database, so it cannot also be environment \
                 {environment}'s: every environment needs a key of its own",
                name(kek)
            ),
        )),
    }
}

/// The key context of the integrity key's root as stored wrapped.
fn integrity_context(environment: &str) -> KeyContext {
    KeyContext { environment: environment.to_string(), wallet_id: tamper::INTEGRITY_CONTEXT.to_string() }
}

/// Moves the integrity key's root under the primary if another key holds it (the first open with
/// a new primary): re-wrapped (AWS `ReEncrypt` where it can), or, where it was derived from a
/// local key, wrapped under the primary for the first time. The key itself is unchanged, so every
/// MAC stays valid.
async fn move_integrity_key(
    store: &Arc<dyn WalletStore>,
    kms: &KeyWrapping,
    integrity: &IntegrityKey,
    stored: &WrappedKey,
    root: DataKey,
    actor: &str,
) -> Result<Option<AuditEntry>> {
    let primary = kms.current_kek().clone();
    if stored.kek.same_key(&primary) {
        return Ok(None);
    }
    let environment = integrity.environment();
    let ctx = integrity_context(environment);
    let (wrapped, kek) = if stored.wrapped.is_empty() {
        kms.wrap_uncached(&root, &ctx).await?
    } else {
        kms.rewrap_data_key(&stored.kek, &stored.wrapped, &ctx).await?
    };
    drop(root);
    let audit = AuditEntry {
        at_ms: now_ms(),
        environment: environment.to_string(),
        actor: actor.to_string(),
        action: INTEGRITY_KEY_MOVED,
        address: String::new(),
        wallet_id: None,
        purpose: Some(format!("from {} to {}", name(&stored.kek), name(&kek))),
        outcome: "ok".to_string(),
        wallet_mac: None,
    };
    // Another process may have moved it first: then it is where it should be.
    let copy = audit.clone();
    let change = Change::MoveIntegrityKey { from: stored.kek.clone(), to: WrappedKey { kek, wrapped } };
    Ok((store.apply(change, audit).await? == Applied::Done).then_some(copy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_looking_names_are_recognised_as_words() {
        for env in ["prod", "production", "Production", "eu-prod", "live", "live_2", "PRD", "payments.prod.eu"] {
            assert!(looks_like_production(env), "{env}");
        }
        for env in ["test", "staging", "dev", "product-demo", "delivery", "olive", "preprod-copy-x"] {
            assert!(!looks_like_production(env), "{env}");
        }
    }

    #[test]
    fn a_keys_log_address_names_it_and_reads_back() {
        let kek =
            KekRef { provider: "aws".into(), key_id: "arn:aws:kms:eu-west-1:1:key/k".into(), key_version: "1".into() };
        let a = log_address(&kek);
        assert!(a.starts_with(crate::model::RESERVED_ADDRESS_PREFIX));
        assert!(kek_of_address(&a).unwrap().same_key(&kek));
    }
}
