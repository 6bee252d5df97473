//! The napi binding of sharevault: classes and functions, JS ⇄ Rust conversion, error mapping.
//! No business logic: everything here calls into `sharevault-core`. Most users never import this
//! module directly; the TypeScript facade (`lib/`) wraps it.

#![deny(clippy::all)]

mod audit_sink;
mod convert;
mod error;
mod keys;
mod options;
mod out;
mod panic;
mod raw;
mod runtime;
mod settle;

use base64::Engine;
use convert::{BytesInput, DelegationOutput, HydratedOutput, SecretInput, SharesInput};
use error::to_napi;
use napi::bindgen_prelude::ToNapiValue;
use napi::Env;
use napi_derive::napi;
use out::{js_object, Built, ToJs};
use raw::RawValue;
use settle::{spawn_settled, PromiseValue};
use sharevault_core::{Error, Vault};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use error::ErrorCode;
pub use panic::panic_for_tests;

/// Hands promise settlement the `setImmediate` of `node:timers` (the facade does this once per
/// environment): settlements then run in bounded turns, with the event loop turning between them
/// (`settle`). Without it every finished call is settled in the turn it arrives.
#[napi(catch_unwind, ts_args_type = "setImmediate: (callback: () => void) => unknown")]
pub fn use_scheduler(env: Env, set_immediate: RawValue) -> napi::Result<()> {
    // SAFETY: on the JS thread, with this call's argument.
    unsafe { settle::use_scheduler(env.raw(), set_immediate.0) }
}

/// Opens (creating and migrating if needed) a vault. `options` is read here, on the JS thread,
/// as own properties only; every rule and range is checked by the core.
#[napi(catch_unwind, ts_args_type = "options: object", ts_return_type = "Promise<NativeVault>")]
pub fn open_vault(env: Env, options: RawValue) -> napi::Result<PromiseValue> {
    let parsed = options::open_config(env.raw(), options.0);
    spawn_settled(
        env.raw(),
        async move {
            let (config, sink) = parsed?;
            match sharevault_core::open(config).await {
                Ok(vault) => Ok((vault, sink)),
                Err(e) => {
                    if let Some(s) = sink {
                        s.release();
                    }
                    Err(e)
                }
            }
        },
        |env, (vault, sink)| unsafe {
            let open = Arc::new(AtomicBool::new(true));
            let handle = NativeVault::to_napi_value(
                env,
                NativeVault { inner: Arc::new(vault), sink, rotations: Default::default(), open },
            )?;
            settle::vault_opened(env);
            Ok(handle)
        },
    )
}

js_object! {
    /// What `migrate` found and left: schema versions (0: no schema).
    #[napi(object)]
    pub struct NativeMigrated {
        from: i64 => "from",
        to: i64 => "to",
    }
}

/// Creates or upgrades the schema of the database `options.database` names, and disconnects:
/// for deployments whose application role may not run DDL (open those with `migrate: false`).
#[napi(catch_unwind, ts_args_type = "options: object", ts_return_type = "Promise<NativeMigrated>")]
pub fn migrate(env: Env, options: RawValue) -> napi::Result<PromiseValue> {
    let config = options::migrate_config(env.raw(), options.0);
    spawn_settled(
        env.raw(),
        async move {
            let (database, store) = config?;
            sharevault_core::store::migrate(&database, &store).await
        },
        |env, m| unsafe { NativeMigrated { from: m.from, to: m.to }.to_js(env).map_err(to_napi) },
    )
}

/// A page size or sequence number from JS: a whole number, or `ERR_INVALID_INPUT` at `path`.
/// Its range is the core's to check (a value past `u32` saturates and is refused there).
fn whole_arg(v: Option<f64>, path: &str) -> Result<Option<u64>, Error> {
    v.map(|n| options::whole(n).ok_or_else(|| Error::invalid(path, "must be a non-negative whole number"))).transpose()
}

