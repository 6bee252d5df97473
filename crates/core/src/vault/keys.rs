//! The keyring's operator side: what every key of the environment wraps (`key_status`, from a
//! scan that checks every row's MAC, so the counts are the rows as sharevault wrote them), and
//! retiring a key no record needs any more.

use super::*;
use crate::envelope::KekRef;
use crate::keyring::{self, KeyState, Keyring, KEY_RETIRED};
use crate::kms::ProviderRotation;

/// The default age after which a key or a record's wrap is due for rotation (Dynamic's
/// checklist: "e.g. every 90 days").
pub const DEFAULT_ROTATE_AFTER_DAYS: u32 = 90;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Records wrapped under one version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionCount {
    pub version: String,
    pub records: u64,
}

/// One key of the environment, as `key_status` reports it.
#[derive(Debug, Clone)]
pub struct KeyReport {
    pub kek: KekRef,
    /// `primary`, `decrypt-only`, `retired`; `unknown` for a key that records name but the
    /// keyring does not hold.
    pub state: String,
    pub added_at: Option<i64>,
    pub changed_at: Option<i64>,
    /// Records (wallet rows) whose data key is wrapped under this key, any version.
    pub records: u64,
    pub by_version: Vec<VersionCount>,
    /// The oldest and newest wrap time of those records (ms); records from before wrap times
    /// were recorded are counted in `unknown_wrap_time` instead.
    pub oldest_wrap: Option<i64>,
    pub newest_wrap: Option<i64>,
    pub unknown_wrap_time: u64,
    /// Whether the environment's integrity key is wrapped under (or derived from) this key.
    pub integrity_key: bool,
    /// Whether this vault was opened with the key (as primary or in `previous`).
    pub configured: bool,
    /// The primary older than `rotate_after_days`, or any record under the key wrapped longer
    /// ago than that (or at a time not recorded).
    pub due: bool,
    /// What the provider says about its own automatic rotation of the key (AWS), if it says.
    pub provider_rotation: Option<ProviderRotation>,
    /// Why the key's keyring entry does not verify, if it does not (then it is trusted for nothing).
    pub tampered: Option<String>,
}

/// `key_status`: every key, and the rows that do not verify (counted under no key).
#[derive(Debug, Clone)]
pub struct KeyStatus {
    pub keys: Vec<KeyReport>,
    /// Rows behind the primary: wrapped under another key, another version, or at no recorded time
    /// (and, while a re-encryption runs, sealed before it started).
    pub behind: u64,
    /// Rows whose MAC or audited state does not verify.
    pub tampered: u64,
    pub rotate_after_days: u32,
    /// While a re-encryption runs: records sealed before this time get a new data key.
    pub reencrypt_before: Option<i64>,
}

/// Whether a row still has rotation work: its data key is not wrapped under the primary at its
/// current version, or at no recorded time, or (re-encrypting) its ciphertext is older than the
/// re-encryption. The stores claim rows by the same rule in SQL (`store::behind_sql`).
pub(super) fn behind(sealed: &SealedRecord, primary: &KekRef, sealed_before: Option<i64>) -> bool {
    !sealed.kek.same_key(primary)
        || sealed.kek.key_version != primary.key_version
        || sealed.wrapped_at.is_none()
        || needs_new_key(sealed, sealed_before)
}

/// Whether a re-encryption still has to give this record a fresh data key.
pub(super) fn needs_new_key(sealed: &SealedRecord, sealed_before: Option<i64>) -> bool {
    sealed_before.is_some_and(|t| sealed.sealed_at.is_none_or(|s| s < t))
}

impl Vault {
    /// The keyring as it is now, checked, and the seam told what it may trust.
    pub(super) async fn fresh_keyring(&self) -> Result<Keyring> {
        let ring = keyring::load(&self.store, &self.integrity).await?;
        if !ring.keys.is_empty() {
            self.kms.set_trusted(ring.trusted());
        }
        Ok(ring)
    }

    /// Every key of the environment: its keyring state, the records wrapped under it (from a
    /// scan of every row, each checked), their wrap times, and whether it is due.
    pub async fn key_status(&self, rotate_after_days: Option<u32>) -> Result<KeyStatus> {
        self.run(async {
            self.permit(Permission::AuditRead, "key_status", "", None, None).await?;
            let days = rotate_after_days.unwrap_or(DEFAULT_ROTATE_AFTER_DAYS);
            if days == 0 || days > 3650 {
                return Err(Error::invalid("rotateAfterDays", "must be an integer from 1 to 3650"));
            }
            let ring = self.fresh_keyring().await?;
            let mut status = self.census(&ring, days).await?;
            for k in &mut status.keys {
                if k.configured && k.state != KeyState::Retired.as_str() {
                    // Reported where the provider says; a provider that cannot be asked now is
                    // not a reason to fail the report.
                    k.provider_rotation = self.kms.rotation_setting(&k.kek).await.ok().flatten();
                }
            }
            Ok(status)
        })
        .await
    }

