//! The key lifecycle's methods of `NativeVault`: `keyStatus`, `retireKey`, and the three steps
//! the facade's `rotate()` loops over (begin, one batch at a time, finish), so progress and
//! aborting stay in JavaScript while every row moves in Rust.

use crate::error::to_napi;
use crate::out::{js_object, ToJs};
use crate::settle::{spawn_settled, PromiseValue};
use crate::NativeVault;
use napi::Env;
use napi_derive::napi;
use sharevault_core::vault::{KeyStatus, RotationPlan};
use sharevault_core::Error;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

js_object! {
    /// Records under one version of a key.
    #[napi(object)]
    pub struct NativeVersionCount {
        version: String => "version",
        records: i64 => "records",
    }
}

js_object! {
    /// The provider's own automatic rotation of a key (AWS `GetKeyRotationStatus`, Transit's
    /// `auto_rotate_period` and `min_decryption_version`).
    #[napi(object)]
    pub struct NativeProviderRotation {
        enabled: bool => "enabled",
        period_days: Option<i64> => "periodDays",
        next_rotation_ms: Option<i64> => "nextRotationMs",
        min_decryption_version: Option<String> => "minDecryptionVersion",
    }
}

js_object! {
    /// One key of the environment.
    #[napi(object)]
    pub struct NativeKeyReport {
        provider: String => "provider",
        key_id: String => "keyId",
        key_version: String => "keyVersion",
        state: String => "state",
        added_at_ms: Option<i64> => "addedAtMs",
        changed_at_ms: Option<i64> => "changedAtMs",
        records: i64 => "records",
        by_version: Vec<NativeVersionCount> => "byVersion",
        oldest_wrap_ms: Option<i64> => "oldestWrapMs",
        newest_wrap_ms: Option<i64> => "newestWrapMs",
        unknown_wrap_time: i64 => "unknownWrapTime",
        integrity_key: bool => "integrityKey",
        configured: bool => "configured",
        due: bool => "due",
        provider_rotation: Option<NativeProviderRotation> => "providerRotation",
        tampered: Option<String> => "tampered",
    }
}

js_object! {
    /// Every key of the environment, and the rows behind the primary.
    #[napi(object)]
    pub struct NativeKeyStatus {
        keys: Vec<NativeKeyReport> => "keys",
        behind: i64 => "behind",
        tampered: i64 => "tampered",
        rotate_after_days: i64 => "rotateAfterDays",
        reencrypt_before_ms: Option<i64> => "reencryptBeforeMs",
    }
}

js_object! {
    /// A rotation begun: its id for the batches, and the keys before it.
    #[napi(object)]
    pub struct NativeRotation {
        id: i64 => "id",
        reencrypt_before_ms: Option<i64> => "reencryptBeforeMs",
        before: NativeKeyStatus => "before",
    }
}

js_object! {
    /// One batch of a rotation.
    #[napi(object)]
    pub struct NativeBatch {
        claimed: i64 => "claimed",
        done: i64 => "done",
        skipped: i64 => "skipped",
        failed: HashMap<String, i64> => "failed",
        last: Option<String> => "last",
        /// With nothing claimed: rows behind that another rotator's lease still holds.
        held: i64 => "held",
    }
}

fn status_js(s: KeyStatus) -> NativeKeyStatus {
    NativeKeyStatus {
        keys: s
            .keys
            .into_iter()
            .map(|k| NativeKeyReport {
                provider: k.kek.provider,
                key_id: k.kek.key_id,
                key_version: k.kek.key_version,
                state: k.state,
                added_at_ms: k.added_at,
                changed_at_ms: k.changed_at,
                records: k.records as i64,
                by_version: k
                    .by_version
                    .into_iter()
                    .map(|v| NativeVersionCount { version: v.version, records: v.records as i64 })
                    .collect(),
                oldest_wrap_ms: k.oldest_wrap,
                newest_wrap_ms: k.newest_wrap,
                unknown_wrap_time: k.unknown_wrap_time as i64,
                integrity_key: k.integrity_key,
                configured: k.configured,
                due: k.due,
                provider_rotation: k.provider_rotation.map(|r| NativeProviderRotation {
                    enabled: r.enabled,
                    period_days: r.period_days,
                    next_rotation_ms: r.next_rotation_ms,
                    min_decryption_version: r.min_decryption_version,
                }),
                tampered: k.tampered,
            })
            .collect(),
        behind: s.behind as i64,
        tampered: s.tampered as i64,
        rotate_after_days: i64::from(s.rotate_after_days),
        reencrypt_before_ms: s.reencrypt_before,
    }
}

/// The rotations begun on a handle and not finished.
#[derive(Default)]
pub struct Rotations {
    next: Mutex<(u32, HashMap<u32, Arc<RotationPlan>>)>,
}