fn limit_arg(v: Option<f64>) -> Result<Option<u32>, Error> {
    Ok(whole_arg(v, "limit")?.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
}

js_object! {
    /// One audit-log row.
    #[napi(object)]
    pub struct NativeAuditRecord {
        seq: i64 => "seq",
        at_ms: i64 => "atMs",
        environment: String => "environment",
        actor: String => "actor",
        action: String => "action",
        address: String => "address",
        wallet_id: Option<String> => "walletId",
        purpose: Option<String> => "purpose",
        outcome: String => "outcome",
        /// Hex SHA-256 of this row chained to the previous one.
        hash: String => "hash",
    }
}

js_object! {
    /// The result of checking the audit log's hash chain.
    #[napi(object)]
    pub struct NativeChainCheck {
        rows: i64 => "rows",
        /// Sequence number of the first row that is wrong or missing, if any.
        broken_at: Option<i64> => "brokenAt",
        /// What is wrong there, in words.
        reason: Option<String> => "reason",
        /// Sequence numbers of this environment's rows recording an operator's acknowledgement
        /// of an earlier break (`acknowledgeAuditBreak`).
        acknowledged: Vec<i64> => "acknowledged",
    }
}

/// A sealed state as the caller holds it (base64 text), decoded.
fn sealed_blob(sealed: &str) -> Result<Vec<u8>, Error> {
    base64::engine::general_purpose::STANDARD
        .decode(sealed.trim())
        .map_err(|_| Error::invalid("sealed", "is not a sealed state (base64 expected)"))
}

/// A sealed state as the caller keeps it: base64 text.
fn sealed_text(blob: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(blob)
}

js_object! {
    /// What `authenticateExistingRows` did.
    #[napi(object)]
    pub struct NativeAuthenticated {
        /// Rows authenticated (one audited `authenticate` row each).
        authenticated: i64 => "authenticated",
        /// Rows whose MAC fails: never authenticated (they are tampered).
        refused: i64 => "refused",
    }
}

js_object! {
    /// What `compact` did.
    #[napi(object)]
    pub struct NativeCompacted {
        bytes_before: i64 => "bytesBefore",
        bytes_after: i64 => "bytesAfter",
        promise: String => "promise",
    }
}

js_object! {
    /// Wallets of one chain.
    #[napi(object)]
    pub struct NativeChainCount {
        chain_name: String => "chainName",
        wallets: i64 => "wallets",
    }
}

js_object! {
    /// The data-key cache's settings, as the vault runs with them (defaults filled in).
    #[napi(object)]
    pub struct NativeCacheSettings {
        max_entries: i64 => "maxEntries",
        max_age_ms: i64 => "maxAgeMs",
        max_uses: i64 => "maxUses",
    }
}

js_object! {
    /// What the vault holds, counted (`summary`).
    #[napi(object)]
    pub struct NativeSummary {
        backend: String => "backend",
        schema_version: i64 => "schemaVersion",
        wallets_by_chain: Vec<NativeChainCount> => "walletsByChain",
        /// `null`: the cache is off.
        cache: Option<NativeCacheSettings> => "cache",
    }
}

js_object! {
    /// An environment's authenticated audit head: keep it outside the database and pass it to
    /// `verifyAuditChain({ since })` later.
    #[napi(object)]
    pub struct NativeCheckpoint {
        environment: String => "environment",
        seq: i64 => "seq",
        /// Hex SHA-256 of the row at `seq`.
        hash: String => "hash",
        /// Hex HMAC-SHA-256 of the position under the environment's integrity key.
        mac: String => "mac",
    }
}

/// A checkpoint passed back in (`verifyAuditChain({ since })`), hex fields decoded.
fn checkpoint_arg(
    environment: Option<String>,
    seq: Option<f64>,
    hash: Option<String>,
    mac: Option<String>,
) -> Result<Option<sharevault_core::audit::SignedHead>, Error> {
    let Some(environment) = environment else { return Ok(None) };
    let seq = whole_arg(seq, "since.seq")?.ok_or_else(|| Error::invalid("since.seq", "is required"))?;
    let decode = |v: Option<String>, path: &str| {
        v.and_then(|h| hex::decode(h).ok())
            .filter(|b| b.len() == 32)
            .ok_or_else(|| Error::invalid(path, "must be 64 hexadecimal characters"))
    };
    Ok(Some(sharevault_core::audit::SignedHead {
        environment,
        seq: i64::try_from(seq).map_err(|_| Error::invalid("since.seq", "is out of range"))?,
        hash: decode(hash, "since.hash")?,
        mac: decode(mac, "since.mac")?,
    }))
}

js_object! {
    /// KMS calls by operation.
    #[napi(object)]
    pub struct NativeKmsCalls {
        generate_data_key: i64 => "generateDataKey",
        decrypt: i64 => "decrypt",
        re_encrypt: i64 => "reEncrypt",
        /// `Encrypt` of an existing data key (a rotation across providers or regions).
        encrypt: i64 => "encrypt",
        describe_key: i64 => "describeKey",
        /// HTTP attempts to KMS, retries included (AWS only).
        attempts: i64 => "attempts",
    }
}

js_object! {
    /// Counters since the vault was opened. No secret in any of it.
    #[napi(object)]
    pub struct NativeStats {
        kms_calls: NativeKmsCalls => "kmsCalls",
        cache_hits: i64 => "cacheHits",
        cache_misses: i64 => "cacheMisses",
        cache_evictions: i64 => "cacheEvictions",
        /// hits / (hits + misses) since open; null before the first lookup.
        cache_hit_rate: Option<f64> => "cacheHitRate",
        /// Error counts by code.
        errors: HashMap<String, i64> => "errors",
        /// Hydrations in the latency window (the last 10,000).
        hydrations: i64 => "hydrations",
        hydrate_p50_ms: f64 => "hydrateP50Ms",
        hydrate_p95_ms: f64 => "hydrateP95Ms",
        hydrate_p99_ms: f64 => "hydrateP99Ms",
        /// Which memory protections are in force (process-wide).
        memory: NativeMemoryProtection => "memory",
        /// `onAudit`: entries queued, dropped (queue full), delivered, and failed (handler threw).
        on_audit: NativeOnAuditStats => "onAudit",
        /// The database connection: the TLS version it negotiated.
        database: NativeDatabaseStats => "database",
        /// The runtime the vault's work runs on (process-wide).
        runtime: NativeRuntimeStats => "runtime",
    }
}

js_object! {
    /// The runtime's shape (process-wide; see the README's "Threads").
    #[napi(object)]
    pub struct NativeRuntimeStats {
        /// Worker threads (`SHAREVAULT_THREADS`, default one fewer than the cores).
        worker_threads: i64 => "workerThreads",
        /// The nice value the vault's threads run at (`SHAREVAULT_NICE`, default 10; Linux).
        nice: i64 => "nice",
    }
}

js_object! {
    /// The database connection as negotiated.
    #[napi(object)]
    pub struct NativeDatabaseStats {
        /// `TLSv1.3` (PostgreSQL over TLS), or null (no TLS, or SQLite).
        tls: Option<String> => "tls",
    }
}

js_object! {
    /// What became of the committed audit entries offered to `onAudit`.
    #[napi(object)]
    pub struct NativeOnAuditStats {
        queued: i64 => "queued",
        dropped: i64 => "dropped",
        delivered: i64 => "delivered",
        failed: i64 => "failed",
    }
}

js_object! {
    /// The memory protections in force, process-wide.
    #[napi(object)]
    pub struct NativeMemoryProtection {
        /// Pages holding plaintext shares and data keys are locked in RAM (never swapped).
        mlock: bool => "mlock",
        /// Those pages are excluded from core dumps (MADV_DONTDUMP).
        dont_dump: bool => "dontDump",
        /// The process is not dumpable (`hardenProcess: true`).
        non_dumpable: bool => "nonDumpable",
        /// Locks the OS refused (RLIMIT_MEMLOCK): those secrets were in swappable memory.
        mlock_failures: i64 => "mlockFailures",
        /// Pages locked now.
        locked_pages: i64 => "lockedPages",
    }
}

/// A vault handle. Every method runs its database, crypto and KMS work off the JS thread.
/// The options of a webhook delivery (`receiveWebhook`).
#[napi(object)]
#[derive(Default)]
pub struct NativeWebhookOptions {
    /// Refuse `created` events older than this (ms; 0: no limit; default 24 h).
    pub max_age_ms: Option<f64>,
    /// The Dynamic environment this vault serves.
    pub environment_id: Option<String>,
    pub actor: Option<String>,
}

#[napi]
pub struct NativeVault {
    inner: Arc<Vault>,
    /// `onAudit`'s queue, if the vault has one: released at close.
    sink: Option<Arc<audit_sink::Sink>>,
    /// Rotations begun on this handle (`keys`).
    rotations: Arc<keys::Rotations>,
    /// Counted among its JS thread's open vaults (`settle`) until its first close settles.
    open: Arc<AtomicBool>,
}

#[napi]
impl NativeVault {
    /// The environment this vault's records are bound to.
    #[napi(getter, catch_unwind)]
    pub fn environment(&self) -> String {
        self.inner.environment().to_string()
    }

    /// Stores a new wallet. `metadataJson` is `JSON.stringify(walletMetadata)`; `shares` is read
    /// directly into zeroizing memory. Resolves to the stored metadata JSON.
    #[napi(
        catch_unwind,
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
    #[napi(catch_unwind, ts_return_type = "Promise<string>")]
    pub fn get_metadata(&self, env: Env, address: String) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(env.raw(), async move { v.get_metadata(&address).await }, |env, s| unsafe {
            String::to_napi_value(env, s)
        })
    }

    /// Decrypts a wallet for one call: `{ metadata, shares, generation }`, audited first. The
    /// plaintext is zeroized in Rust as soon as the JS objects are built.
    #[napi(catch_unwind, ts_return_type = "Promise<{ metadata: string; shares: unknown[]; generation: number }>")]
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
    #[napi(catch_unwind, ts_return_type = "Promise<string>")]
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

    /// Writes a new share generation with its backup info (and scheme) atomically. With
    /// `walletId` and `baseGeneration` (the SDK wrapper, for shares derived from that wallet at
    /// that generation): written only while the wallet is still there; already written is success.
    #[napi(
        catch_unwind,
        ts_args_type = "address: string, shares: unknown[], backupInfoJson: string, scheme?: string | undefined | null, actor?: string | undefined | null, walletId?: string | undefined | null, baseGeneration?: number | undefined | null",
        ts_return_type = "Promise<string>"
    )]
    #[allow(clippy::too_many_arguments)]
    pub fn replace_shares(
        &self,
        env: Env,
        address: String,
        shares: SharesInput,
        backup_info_json: String,
        scheme: Option<String>,
        actor: Option<String>,
        wallet_id: Option<String>,
        base_generation: Option<i64>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move {
                let (scheme, actor) = (scheme.as_deref(), actor.as_deref());
                match (wallet_id.as_deref(), base_generation) {
                    (Some(wallet_id), Some(generation)) => {
                        let basis = sharevault_core::vault::Basis { wallet_id, generation };
                        v.replace_shares_from(&address, &shares.0, &backup_info_json, scheme, actor, basis).await
                    }
                    (None, None) => v.replace_shares(&address, &shares.0, &backup_info_json, scheme, actor).await,
                    _ => Err(Error::invalid("baseGeneration", "walletId and baseGeneration go together")),
                }
            },
            |env, s| unsafe { String::to_napi_value(env, s) },
        )
    }

    /// Seals new shares that could not be written (with their backup info and scheme, or for a
    /// new wallet, `baseGeneration` 0, its metadata) under a fresh data key, bound to the wallet
    /// and the generation they replace. Resolves to the sealed state, base64: what
    /// `ERR_UNPERSISTED_SHARES` carries. Needs the KMS only.
    #[napi(
        catch_unwind,
        ts_args_type = "metadataJson: string, baseGeneration: number, shares: unknown[], backupInfoJson?: string | undefined | null, scheme?: string | undefined | null",
        ts_return_type = "Promise<string>"
    )]
    pub fn seal_unpersisted(
        &self,
        env: Env,
        metadata_json: String,
        base_generation: i64,
        shares: SharesInput,
        backup_info_json: Option<String>,
        scheme: Option<String>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move {
                let blob = v
                    .seal_unpersisted(
                        &metadata_json,
                        base_generation,
                        &shares.0,
                        backup_info_json.as_deref(),
                        scheme.as_deref(),
                    )
                    .await?;
                Ok(sealed_text(&blob))
            },
            |env, s| unsafe { String::to_napi_value(env, s) },
        )
    }

    /// The SDK wrapper's check, before an SDK call it cannot undo, that this handle may do the
    /// whole operation: the hydrate for `purpose` and the keeping of its `result` (`wallet`,
    /// `backup` or `shares`).
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn permit_operation(
        &self,
        env: Env,
        method: String,
        purpose: Option<String>,
        result: Option<String>,
        address: Option<String>,
        actor: Option<String>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move {
                v.permit_operation(
                    &method,
                    purpose.as_deref(),
                    result.as_deref(),
                    address.as_deref().unwrap_or(""),
                    actor.as_deref(),
                )
                .await
            },
            |env, ()| unsafe { <()>::to_napi_value(env, ()) },
        )
    }

    /// `sealUnpersisted` for an SDK result the share encoding refuses: `raw` is that result as
    /// it came (the facade's `v8.serialize`), sealed losslessly; the caller wipes its copy.
    #[napi(
        catch_unwind,
        ts_args_type = "metadataJson: string, baseGeneration: number, raw: Uint8Array, backupInfoJson?: string | undefined | null, scheme?: string | undefined | null",
        ts_return_type = "Promise<string>"
    )]
    pub fn seal_unpersisted_raw(
        &self,
        env: Env,
        metadata_json: String,
        base_generation: i64,
        raw: napi::bindgen_prelude::Uint8Array,
        backup_info_json: Option<String>,
        scheme: Option<String>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        let raw = sharevault_core::SecretBuf::from_vec(raw.to_vec());
        spawn_settled(
            env.raw(),
            async move {
                let blob = v
                    .seal_unpersisted_raw(
                        &metadata_json,
                        base_generation,
                        &raw,
                        backup_info_json.as_deref(),
                        scheme.as_deref(),
                    )
                    .await?;
                Ok(sealed_text(&blob))
            },
            |env, s| unsafe { String::to_napi_value(env, s) },
        )
    }

    /// The operator's read of a raw sealed state (needs `hydrate:export`; audited): the SDK's
    /// result as it was sealed, as bytes for the facade's `v8.deserialize`.
    #[napi(catch_unwind, ts_return_type = "Promise<Buffer>")]
    pub fn open_sealed(&self, env: Env, sealed: String, actor: Option<String>) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move {
                let blob = sealed_blob(&sealed)?;
                Ok(v.open_sealed(&blob, actor.as_deref()).await?.1)
            },
            |env, plaintext| unsafe {
                // Copied into the JS Buffer the caller deserializes and wipes; ours is zeroized
                // when it drops here.
                let bytes = plaintext.as_slice();
                let (mut data, mut out) = (std::ptr::null_mut(), std::ptr::null_mut());
                raw::check(
                    napi::sys::napi_create_buffer_copy(env, bytes.len(), bytes.as_ptr().cast(), &mut data, &mut out),
                    "creating a buffer",
                )
                .map_err(to_napi)?;
                Ok(out)
            },
        )
    }

    /// Writes a sealed state (from `sealUnpersisted`) as the wallet's shares, if the wallet is
    /// still at the generation it replaces. Resolves to the new metadata JSON.
    #[napi(catch_unwind, ts_return_type = "Promise<string>")]
    pub fn recover_sealed(&self, env: Env, sealed: String, actor: Option<String>) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move {
                let blob = sealed_blob(&sealed)?;
                v.recover_sealed(&blob, actor.as_deref()).await
            },
            |env, s| unsafe { String::to_napi_value(env, s) },
        )
    }

    /// Imports the delegation webhooks' RSA private key (PKCS#8 PEM), sealed in the vault (needs
    /// `keys:admin`). Resolves to `{ fingerprint, bits, source, importedAt }` as JSON.
    #[napi(
        catch_unwind,
        ts_args_type = "pem: string | Uint8Array, actor?: string | undefined | null",
        ts_return_type = "Promise<string>"
    )]
    pub fn import_delegation_key(
        &self,
        env: Env,
        pem: SecretInput,
        actor: Option<String>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move {
                let info = v.import_delegation_key(&pem.0, actor.as_deref()).await?;
                serde_json::to_string(&info).map_err(|_| Error::internal("serializing the key's description"))
            },
            |env, s| unsafe { String::to_napi_value(env, s) },
        )
    }

    /// The delegation key in use, as JSON (`null` when there is none); no secret.
    #[napi(catch_unwind, ts_return_type = "Promise<string>")]
    pub fn delegation_key(&self, env: Env) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move {
                let info = v.delegation_key_info().await?;
                serde_json::to_string(&info).map_err(|_| Error::internal("serializing the key's description"))
            },
            |env, s| unsafe { String::to_napi_value(env, s) },
        )
    }

    /// Handles one delivery of a Dynamic delegation webhook: the signature over `rawBody` first,
    /// then the event. Resolves to the outcome as JSON (status, outcome, code); rejects only when
    /// the vault is closed.
    #[napi(
        catch_unwind,
        ts_args_type = "rawBody: Uint8Array | string, signature: string | undefined | null, secret: string | Uint8Array, options?: NativeWebhookOptions | undefined | null",
        ts_return_type = "Promise<string>"
    )]
    pub fn receive_webhook(
        &self,
        env: Env,
        raw_body: BytesInput,
        signature: Option<String>,
        secret: SecretInput,
        options: Option<NativeWebhookOptions>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        let NativeWebhookOptions { max_age_ms, environment_id, actor } = options.unwrap_or_default();
        spawn_settled(
            env.raw(),
            async move {
                let max_age_ms = match max_age_ms {
                    None => None,
                    Some(n) => Some(options::whole(n).ok_or_else(|| {
                        Error::invalid("maxAgeMs", "must be a non-negative whole number of ms (0: no limit)")
                    })? as i64),
                };
                let input = sharevault_core::vault::delegations::WebhookInput {
                    raw_body: &raw_body.0,
                    signature: signature.as_deref(),
                    secret: &secret.0,
                    max_age_ms,
                    environment_id: environment_id.as_deref(),
                };
                let outcome = v.receive_webhook(input, actor.as_deref()).await?;
                serde_json::to_string(&outcome).map_err(|_| Error::internal("serializing the outcome"))
            },
            |env, s| unsafe { String::to_napi_value(env, s) },
        )
    }

    /// A delegation's secrets for one call (needs `hydrate:delegated`; audited first):
    /// `{ info, secrets: { keyShare, walletApiKey } }`, zeroized in Rust once built.
    #[napi(
        catch_unwind,
        ts_return_type = "Promise<{ info: string; secrets: { keyShare: unknown; walletApiKey: string } }>"
    )]
    pub fn hydrate_delegation(
        &self,
        env: Env,
        wallet_id: String,
        purpose: Option<String>,
        actor: Option<String>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move { v.hydrate_delegation(&wallet_id, purpose.as_deref(), actor.as_deref()).await },
            |env, h| unsafe { DelegationOutput::to_napi_value(env, DelegationOutput(h)) },
        )
    }

    /// A delegation without its secrets, as JSON.
    #[napi(catch_unwind, ts_return_type = "Promise<string>")]
    pub fn get_delegation(&self, env: Env, wallet_id: String) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move {
                let d = v.get_delegation(&wallet_id).await?;
                serde_json::to_string(&d).map_err(|_| Error::internal("serializing a delegation"))
            },
            |env, s| unsafe { String::to_napi_value(env, s) },
        )
    }

    /// This environment's delegations (no secrets), as a JSON array.
    #[napi(catch_unwind, ts_return_type = "Promise<string>")]
    pub fn list_delegations(
        &self,
        env: Env,
        user_id: Option<String>,
        chain: Option<String>,
        limit: Option<u32>,
        after: Option<String>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move {
                let list = v.list_delegations(user_id.as_deref(), chain.as_deref(), limit, after.as_deref()).await?;
                serde_json::to_string(&list).map_err(|_| Error::internal("serializing delegations"))
            },
            |env, s| unsafe { String::to_napi_value(env, s) },
        )
    }

    /// Shreds a delegation locally (record and wrapped key), audited; needs `delegation:write`.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn revoke_delegation(&self, env: Env, wallet_id: String, actor: Option<String>) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move { v.revoke_delegation(&wallet_id, actor.as_deref()).await },
            |env, ()| unsafe { <()>::to_napi_value(env, ()) },
        )
    }

    /// Deletes a wallet and its wrapped data key (crypto-shredding).
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn delete_wallet(&self, env: Env, address: String, actor: Option<String>) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(env.raw(), async move { v.delete_wallet(&address, actor.as_deref()).await }, |env, ()| unsafe {
            <()>::to_napi_value(env, ())
        })
    }

    /// Metadata JSON of this environment's wallets, in address order.
    #[napi(catch_unwind, ts_return_type = "Promise<Array<string>>")]
    pub fn list_wallets(
        &self,
        env: Env,
        chain_name: Option<String>,
        limit: Option<f64>,
        after: Option<String>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        let limit = limit_arg(limit);
        spawn_settled(
            env.raw(),
            async move { v.list_wallets(chain_name.as_deref(), limit?, after.as_deref()).await },
            |env, rows| unsafe { rows.to_js(env).map_err(to_napi) },
        )
    }

    /// Audit rows, oldest first.
    #[napi(catch_unwind, ts_return_type = "Promise<Array<NativeAuditRecord>>")]
    pub fn audit_log(
        &self,
        env: Env,
        address: Option<String>,
        after_seq: Option<f64>,
        limit: Option<f64>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        let after_seq = whole_arg(after_seq, "afterSeq").map(|s| s.map(|n| n as i64));
        let limit = limit_arg(limit);
        spawn_settled(
            env.raw(),
            async move {
                let rows = v.audit_log(address.as_deref(), after_seq?, limit?).await?;
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
            |env, rows| unsafe { rows.to_js(env).map_err(to_napi) },
        )
    }

    /// Verifies the audit log (hash links, row MACs, the authenticated head) and, given the
    /// parts of a checkpoint, that the log still extends it.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeChainCheck>")]
    pub fn verify_audit_chain(
        &self,
        env: Env,
        since_environment: Option<String>,
        since_seq: Option<f64>,
        since_hash: Option<String>,
        since_mac: Option<String>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        let since = checkpoint_arg(since_environment, since_seq, since_hash, since_mac);
        spawn_settled(
            env.raw(),
            async move {
                let c = v.verify_audit_chain(since?.as_ref()).await?;
                Ok(NativeChainCheck {
                    rows: c.rows as i64,
                    broken_at: c.broken_at,
                    reason: c.reason,
                    acknowledged: c.acknowledged,
                })
            },
            |env, c| unsafe { c.to_js(env).map_err(to_napi) },
        )
    }

    /// Records an operator's acknowledgement of a broken audit log (a cut tail, a deleted or
    /// forged head) in an audited row, and resumes writing from it; resolves to its seq.
    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn acknowledge_audit_break(
        &self,
        env: Env,
        reason: String,
        actor: Option<String>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move { v.acknowledge_audit_break(&reason, actor.as_deref()).await },
            |env, n| unsafe { i64::to_napi_value(env, n) },
        )
    }

    /// The explicit, audited step that authenticates rows written before rows were
    /// authenticated (a database upgraded from schema 1).
    #[napi(catch_unwind, ts_return_type = "Promise<NativeAuthenticated>")]
    pub fn authenticate_existing_rows(
        &self,
        env: Env,
        force: bool,
        actor: Option<String>,
    ) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move {
                let (authenticated, refused) = v.authenticate_existing_rows(force, actor.as_deref()).await?;
                Ok(NativeAuthenticated { authenticated: authenticated as i64, refused: refused as i64 })
            },
            |env, c| unsafe { c.to_js(env).map_err(to_napi) },
        )
    }

    /// Reclaims the space deleted and replaced rows left, and says what that promises.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeCompacted>")]
    pub fn compact(&self, env: Env, actor: Option<String>) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move {
                let c = v.compact(actor.as_deref()).await?;
                Ok(NativeCompacted {
                    bytes_before: c.bytes_before as i64,
                    bytes_after: c.bytes_after as i64,
                    promise: c.promise.to_string(),
                })
            },
            |env, c| unsafe { c.to_js(env).map_err(to_napi) },
        )
    }

    /// The environment's wallets per chain, the backend and its schema version (nothing decrypted).
    #[napi(catch_unwind, ts_return_type = "Promise<NativeSummary>")]
    pub fn summary(&self, env: Env) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move {
                let s = v.summary().await?;
                Ok(NativeSummary {
                    backend: s.backend.to_string(),
                    schema_version: s.schema_version,
                    wallets_by_chain: s
                        .wallets_by_chain
                        .into_iter()
                        .map(|(chain_name, n)| NativeChainCount { chain_name, wallets: n as i64 })
                        .collect(),
                    cache: s.cache.map(|c| NativeCacheSettings {
                        max_entries: c.max_entries as i64,
                        max_age_ms: c.max_age.as_millis() as i64,
                        max_uses: c.max_uses as i64,
                    }),
                })
            },
            |env, s| unsafe { s.to_js(env).map_err(to_napi) },
        )
    }

    /// This environment's authenticated audit head, to keep outside the database.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeCheckpoint>")]
    pub fn checkpoint(&self, env: Env) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        spawn_settled(
            env.raw(),
            async move {
                let h = v.checkpoint().await?;
                Ok(NativeCheckpoint {
                    environment: h.environment,
                    seq: h.seq,
                    hash: hex_string(&h.hash),
                    mac: hex_string(&h.mac),
                })
            },
            |env, c| unsafe { c.to_js(env).map_err(to_napi) },
        )
    }

    /// Counters: KMS calls, data-key cache, errors by code, hydrate latency percentiles.
    #[napi(catch_unwind, ts_return_type = "NativeStats")]
    pub fn stats(&self, env: Env) -> napi::Result<Built> {
        let s = self.inner.stats();
        let stats = NativeStats {
            kms_calls: NativeKmsCalls {
                generate_data_key: s.kms_generate as i64,
                decrypt: s.kms_decrypt as i64,
                re_encrypt: s.kms_reencrypt as i64,
                encrypt: s.kms_encrypt as i64,
                describe_key: s.kms_describe as i64,
                attempts: s.kms_attempts as i64,
            },
            cache_hits: s.cache_hits as i64,
            cache_misses: s.cache_misses as i64,
            cache_evictions: s.cache_evictions as i64,
            cache_hit_rate: (s.cache_hits + s.cache_misses > 0)
                .then(|| s.cache_hits as f64 / (s.cache_hits + s.cache_misses) as f64),
            errors: s.errors.into_iter().map(|(k, v)| (k.to_string(), v as i64)).collect(),
            hydrations: s.hydrations as i64,
            hydrate_p50_ms: s.hydrate_p50_ms,
            hydrate_p95_ms: s.hydrate_p95_ms,
            hydrate_p99_ms: s.hydrate_p99_ms,
            on_audit: NativeOnAuditStats {
                queued: s.audit_queued as i64,
                dropped: s.audit_dropped as i64,
                delivered: self
                    .sink
                    .as_ref()
                    .map_or(0, |k| k.delivered.load(std::sync::atomic::Ordering::Relaxed) as i64),
                failed: self.sink.as_ref().map_or(0, |k| k.failed.load(std::sync::atomic::Ordering::Relaxed) as i64),
            },
            memory: NativeMemoryProtection {
                mlock: s.memory.mlock,
                dont_dump: s.memory.dont_dump,
                non_dumpable: s.memory.non_dumpable,
                mlock_failures: s.memory.mlock_failures as i64,
                locked_pages: s.memory.locked_pages as i64,
            },
            database: NativeDatabaseStats { tls: s.database_tls },
            runtime: runtime::started_shape().map_or(NativeRuntimeStats { worker_threads: 0, nice: 0 }, |r| {
                NativeRuntimeStats { worker_threads: r.worker_threads as i64, nice: r.nice as i64 }
            }),
        };
        // SAFETY: on the JS thread, in this call's handle scope.
        unsafe { stats.to_js(env.raw()) }.map(Built).map_err(to_napi)
    }

    /// Finishes queued writes and closes the database.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> napi::Result<PromiseValue> {
        let v = self.inner.clone();
        let sink = self.sink.clone();
        let open = self.open.clone();
        spawn_settled(
            env.raw(),
            async move {
                let r = v.close().await;
                if let Some(s) = sink {
                    s.release();
                }
                // Settled either way: a close that failed still ends the handle's use.
                Ok(r)
            },
            move |env, r| unsafe {
                if open.swap(false, Ordering::AcqRel) {
                    settle::vault_closed(env);
                }
                r.map_err(to_napi).and_then(|()| <()>::to_napi_value(env, ()))
            },
        )
    }
}

