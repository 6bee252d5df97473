//! Key wrapping. Providers ([`KeyProvider`]: the local key, AWS KMS, …) only wrap and unwrap and
//! say *how* an operation failed ([`ProviderError`]); the seam ([`KeyWrapping`]) owns every rule
//! around them, so every present and future provider behaves the same:
//! - a record naming a key the vault does not trust is refused before any provider call
//!   (`ERR_KMS_DENIED`);
//! - a wrapped key that does not open for this wallet (changed bytes, another wallet's or
//!   environment's context, another key's ciphertext) is `ERR_TAMPERED`, whatever the provider;
//! - a refusal by the provider itself (access denied, disabled key) is `ERR_KMS_DENIED`, an
//!   outage `ERR_KMS_UNAVAILABLE`;
//! - calls are counted for `stats()`, and the data-key cache (with its single flight, expiry by
//!   the clock and zeroization on close) sits in front of the provider.

pub mod aws;
pub mod cache;
pub mod local;
pub mod pkcs11;
pub mod transit;

use crate::envelope::KekRef;
use crate::error::{Error, ErrorCode, Result};
use crate::secret::DataKey;
use crate::stats::{bump, Stats};
use async_trait::async_trait;
use cache::{CacheConfig, DekCache};
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

/// Bounds on a remote provider's retry options (refused outside them, never clamped).
pub const MAX_ATTEMPTS: u32 = 10;
pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// `maxAttempts` and `timeoutMs` of a remote provider, within their bounds.
pub fn check_retries(max_attempts: u32, timeout: std::time::Duration) -> Result<()> {
    if !(1..=MAX_ATTEMPTS).contains(&max_attempts) {
        return Err(Error::invalid("kms.maxAttempts", format!("must be an integer from 1 to {MAX_ATTEMPTS}")));
    }
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(Error::invalid(
            "kms.timeoutMs",
            format!("must be an integer from 1 to {}", MAX_TIMEOUT.as_millis()),
        ));
    }
    Ok(())
}

/// A provider's URL (`path` names its option): https, or plain http on a loopback address only
/// (an emulator or a dev server), the same rule as the database's.
pub fn check_transport(endpoint: &str, path: &'static str) -> Result<()> {
    let bad = |m: &str| Error::invalid(path, m.to_string());
    let url = url::Url::parse(endpoint).map_err(|_| bad("is not a URL"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(a)) => IpAddr::V4(a).is_loopback(),
                Some(url::Host::Ipv6(a)) => IpAddr::V6(a).is_loopback(),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err(bad("plain http is accepted only on a loopback address (an emulator); use https"))
            }
        }
        _ => Err(bad("must be an https:// URL")),
    }
}

/// What a data key is bound to. AWS KMS gets it as the encryption context; the local provider
/// uses it as AES-GCM associated data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyContext {
    pub environment: String,
    pub wallet_id: String,
}

impl KeyContext {
    /// Canonical bytes (length-prefixed) for providers that bind the context as AAD.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        for part in [b"sharevault/dek-context/v1".as_slice(), self.environment.as_bytes(), self.wallet_id.as_bytes()] {
            crate::envelope::put_field(&mut out, part);
        }
        out
    }
}

/// A fresh data key: its plaintext (zeroized on drop) and its wrapped form.
pub struct GeneratedKey {
    pub plaintext: DataKey,
    pub wrapped: Vec<u8>,
    pub kek: KekRef,
}

/// How a provider operation failed. The seam turns each kind into one error code; the message
/// says what happened (never a key byte).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// The wrapped key does not open under this key and context: changed bytes, another
    /// wallet's or environment's context, or a ciphertext of another key.
    Rejected(String),
    /// The provider refused: access denied, a disabled or missing key, bad credentials.
    Denied(String),
    /// The provider could not be reached or did not answer in time.
    Unavailable(String),
    /// The caller's configuration is wrong (`path`, message).
    Invalid(&'static str, String),
}

pub type ProviderResult<T> = std::result::Result<T, ProviderError>;