impl Rotations {
    fn add(&self, plan: RotationPlan) -> u32 {
        let mut g = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        g.0 = g.0.wrapping_add(1);
        let id = g.0;
        g.1.insert(id, Arc::new(plan));
        id
    }

    fn get(&self, id: f64) -> Result<Arc<RotationPlan>, Error> {
        let g = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        u32::try_from(id as i64)
            .ok()
            .and_then(|id| g.1.get(&id).cloned())
            .ok_or_else(|| Error::invalid("rotation", "is not a rotation begun on this vault handle (or it finished)"))
    }

    fn remove(&self, id: f64) {
        let mut g = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(id) = u32::try_from(id as i64) {
            g.1.remove(&id);
        }
    }
}

fn small(v: Option<f64>, path: &str, default: u32) -> Result<u32, Error> {
    Ok(crate::whole_arg(v, path)?.map_or(default, |n| u32::try_from(n).unwrap_or(u32::MAX)))
}

#[napi]
impl NativeVault {
    /// Every key of the environment's keyring: state, records wrapped under it (each row's MAC
    /// checked), oldest and newest wrap time, and whether it is due (`rotateAfterDays`, 90).
    #[napi(catch_unwind, ts_return_type = "Promise<NativeKeyStatus>")]
    pub fn key_status(&self, env: Env, rotate_after_days: Option<f64>) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move {
                let days = crate::whole_arg(rotate_after_days, "rotateAfterDays")?
                    .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
                Ok(status_js(v.key_status(days).await?))
            },
            |env, s| unsafe { s.to_js(env).map_err(to_napi) },
        )
    }

    /// Retires a key of the keyring (`provider`, `keyId`: the ARN for AWS, the fingerprint for a
    /// local key); refused for the primary and while anything is still wrapped under it.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn retire_key(
        &self,
        env: Env,
        provider: String,
        key_id: String,
        actor: Option<String>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move { v.retire_key(&provider, &key_id, actor.as_deref()).await },
            |env, ()| unsafe { ().to_js(env).map_err(to_napi) },
        )
    }

    /// Begins (or resumes) a rotation; `reencrypt`: every record gets a fresh data key.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeRotation>")]
    pub fn begin_rotation(&self, env: Env, reencrypt: bool, actor: Option<String>) -> napi::Result<PromiseValue> {
        let (v, rotations) = (self.inner.clone(), self.rotations.clone());
        spawn_settled(
            env.raw(),
            async move {
                let plan = v.begin_rotation(reencrypt, actor.as_deref()).await?;
                let (before, reencrypt_before_ms) = (status_js(plan.before.clone()), plan.reencrypt_before);
                let id = rotations.add(plan);
                Ok(NativeRotation { id: i64::from(id), reencrypt_before_ms, before })
            },
            |env, r| unsafe { r.to_js(env).map_err(to_napi) },
        )
    }

    /// One batch of a begun rotation: claims up to `batchSize` rows after `after` and moves each.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeBatch>")]
    pub fn rotate_batch(
        &self,
        env: Env,
        rotation: f64,
        after: Option<String>,
        batch_size: Option<f64>,
        concurrency: Option<f64>,
        actor: Option<String>,
    ) -> napi::Result<PromiseValue> {
        let (v, plan) = (self.inner.clone(), self.rotations.get(rotation));
        spawn_settled(
            env.raw(),
            async move {
                let plan = plan?;
                let limit = small(batch_size, "batchSize", 200)?;
                let concurrency = small(concurrency, "concurrency", 8)?;
                let b = v.rotate_batch(&plan, after.as_deref(), limit, concurrency, actor.as_deref()).await?;
                Ok(NativeBatch {
                    claimed: i64::from(b.claimed),
                    done: i64::from(b.done),
                    skipped: i64::from(b.skipped),
                    failed: b.failed.into_iter().map(|(k, n)| (k.to_string(), i64::from(n))).collect(),
                    last: b.last,
                    held: b.held as i64,
                })
            },
            |env, b| unsafe { b.to_js(env).map_err(to_napi) },
        )
    }

    /// Ends a rotation: the keys as they are now (a re-encryption with nothing left is recorded
    /// as finished).
    #[napi(catch_unwind, ts_return_type = "Promise<NativeKeyStatus>")]
    pub fn finish_rotation(&self, env: Env, rotation: f64, actor: Option<String>) -> napi::Result<PromiseValue> {
        let (v, plan, rotations) = (self.inner.clone(), self.rotations.get(rotation), self.rotations.clone());
        spawn_settled(
            env.raw(),
            async move {
                let plan = plan?;
                let after = v.finish_rotation(&plan, actor.as_deref()).await;
                rotations.remove(rotation);
                Ok(status_js(after?))
            },
            |env, s| unsafe { s.to_js(env).map_err(to_napi) },
        )
    }
}