    /// The scan behind `key_status` (and a rotation's report): constant memory, a page at a time.
    pub(super) async fn census(&self, ring: &Keyring, days: u32) -> Result<KeyStatus> {
        let now = now_ms();
        let horizon = now - i64::from(days) * DAY_MS;
        let primary = self.kms.current_kek().clone();
        let reencrypt_before = ring.primary().and_then(|p| p.reencrypt_before);
        let integrity = self.store.integrity_key(&self.environment).await?.map(|k| k.kek);
        let configured = self.kms.configured();
        // A key's report before its records are counted.
        let report = |kek: &KekRef, state: &str| KeyReport {
            kek: kek.clone(),
            state: state.to_string(),
            added_at: None,
            changed_at: None,
            records: 0,
            by_version: Vec::new(),
            oldest_wrap: None,
            newest_wrap: None,
            unknown_wrap_time: 0,
            integrity_key: integrity.as_ref().is_some_and(|i| i.same_key(kek)),
            configured: configured.iter().any(|c| c.same_key(kek)),
            due: false,
            provider_rotation: None,
            tampered: None,
        };
        let mut keys: Vec<KeyReport> = ring
            .keys
            .iter()
            .map(|k| KeyReport {
                added_at: Some(k.entry.added_at),
                changed_at: Some(k.entry.changed_at),
                // The primary is due when it has been the primary for longer than the horizon.
                due: k.entry.state == KeyState::Primary && k.entry.changed_at < horizon,
                tampered: k.tampered.clone(),
                ..report(&k.entry.kek, k.entry.state.as_str())
            })
            .collect();
        let (mut behind_count, mut tampered) = (0u64, 0u64);
        let mut after: Option<String> = None;
        loop {
            let rows = self.store.wallet_page(&self.environment, after.as_deref(), MAX_LIST_LIMIT).await?;
            let Some(last) = rows.last() else { break };
            after = Some(last.address_key.clone());
            for r in &rows {
                if tamper::check_wallet(&self.integrity, r).is_err() {
                    tampered += 1;
                    continue;
                }
                let s = &r.sealed;
                if behind(s, &primary, reencrypt_before) {
                    behind_count += 1;
                }
                let i = match keys.iter().position(|k| k.kek.same_key(&s.kek)) {
                    Some(i) => i,
                    None => {
                        keys.push(report(&KekRef { key_version: String::new(), ..s.kek.clone() }, "unknown"));
                        keys.len() - 1
                    }
                };
                let k = &mut keys[i];
                k.records += 1;
                match k.by_version.iter_mut().find(|v| v.version == s.kek.key_version) {
                    Some(v) => v.records += 1,
                    None => k.by_version.push(VersionCount { version: s.kek.key_version.clone(), records: 1 }),
                }
                match s.wrapped_at {
                    Some(t) => {
                        k.oldest_wrap = Some(k.oldest_wrap.map_or(t, |o| o.min(t)));
                        k.newest_wrap = Some(k.newest_wrap.map_or(t, |n| n.max(t)));
                        if t < horizon {
                            k.due = true;
                        }
                    }
                    None => {
                        k.unknown_wrap_time += 1;
                        k.due = true;
                    }
                }
            }
        }
        Ok(KeyStatus { keys, behind: behind_count, tampered, rotate_after_days: days, reencrypt_before })
    }

    /// Marks a key retired: from then on no record wrapped under it is read (`ERR_KMS_DENIED`,
    /// naming it), as Transit's `min_decryption_version`. Refused for the primary, and while any
    /// record (or the integrity key) is still wrapped under it, or any row does not verify (it
    /// could be one), with the count. Retiring a retired key is a no-op.
    pub async fn retire_key(&self, provider: &str, key_id: &str, actor: Option<&str>) -> Result<()> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            check_label(Some(provider), "provider", 64)?;
            check_label(Some(key_id), "keyId", 2048)?;
            self.permit(Permission::KeysAdmin, KEY_RETIRED, "", None, actor).await?;
            let ring = self.fresh_keyring().await?;
            let wanted =
                KekRef { provider: provider.to_string(), key_id: key_id.to_string(), key_version: String::new() };
            let name = format!("{provider} key {key_id}");
            let Some(k) = ring.find(&wanted) else {
                return Err(Error::new(
                    ErrorCode::NotFound,
                    format!("{name} is not in environment {}'s keyring", self.environment),
                ));
            };
            if let Some(why) = &k.tampered {
                return Err(Error::tampered(why.clone()));
            }
            match k.entry.state {
                KeyState::Retired => return Ok(()),
                KeyState::Primary => {
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        format!("{name} is the primary: open the vault with a new primary and rotate first"),
                    ))
                }
                KeyState::DecryptOnly => {}
            }
            let status = self.census(&ring, DEFAULT_ROTATE_AFTER_DAYS).await?;
            let report = status.keys.iter().find(|r| r.kek.same_key(&wanted));
            let records = report.map_or(0, |r| r.records);
            if records > 0 {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!("{name} still wraps {records} record(s): rotate them first (vault.rotate())"),
                ));
            }
            if report.is_some_and(|r| r.integrity_key) {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!("{name} still wraps the environment's integrity key: open the vault once with the primary"),
                ));
            }
            if status.tampered > 0 {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "{} row(s) of the environment do not verify, and any of them could be wrapped under {name}: \
                         resolve them first",
                        status.tampered
                    ),
                ));
            }
            let mut e = k.entry.clone();
            e.state = KeyState::Retired;
            e.changed_at = now_ms();
            e.version += 1;
            let actor = actor.unwrap_or(&self.actor);
            let why = format!("{name} retired: no record is read under it any more");
            let put = keyring::put(&self.store, &self.integrity, e, Some(k.entry.version), actor, KEY_RETIRED, why);
            let Some(done) = put.await? else {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    "the keyring changed while the key was retired: try again",
                ));
            };
            self.forward(Some(done));
            self.fresh_keyring().await?;
            Ok(())
        })
        .await
    }
}