impl From<ProviderError> for Error {
    fn from(e: ProviderError) -> Error {
        match e {
            ProviderError::Rejected(m) => Error::new(
                ErrorCode::Tampered,
                format!("the wrapped data key does not open for this wallet (changed, or moved from another wallet or environment): {m}"),
            ),
            ProviderError::Denied(m) => Error::new(ErrorCode::KmsDenied, m),
            ProviderError::Unavailable(m) => Error::new(ErrorCode::KmsUnavailable, m),
            ProviderError::Invalid(path, m) => Error::invalid(path, m),
        }
    }
}

/// A key-encryption-key provider: raw key operations, no policy. Implement this (one module) to
/// add a provider; the seam adds trust, error mapping, counting and caching.
#[async_trait]
pub trait KeyProvider: Send + Sync {
    /// The key this provider wraps under, at its current version (new data keys name it).
    fn kek(&self) -> &KekRef;

    /// A new AES-256 data key bound to `ctx`.
    async fn generate(&self, ctx: &KeyContext) -> ProviderResult<GeneratedKey>;

    /// Unwraps a data key made for `ctx` under `kek` (already checked to be trusted and to be
    /// this provider's key, at any of its versions).
    async fn unwrap(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> ProviderResult<DataKey>;

    /// Wraps an existing data key under this key, bound to `ctx` (rotation from another
    /// provider's key, and the integrity key moving to a new primary).
    async fn wrap(&self, key: &DataKey, ctx: &KeyContext) -> ProviderResult<(Vec<u8>, KekRef)>;

    /// Moves a data key wrapped under `from` to this key inside the provider, without the data
    /// key ever leaving it (AWS `ReEncrypt`), where it can; `None` where it cannot (another
    /// provider's key, another region): the seam then unwraps and wraps, in this process.
    async fn reencrypt(
        &self,
        _from: &KekRef,
        _wrapped: &[u8],
        _ctx: &KeyContext,
    ) -> Option<ProviderResult<(Vec<u8>, KekRef)>> {
        None
    }

    /// The provider's own automatic rotation of this key, where it tells it (AWS
    /// `GetKeyRotationStatus`): reported by `keyStatus`, never required.
    async fn rotation_setting(&self) -> ProviderResult<Option<ProviderRotation>> {
        Ok(None)
    }

    /// Key material for the integrity keys (`integrity`), if the provider holds a key in this
    /// process (the local key: derived from it). `None` (a KMS, whose key never leaves it): the
    /// vault makes a data key once per environment and stores it wrapped.
    fn integrity_root(&self) -> Option<DataKey> {
        None
    }

    /// Drops key material the provider holds in memory (the vault is closing).
    fn close(&self) {}
}

/// What a provider says about its own automatic rotation of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRotation {
    pub enabled: bool,
    pub period_days: Option<i64>,
    pub next_rotation_ms: Option<i64>,
    /// The oldest key version the provider still decrypts with (Transit's
    /// `min_decryption_version`): records below it are refused until rotated.
    pub min_decryption_version: Option<String>,
}

/// What the environment's keyring says about the keys (see `keyring`): the seam refuses a
/// record naming a key the keyring does not hold, or holds as retired. Until the keyring is
/// read (at open, to unwrap the integrity key that authenticates it), every configured key is
/// usable.
#[derive(Debug, Clone, Default)]
pub struct Trusted {
    /// Keys the environment may read records of: primary and decrypt-only.
    pub usable: Vec<KekRef>,
    /// Keys no record may be read under any more.
    pub retired: Vec<KekRef>,
}

/// The key-wrapping seam the vault uses: the configured providers (the primary, which wraps every
/// new data key, and earlier keys named to unwrap during a rotation), the trust rule, the error
/// mapping, the counters and the data-key cache.
pub struct KeyWrapping {
    primary: Arc<dyn KeyProvider>,
    previous: Vec<Arc<dyn KeyProvider>>,
    /// `None` until the keyring is read.
    trusted: RwLock<Option<Trusted>>,
    cache: Option<DekCache>,
    stats: Arc<Stats>,
}

