//! Rotation: re-wrapping every record's data key under the primary (the sealed shares are not
//! touched), or, for a suspected data-key or share exposure, re-encrypting every record under a
//! fresh data key.
//!
//! A rotation needs no cursor to resume: a row is behind when its key or version is not the
//! primary's (see `keys::behind`), so a rerun finds exactly what is left. Rows are claimed a batch
//! at a time with a lease (so several processes rotating one database do not do the same work),
//! and each row moves by compare-and-swap on its version, retried on a concurrent write, so a
//! wallet written while it is rotated is never overwritten with stale state. Each move is one
//! audited write (`rewrap` or `reencrypt`), like any other write of the row.

use super::keys::{behind, needs_new_key, KeyStatus, DEFAULT_ROTATE_AFTER_DAYS};
use super::*;
use crate::envelope::KekRef;
use crate::keyring::{self, REENCRYPT_FINISHED, REENCRYPT_STARTED};
use futures_util::stream::{self, StreamExt};
use std::collections::BTreeMap;

/// How long a claim keeps other rotators off a row.
/// Long enough for a batch (a thousand rows through a slow KMS); short enough that rows a killed
/// rotator held are taken by the next run soon (it waits for them, see `BatchOutcome::held`).
pub const LEASE_MS: i64 = 20_000;
pub const MAX_BATCH: u32 = 1000;
pub const MAX_CONCURRENCY: u32 = 64;

/// What a rotation run works towards, fixed when it begins.
#[derive(Debug, Clone)]
pub struct RotationPlan {
    pub primary: KekRef,
    /// Re-encrypting: every record sealed before this time gets a fresh data key.
    pub reencrypt_before: Option<i64>,
    /// The keys before the run.
    pub before: KeyStatus,
}

/// One batch of a rotation.
#[derive(Debug, Clone, Default)]
pub struct BatchOutcome {
    /// Rows claimed (0: nothing is left after `after`).
    pub claimed: u32,
    /// Rows moved under the primary.
    pub done: u32,
    /// Rows that needed nothing by the time they were read (moved by a concurrent write, deleted).
    pub skipped: u32,
    /// Rows that failed, by error code.
    pub failed: BTreeMap<&'static str, u32>,
    /// The last address key claimed: the next batch starts after it.
    pub last: Option<String>,
    /// With nothing claimed: rows behind that another rotator's lease holds (a rotator at work,
    /// or one that died: its lease runs out within `LEASE_MS`). A run waits for them and sweeps
    /// again, so it ends with every row done.
    pub held: u64,
}