fn hex_string(b: &[u8]) -> String {
    hex::encode(b)
}

js_object! {
    /// The permission names the core knows, and its default grant.
    #[napi(object)]
    pub struct NativePermissionLists {
        all: Vec<String> => "all",
        defaults: Vec<String> => "defaults",
    }
}

/// The permission lists of the core: the facade's `ALL_PERMISSIONS` and `DEFAULT_PERMISSIONS` are
/// these, so the rule lives in the core only.
#[napi(catch_unwind)]
pub fn native_permissions() -> NativePermissionLists {
    use sharevault_core::permissions::Permissions;
    let names = |p: Permissions| p.names().into_iter().map(str::to_string).collect();
    NativePermissionLists { all: names(Permissions::all()), defaults: names(Permissions::default()) }
}

/// Whether the core takes an environment's name for production (`prod`, `production`, `live`,
/// `prd` as a word of it): `sharevault/testing` refuses such a name, with the core's rule.
#[napi(catch_unwind)]
pub fn looks_like_production(environment: String) -> bool {
    sharevault_core::keyring::looks_like_production(&environment)
}

/// Every error code the core can raise, as the core spells it (a test checks that `ErrorCode`
/// exports exactly these).
#[napi(catch_unwind)]
pub fn native_error_codes() -> Vec<String> {
    sharevault_core::ErrorCode::ALL.iter().map(|c| c.as_str().to_string()).collect()
}
