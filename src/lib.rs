//! The napi binding of sharevault: classes and functions, JS ⇄ Rust conversion, error mapping.
//! No business logic: everything here calls into `sharevault-core`. Most users never import this
//! module directly; the TypeScript facade (`lib/`) wraps it.

#![deny(clippy::all)]

mod convert;
mod error;
mod settle;

use convert::{HydratedOutput, SharesInput};
use error::IntoNapi;
use napi::bindgen_prelude::{Buffer, ToNapiValue};
use napi::Env;
use napi_derive::napi;
use settle::{spawn_settled, PromiseValue};
use sharevault_core::kms::aws::{AwsKmsConfig, StaticCredentials};
use sharevault_core::kms::cache::CacheConfig;
use sharevault_core::{DataKey, Error, KmsConfig, OpenConfig, Vault};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Options for `openVault`, as the facade passes them.
#[napi(object)]
pub struct NativeOpenOptions {
    /// `sqlite://path`, a plain path, or `:memory:`.
    pub database: String,
    /// The environment every record is bound to (e.g. `production`).
    pub environment: String,
    /// Default actor for the audit log.
    pub actor: Option<String>,
    /// Key provider: `local`.
    pub kms_provider: String,
    /// The local key as raw bytes (exactly 32).
    pub local_key: Option<Buffer>,
    /// The local key as base64 (exactly 32 bytes once decoded).
    pub local_key_base64: Option<String>,
    /// AWS KMS key id, ARN or alias.
    pub aws_key_id: Option<String>,
    pub aws_region: Option<String>,
    /// `https://…`, or `http://` on loopback only.
    pub aws_endpoint: Option<String>,
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<String>,
    pub aws_session_token: Option<String>,
    /// Deadline per KMS operation, retries included (default 5000).
    pub kms_timeout_ms: Option<u32>,
    /// Attempts per KMS operation (default 3).
    pub kms_max_attempts: Option<u32>,
    /// `false` turns the data-key cache off.
    pub cache_enabled: bool,
    pub cache_max_entries: Option<u32>,
    pub cache_max_age_ms: Option<u32>,
    pub cache_max_uses: Option<u32>,
}