impl Vault {
    /// Starts (or, re-encrypting, resumes) a rotation: checks that this vault's primary is the
    /// environment's, and when re-encrypting records the time before which every record gets a
    /// fresh data key (on the primary's keyring entry, audited; a rerun keeps the recorded time,
    /// so no record is done twice). Returns the plan with the keys as they are.
    pub async fn begin_rotation(&self, reencrypt: bool, actor: Option<&str>) -> Result<RotationPlan> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            self.permit(Permission::KeysAdmin, "rotate", "", None, actor).await?;
            let mut ring = self.fresh_keyring().await?;
            let primary = self.kms.current_kek().clone();
            let Some(entry) = ring.primary().cloned() else {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    "this environment's keyring has no primary yet (its audit log refuses writes): repair it first",
                ));
            };
            if !entry.kek.same_key(&primary) {
                return Err(Error::new(
                    ErrorCode::KmsDenied,
                    format!(
                        "this vault wraps under {} key {}, but the environment's primary is {} key {}: open it with \
                         the primary to rotate",
                        primary.provider, primary.key_id, entry.kek.provider, entry.kek.key_id
                    ),
                ));
            }
            if reencrypt && entry.reencrypt_before.is_none() {
                let mut e = entry.clone();
                let at = now_ms();
                e.reencrypt_before = Some(at);
                e.version += 1;
                let who = actor.unwrap_or(&self.actor);
                let why = "every record sealed before now gets a fresh data key and new ciphertext".to_string();
                let put =
                    keyring::put(&self.store, &self.integrity, e, Some(entry.version), who, REENCRYPT_STARTED, why);
                let Some(done) = put.await? else {
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        "the keyring changed as the re-encryption began: try again",
                    ));
                };
                self.forward(Some(done));
                ring = self.fresh_keyring().await?;
            }
            let reencrypt_before = if reencrypt { ring.primary().and_then(|p| p.reencrypt_before) } else { None };
            let before = self.census(&ring, DEFAULT_ROTATE_AFTER_DAYS).await?;
            Ok(RotationPlan { primary, reencrypt_before, before })
        })
        .await
    }

    /// Claims up to `limit` rows behind the primary after `after` and moves each (`concurrency`
    /// at a time). A row's failure is counted by code, never the batch's: the rest go on.
    pub async fn rotate_batch(
        &self,
        plan: &RotationPlan,
        after: Option<&str>,
        limit: u32,
        concurrency: u32,
        actor: Option<&str>,
    ) -> Result<BatchOutcome> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            if limit == 0 || limit > MAX_BATCH {
                return Err(Error::invalid("batchSize", format!("must be an integer from 1 to {MAX_BATCH}")));
            }
            if concurrency == 0 || concurrency > MAX_CONCURRENCY {
                return Err(Error::invalid("concurrency", format!("must be an integer from 1 to {MAX_CONCURRENCY}")));
            }
            self.allow.require(Permission::KeysAdmin)?;
            let now = now_ms();
            let claimed = self
                .store
                .claim_behind(ClaimQuery {
                    environment: self.environment.clone(),
                    primary: plan.primary.clone(),
                    sealed_before: plan.reencrypt_before,
                    after: after.map(str::to_string),
                    limit,
                    now_ms: now,
                    lease_until_ms: now + LEASE_MS,
                })
                .await?;
            let keys = claimed.keys;
            let mut out = BatchOutcome {
                claimed: keys.len() as u32,
                last: keys.last().cloned(),
                held: claimed.held,
                ..Default::default()
            };
            // Futures made first, then polled `concurrency` at a time, results in key order (a closure inside the stream
            // would make the whole call's future not `Send` for every lifetime).
            let moves: Vec<_> = keys.iter().map(|k| Box::pin(self.rotate_row(k, plan, actor))).collect();
            let results: Vec<Result<bool>> = stream::iter(moves).buffered(concurrency as usize).collect().await;
            let mut release = Vec::new();
            for (k, r) in keys.iter().zip(results) {
                match r {
                    Ok(true) => out.done += 1,
                    Ok(false) => out.skipped += 1,
                    Err(e) => {
                        self.stats.error(e.code);
                        *out.failed.entry(e.code.as_str()).or_default() += 1;
                        release.push(k.clone());
                    }
                }
            }
            // A row that failed is this rotator's no more: never waited for as if another held it.
            if !release.is_empty() {
                self.store.release_claims(&self.environment, release).await?;
            }
            Ok(out)
        })
        .await
    }

    /// Moves one row under the primary; `false` if it needed nothing by the time it was read.
    async fn rotate_row(&self, address_key: &str, plan: &RotationPlan, actor: Option<&str>) -> Result<bool> {
        for attempt in 0..MAX_CAS_ATTEMPTS {
            // A stored key (claimed from the table), not a caller's address: the vault's own
            // records at reserved addresses (delegations, the webhook key) rotate too.
            let row = match self.wallet_row_at(address_key, address_key).await {
                Ok(r) => r,
                Err(e) if e.code == ErrorCode::NotFound => return Ok(false),
                Err(e) => return Err(e),
            };
            if !behind(&row.sealed, &plan.primary, plan.reencrypt_before) {
                return Ok(false);
            }
            let ctx = self.key_context(&row.wallet_id);
            let fresh = needs_new_key(&row.sealed, plan.reencrypt_before);
            let (sealed, action) = if fresh {
                let plaintext = self.open_row(&row).await?;
                let sealed = self
                    .seal_generation(&row.wallet_id, &row.address_key, &row.chain_name, row.generation, &plaintext)
                    .await?;
                drop(plaintext);
                (sealed, "reencrypt")
            } else {
                let (wrapped_dek, kek) =
                    self.kms.rewrap_data_key(&row.sealed.kek, &row.sealed.wrapped_dek, &ctx).await?;
                (SealedRecord { kek, wrapped_dek, wrapped_at: Some(now_ms()), ..row.sealed.clone() }, "rewrap")
            };
            let digest = sealed_digest(&sealed);
            let auth = self.row_auth(RowFacts { version: row.version + 1, ..tamper::wallet_facts(&row, &digest) });
            let from = format!(
                "from {} key {} version {}",
                row.sealed.kek.provider, row.sealed.kek.key_id, row.sealed.kek.key_version
            );
            let mut audit = self.audit(actor, action, &row.address, Some(&row.wallet_id), Some(&from), "ok");
            audit.wallet_mac = Some(auth.mac.clone());
            let (new_kek, new_wrapped) = (sealed.kek.clone(), sealed.wrapped_dek.clone());
            let change = Change::Rewrap {
                address_key: row.address_key.clone(),
                expected_version: row.version,
                sealed,
                auth,
                reencrypted: fresh,
            };
            let applied = self.apply(change, audit).await;
            if fresh {
                // A rotation's new keys stay out of the cache (it would push the working set out).
                self.kms.forget(&new_kek, &new_wrapped, &ctx);
            }
            match applied? {
                Applied::Done => {
                    // The old wrapped key is gone from the row: so is any cached copy under it.
                    self.kms.forget(&row.sealed.kek, &row.sealed.wrapped_dek, &ctx);
                    return Ok(true);
                }
                Applied::Stale => cas_backoff(attempt).await,
                Applied::NotFound => return Ok(false),
            }
        }
        Err(Error::new(ErrorCode::Conflict, "the wallet kept changing while it was rotated"))
    }

    /// Ends a rotation run: the keys as they are now; a re-encryption with nothing left before its
    /// time is recorded as finished (audited), so the next one starts afresh.
    pub async fn finish_rotation(&self, plan: &RotationPlan, actor: Option<&str>) -> Result<KeyStatus> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            self.allow.require(Permission::KeysAdmin)?;
            let ring = self.fresh_keyring().await?;
            let after = self.census(&ring, DEFAULT_ROTATE_AFTER_DAYS).await?;
            if let (Some(_), Some(entry)) = (plan.reencrypt_before, ring.primary()) {
                if after.behind == 0 && after.tampered == 0 && entry.reencrypt_before.is_some() {
                    let mut e = entry.clone();
                    e.reencrypt_before = None;
                    e.version += 1;
                    let who = actor.unwrap_or(&self.actor);
                    let why = "every record has a fresh data key".to_string();
                    let put = keyring::put(
                        &self.store,
                        &self.integrity,
                        e,
                        Some(entry.version),
                        who,
                        REENCRYPT_FINISHED,
                        why,
                    );
                    self.forward(put.await?);
                    return self.census(&self.fresh_keyring().await?, DEFAULT_ROTATE_AFTER_DAYS).await;
                }
            }
            Ok(after)
        })
        .await
    }
}