impl KeyWrapping {
    /// `cache: None` turns the data-key cache off (one provider unwrap per hydrate). With a cache,
    /// this must run inside a tokio runtime: expired keys are swept by a timer task.
    pub fn new(provider: Arc<dyn KeyProvider>, cache: Option<CacheConfig>, stats: Arc<Stats>) -> KeyWrapping {
        KeyWrapping::with_previous(provider, Vec::new(), cache, stats)
    }

    /// [`KeyWrapping::new`] with earlier keys that may still unwrap (never wrap).
    pub fn with_previous(
        primary: Arc<dyn KeyProvider>,
        previous: Vec<Arc<dyn KeyProvider>>,
        cache: Option<CacheConfig>,
        stats: Arc<Stats>,
    ) -> KeyWrapping {
        let cache = cache.map(|c| DekCache::new(c, stats.clone()));
        KeyWrapping { primary, previous, trusted: RwLock::new(None), cache, stats }
    }

    /// The key every new data key is wrapped under.
    pub fn current_kek(&self) -> &KekRef {
        self.primary.kek()
    }

    /// Every configured key, the primary first.
    pub fn configured(&self) -> Vec<KekRef> {
        std::iter::once(&self.primary).chain(&self.previous).map(|p| p.kek().clone()).collect()
    }

    /// The configured provider that holds `kek` (at any version).
    fn provider_for(&self, kek: &KekRef) -> Option<&Arc<dyn KeyProvider>> {
        std::iter::once(&self.primary).chain(&self.previous).find(|p| p.kek().same_key(kek))
    }

    /// From now on, only what the keyring allows is trusted.
    pub fn set_trusted(&self, trusted: Trusted) {
        *self.trusted.write().unwrap_or_else(PoisonError::into_inner) = Some(trusted);
    }

    /// Whether a record naming `kek` may be sent to a provider at all.
    pub fn trusts(&self, kek: &KekRef) -> bool {
        self.refusal(kek).is_none()
    }

    fn refusal(&self, kek: &KekRef) -> Option<String> {
        if let Some(t) = self.trusted.read().unwrap_or_else(PoisonError::into_inner).as_ref() {
            if t.retired.iter().any(|k| k.same_key(kek)) {
                return Some(format!(
                    "the record is wrapped under {} key {}, which is retired in this environment's keyring: no record \
                     is read under it any more",
                    kek.provider, kek.key_id
                ));
            }
            if !t.usable.iter().any(|k| k.same_key(kek)) {
                return Some(format!(
                    "the record names {} key {}, which this environment's keyring does not hold",
                    kek.provider, kek.key_id
                ));
            }
        }
        if self.provider_for(kek).is_none() {
            return Some(format!(
                "the record names {} key {}, which this vault does not trust: it was not opened with it (name it in \
                 kms.previous while records are still wrapped under it)",
                kek.provider, kek.key_id
            ));
        }
        None
    }

    /// `ERR_KMS_DENIED` for a record naming a key this vault does not trust, or that the
    /// environment's keyring retired.
    pub fn ensure_trusted(&self, kek: &KekRef) -> Result<()> {
        match self.refusal(kek) {
            None => Ok(()),
            Some(why) => Err(Error::new(ErrorCode::KmsDenied, why)),
        }
    }

    fn provider(&self, kek: &KekRef) -> Result<&Arc<dyn KeyProvider>> {
        self.ensure_trusted(kek)?;
        self.provider_for(kek).ok_or_else(|| Error::internal("a trusted key without a provider"))
    }

    /// A fresh data key for `ctx`. It is cached too: a wallet just stored is usually hydrated next.
    pub async fn generate_data_key(&self, ctx: &KeyContext) -> Result<GeneratedKey> {
        bump(&self.stats.kms_generate);
        let g = self.primary.generate(ctx).await?;
        if let Some(cache) = &self.cache {
            cache.insert_fresh(&g.kek, &g.wrapped, ctx, &g.plaintext);
        }
        Ok(g)
    }