fn local_key(raw: Option<Buffer>, b64: Option<String>) -> Result<DataKey, Error> {
    use base64::Engine;
    let bad = || Error::invalid("kms.key", "must be exactly 32 bytes, as a Buffer or a base64 string");
    match (raw, b64) {
        (Some(buf), None) => DataKey::from_slice(buf.as_ref()).ok_or_else(bad),
        (None, Some(s)) => {
            let bytes =
                zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(s.trim()).map_err(|_| bad())?);
            DataKey::from_slice(&bytes).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// Opens (creating and migrating if needed) a vault.
#[napi]
pub async fn open_vault(options: NativeOpenOptions) -> napi::Result<NativeVault> {
    let kms = match options.kms_provider.as_str() {
        "local" => KmsConfig::Local(local_key(options.local_key, options.local_key_base64).napi()?),
        "aws" => {
            let credentials = match (options.aws_access_key_id, options.aws_secret_access_key) {
                (Some(access_key_id), Some(secret)) => Some(StaticCredentials {
                    access_key_id,
                    secret_access_key: secret,
                    session_token: options.aws_session_token,
                }),
                (None, None) => None,
                _ => {
                    return Err(error::to_napi(Error::invalid(
                        "kms.credentials",
                        "needs both accessKeyId and secretAccessKey",
                    )))
                }
            };
            KmsConfig::Aws(AwsKmsConfig {
                key_id: options.aws_key_id.unwrap_or_default(),
                region: options.aws_region,
                endpoint: options.aws_endpoint,
                credentials,
                timeout: Duration::from_millis(options.kms_timeout_ms.unwrap_or(5000).max(1) as u64),
                max_attempts: options.kms_max_attempts.unwrap_or(3).clamp(1, 10),
            })
        }
        _ => return Err(error::to_napi(Error::invalid("kms.provider", "must be 'local' or 'aws'"))),
    };
    let cache = options.cache_enabled.then(|| {
        let d = CacheConfig::default();
        CacheConfig {
            max_entries: options.cache_max_entries.map_or(d.max_entries, |n| n as usize),
            max_age: options.cache_max_age_ms.map_or(d.max_age, |ms| Duration::from_millis(ms as u64)),
            max_uses: options.cache_max_uses.map_or(d.max_uses, u64::from),
        }
    });
    let config =
        OpenConfig { database: options.database, environment: options.environment, actor: options.actor, kms, cache };
    let vault = sharevault_core::open(config).await.napi()?;
    Ok(NativeVault { inner: Arc::new(vault) })
}

/// One audit-log row.
#[napi(object)]
pub struct NativeAuditRecord {
    pub seq: i64,
    pub at_ms: i64,
    pub environment: String,
    pub actor: String,
    pub action: String,
    pub address: String,
    pub wallet_id: Option<String>,
    pub purpose: Option<String>,
    pub outcome: String,
    /// Hex SHA-256 of this row chained to the previous one.
    pub hash: String,
}

/// The result of checking the audit log's hash chain.
#[napi(object)]
pub struct NativeChainCheck {
    pub rows: i64,
    /// Sequence number of the first row that does not chain, if any.
    pub broken_at: Option<i64>,
}

/// KMS calls by operation.
#[napi(object)]
pub struct NativeKmsCalls {
    pub generate_data_key: i64,
    pub decrypt: i64,
    pub re_encrypt: i64,
    pub describe_key: i64,
    /// HTTP attempts to KMS, retries included (AWS only).
    pub attempts: i64,
}

/// Counters since the vault was opened. No secret in any of it.
#[napi(object)]
pub struct NativeStats {
    pub kms_calls: NativeKmsCalls,
    pub cache_hits: i64,
    pub cache_misses: i64,
    pub cache_evictions: i64,
    /// Error counts by code.
    pub errors: HashMap<String, i64>,
    /// Hydrations in the latency window (the last 10,000).
    pub hydrations: i64,
    pub hydrate_p50_ms: f64,
    pub hydrate_p95_ms: f64,
    pub hydrate_p99_ms: f64,
}

/// A vault handle. Every method runs its database, crypto and KMS work off the JS thread.
#[napi]
pub struct NativeVault {
    inner: Arc<Vault>,
}

#[napi]
impl NativeVault {
    /// Stores a new wallet. `metadataJson` is `JSON.stringify(walletMetadata)`; `shares` is read
    /// directly into zeroizing memory. Resolves to the stored metadata JSON.
    #[napi(
        ts_args_type = "metadataJson: string, createdAddress: string | undefined | null, shares: unknown[], actor?: string | undefined | null",
        ts_return_type = "Promise<string>"
    )]
    pub fn store_wallet(
        &self,
        env: Env,
        metadata_json: String,
        created_address: Option<String>,
        shares: SharesInput,
        actor: Option<String>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move { v.store_wallet(&metadata_json, created_address.as_deref(), &shares.0, actor.as_deref()).await },
            |env, s| unsafe { String::to_napi_value(env, s) },
        )
    }

    /// The stored metadata JSON (no decryption).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn get_metadata(&self, env: Env, address: String) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(env.raw(), async move { v.get_metadata(&address).await }, |env, s| unsafe {
            String::to_napi_value(env, s)
        })
    }

    /// Decrypts a wallet for one call: `{ metadata, shares, generation }`, audited first. The
    /// plaintext is zeroized in Rust as soon as the JS objects are built.
    #[napi(ts_return_type = "Promise<{ metadata: string; shares: unknown[]; generation: number }>")]
    pub fn hydrate(
        &self,
        env: Env,
        address: String,
        purpose: Option<String>,
        actor: Option<String>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move { v.hydrate(&address, purpose.as_deref(), actor.as_deref()).await },
            |env, h| unsafe { HydratedOutput::to_napi_value(env, HydratedOutput(h)) },
        )
    }

    /// Replaces the metadata's backup info. Resolves to the new metadata JSON.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn merge_backup_info(
        &self,
        env: Env,
        address: String,
        backup_info_json: String,
        actor: Option<String>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move { v.merge_backup_info(&address, &backup_info_json, actor.as_deref()).await },
            |env, s| unsafe { String::to_napi_value(env, s) },
        )
    }

    /// Writes a new share generation with its backup info (and scheme) atomically.
    #[napi(
        ts_args_type = "address: string, shares: unknown[], backupInfoJson: string, scheme?: string | undefined | null, actor?: string | undefined | null",
        ts_return_type = "Promise<string>"
    )]
    pub fn replace_shares(
        &self,
        env: Env,
        address: String,
        shares: SharesInput,
        backup_info_json: String,
        scheme: Option<String>,
        actor: Option<String>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move {
                v.replace_shares(&address, &shares.0, &backup_info_json, scheme.as_deref(), actor.as_deref()).await
            },
            |env, s| unsafe { String::to_napi_value(env, s) },
        )
    }

    /// Deletes a wallet and its wrapped data key (crypto-shredding).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn delete_wallet(&self, env: Env, address: String, actor: Option<String>) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(env.raw(), async move { v.delete_wallet(&address, actor.as_deref()).await }, |env, ()| unsafe {
            <()>::to_napi_value(env, ())
        })
    }

    /// Metadata JSON of this environment's wallets, in address order.
    #[napi(ts_return_type = "Promise<Array<string>>")]
    pub fn list_wallets(
        &self,
        env: Env,
        chain_name: Option<String>,
        limit: Option<u32>,
        after: Option<String>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move { v.list_wallets(chain_name.as_deref(), limit, after.as_deref()).await },
            |env, rows| unsafe { Vec::<String>::to_napi_value(env, rows) },
        )
    }

    /// Audit rows, oldest first.
    #[napi(ts_return_type = "Promise<Array<NativeAuditRecord>>")]
    pub fn audit_log(
        &self,
        env: Env,
        address: Option<String>,
        after_seq: Option<i64>,
        limit: Option<u32>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move {
                let rows = v.audit_log(address.as_deref(), after_seq, limit).await?;
                Ok(rows
                    .into_iter()
                    .map(|r| NativeAuditRecord {
                        seq: r.seq,
                        at_ms: r.at_ms,
                        environment: r.environment,
                        actor: r.actor,
                        action: r.action,
                        address: r.address,
                        wallet_id: r.wallet_id,
                        purpose: r.purpose,
                        outcome: r.outcome,
                        hash: hex_string(&r.hash),
                    })
                    .collect::<Vec<_>>())
            },
            |env, rows| unsafe { Vec::<NativeAuditRecord>::to_napi_value(env, rows) },
        )
    }

    /// Recomputes the audit log's hash chain.
    #[napi(ts_return_type = "Promise<NativeChainCheck>")]
    pub fn verify_audit_chain(&self, env: Env) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move {
                let c = v.verify_audit_chain().await?;
                Ok(NativeChainCheck { rows: c.rows as i64, broken_at: c.broken_at })
            },
            |env, c| unsafe { NativeChainCheck::to_napi_value(env, c) },
        )
    }

    /// Counters: KMS calls, data-key cache, errors by code, hydrate latency percentiles.
    #[napi]
    pub fn stats(&self) -> NativeStats {
        let s = self.inner.stats();
        NativeStats {
            kms_calls: NativeKmsCalls {
                generate_data_key: s.kms_generate as i64,
                decrypt: s.kms_decrypt as i64,
                re_encrypt: s.kms_reencrypt as i64,
                describe_key: s.kms_describe as i64,
                attempts: s.kms_attempts as i64,
            },
            cache_hits: s.cache_hits as i64,
            cache_misses: s.cache_misses as i64,
            cache_evictions: s.cache_evictions as i64,
            errors: s.errors.into_iter().map(|(k, v)| (k.to_string(), v as i64)).collect(),
            hydrations: s.hydrations as i64,
            hydrate_p50_ms: s.hydrate_p50_ms,
            hydrate_p95_ms: s.hydrate_p95_ms,
            hydrate_p99_ms: s.hydrate_p99_ms,
        }
    }

    /// Finishes queued writes and closes the database.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(env.raw(), async move { v.close().await }, |env, ()| unsafe { <()>::to_napi_value(env, ()) })
    }
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