    /// Unwraps a record's data key: trust first (a cache can never widen what is accepted), then
    /// the cache, then one provider call shared by every concurrent caller of the same key.
    pub async fn unwrap_data_key(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> Result<DataKey> {
        let provider = self.provider(kek)?;
        let raw = || async {
            bump(&self.stats.kms_decrypt);
            provider.unwrap(kek, wrapped, ctx).await.map_err(Error::from)
        };
        match &self.cache {
            Some(cache) => cache.get_or_unwrap(kek, wrapped, ctx, raw).await,
            None => raw().await,
        }
    }

    /// A fresh data key that bypasses the cache (keys that are not a wallet's: the integrity key).
    pub async fn generate_uncached(&self, ctx: &KeyContext) -> Result<GeneratedKey> {
        bump(&self.stats.kms_generate);
        Ok(self.primary.generate(ctx).await?)
    }

    /// [`KeyWrapping::unwrap_data_key`] without the cache: trust first, then one provider call.
    pub async fn unwrap_uncached(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> Result<DataKey> {
        let provider = self.provider(kek)?;
        bump(&self.stats.kms_decrypt);
        Ok(provider.unwrap(kek, wrapped, ctx).await?)
    }

    /// Wraps `key` (not a wallet's data key: the integrity key's root) under the primary.
    pub async fn wrap_uncached(&self, key: &DataKey, ctx: &KeyContext) -> Result<(Vec<u8>, KekRef)> {
        bump(&self.stats.kms_encrypt);
        Ok(self.primary.wrap(key, ctx).await?)
    }

    /// Re-wraps a data key under the primary (rotation), without touching the sealed shares:
    /// inside the provider where it can (AWS to AWS: `ReEncrypt`, the data key never leaves
    /// KMS), otherwise unwrapped by the key that wrapped it and wrapped by the primary here, the
    /// plaintext zeroized when it is dropped. Never through the cache.
    pub async fn rewrap_data_key(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> Result<(Vec<u8>, KekRef)> {
        let from = self.provider(kek)?;
        if let Some(moved) = self.primary.reencrypt(kek, wrapped, ctx).await {
            bump(&self.stats.kms_reencrypt);
            return Ok(moved?);
        }
        bump(&self.stats.kms_decrypt);
        let key = from.unwrap(kek, wrapped, ctx).await?;
        bump(&self.stats.kms_encrypt);
        Ok(self.primary.wrap(&key, ctx).await?)
    }

    /// What the provider of `kek` says about its own automatic rotation (if it is configured).
    pub async fn rotation_setting(&self, kek: &KekRef) -> Result<Option<ProviderRotation>> {
        match self.provider_for(kek) {
            Some(p) => Ok(p.rotation_setting().await?),
            None => Ok(None),
        }
    }

    /// Drops any cached plaintext copy of this data key: its record was deleted or replaced, or
    /// the store that made it did not commit.
    pub fn forget(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) {
        if let Some(cache) = &self.cache {
            cache.forget(kek, wrapped, ctx);
        }
    }

    /// [`KeyProvider::integrity_root`] of the configured provider holding `kek`.
    pub fn integrity_root(&self, kek: &KekRef) -> Option<DataKey> {
        self.provider_for(kek).and_then(|p| p.integrity_root())
    }

    /// Whether the primary's provider derives integrity keys from a key in this process.
    pub fn primary_derives_integrity(&self) -> bool {
        self.primary.integrity_root().is_some()
    }

    /// The data-key cache's settings (`None`: no cache, one provider unwrap per hydrate).
    pub fn cache_config(&self) -> Option<CacheConfig> {
        self.cache.as_ref().map(DekCache::config)
    }

    /// How many data keys the cache holds now.
    pub fn cached_keys(&self) -> usize {
        self.cache.as_ref().map_or(0, DekCache::len)
    }

    /// Zeroizes every cached data key, stops the expiry timer, and lets every provider drop its
    /// key material. Nothing can be unwrapped afterwards.
    pub fn close(&self) {
        if let Some(cache) = &self.cache {
            cache.close();
        }
        for p in std::iter::once(&self.primary).chain(&self.previous) {
            p.close();
        }
    }
}

impl Drop for KeyWrapping {
    fn drop(&mut self) {
        if let Some(cache) = &self.cache {
            cache.close();
        }
    }
}
