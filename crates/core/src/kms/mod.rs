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

use crate::envelope::KekRef;
use crate::error::{Error, ErrorCode, Result};
use crate::secret::DataKey;
use crate::stats::{bump, Stats};
use async_trait::async_trait;
use cache::{CacheConfig, DekCache};
use std::sync::Arc;

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
    /// The key new data keys are wrapped under (and the only key records may name).
    fn kek(&self) -> &KekRef;

    /// A new AES-256 data key bound to `ctx`.
    async fn generate(&self, ctx: &KeyContext) -> ProviderResult<GeneratedKey>;

    /// Unwraps a data key made for `ctx` under `kek` (already checked to be trusted).
    async fn unwrap(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> ProviderResult<DataKey>;

    /// Re-wraps a data key under the current key (rotation) without exposing it, if the provider
    /// can (AWS `ReEncrypt`), or by unwrapping and wrapping again.
    async fn rewrap(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> ProviderResult<(Vec<u8>, KekRef)>;

    /// Key material for the integrity keys (`integrity`), if the provider holds a key in this
    /// process (the local key: derived from it). `None` (a KMS, whose key never leaves it): the
    /// vault makes a data key once per environment and stores it wrapped.
    fn integrity_root(&self) -> Option<DataKey> {
        None
    }

    /// Drops key material the provider holds in memory (the vault is closing).
    fn close(&self) {}
}

/// The key-wrapping seam the vault uses: a provider, the trust rule, the error mapping, the
/// counters and the data-key cache.
pub struct KeyWrapping {
    provider: Arc<dyn KeyProvider>,
    cache: Option<DekCache>,
    stats: Arc<Stats>,
}

impl KeyWrapping {
    /// `cache: None` turns the data-key cache off (one provider unwrap per hydrate). With a cache,
    /// this must run inside a tokio runtime: expired keys are swept by a timer task.
    pub fn new(provider: Arc<dyn KeyProvider>, cache: Option<CacheConfig>, stats: Arc<Stats>) -> KeyWrapping {
        let cache = cache.map(|c| DekCache::new(c, stats.clone()));
        KeyWrapping { provider, cache, stats }
    }

    pub fn current_kek(&self) -> &KekRef {
        self.provider.kek()
    }

    /// Whether a record naming `kek` may be sent to the provider at all.
    pub fn trusts(&self, kek: &KekRef) -> bool {
        let current = self.provider.kek();
        kek.provider == current.provider && kek.key_id == current.key_id
    }

    /// `ERR_KMS_DENIED` for a record naming a key this vault does not trust.
    pub fn ensure_trusted(&self, kek: &KekRef) -> Result<()> {
        if self.trusts(kek) {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::KmsDenied,
            format!("the record names {} key {}, which this vault does not trust", kek.provider, kek.key_id),
        ))
    }

    /// A fresh data key for `ctx`. It is cached too: a wallet just stored is usually hydrated next.
    pub async fn generate_data_key(&self, ctx: &KeyContext) -> Result<GeneratedKey> {
        bump(&self.stats.kms_generate);
        let g = self.provider.generate(ctx).await?;
        if let Some(cache) = &self.cache {
            cache.insert_fresh(&g.kek, &g.wrapped, ctx, &g.plaintext);
        }
        Ok(g)
    }

    /// Unwraps a record's data key: trust first (a cache can never widen what is accepted), then
    /// the cache, then one provider call shared by every concurrent caller of the same key.
    pub async fn unwrap_data_key(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> Result<DataKey> {
        self.ensure_trusted(kek)?;
        let raw = || async {
            bump(&self.stats.kms_decrypt);
            self.provider.unwrap(kek, wrapped, ctx).await.map_err(Error::from)
        };
        match &self.cache {
            Some(cache) => cache.get_or_unwrap(kek, wrapped, ctx, raw).await,
            None => raw().await,
        }
    }

    /// A fresh data key that bypasses the cache (keys that are not a wallet's: the integrity key).
    pub async fn generate_uncached(&self, ctx: &KeyContext) -> Result<GeneratedKey> {
        bump(&self.stats.kms_generate);
        Ok(self.provider.generate(ctx).await?)
    }

    /// [`KeyWrapping::unwrap_data_key`] without the cache: trust first, then one provider call.
    pub async fn unwrap_uncached(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> Result<DataKey> {
        self.ensure_trusted(kek)?;
        bump(&self.stats.kms_decrypt);
        Ok(self.provider.unwrap(kek, wrapped, ctx).await?)
    }

    /// Re-wraps a data key under the current key (rotation), without touching the sealed shares.
    pub async fn rewrap_data_key(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> Result<(Vec<u8>, KekRef)> {
        self.ensure_trusted(kek)?;
        bump(&self.stats.kms_reencrypt);
        Ok(self.provider.rewrap(kek, wrapped, ctx).await?)
    }

    /// Drops any cached plaintext copy of this data key: its record was deleted or replaced, or
    /// the store that made it did not commit.
    pub fn forget(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) {
        if let Some(cache) = &self.cache {
            cache.forget(kek, wrapped, ctx);
        }
    }

    /// See [`KeyProvider::integrity_root`].
    pub fn integrity_root(&self) -> Option<DataKey> {
        self.provider.integrity_root()
    }

    /// How many data keys the cache holds now.
    pub fn cached_keys(&self) -> usize {
        self.cache.as_ref().map_or(0, DekCache::len)
    }

    /// Zeroizes every cached data key, stops the expiry timer, and lets the provider drop its key
    /// material. Nothing can be unwrapped afterwards.
    pub fn close(&self) {
        if let Some(cache) = &self.cache {
            cache.close();
        }
        self.provider.close();
    }
}

impl Drop for KeyWrapping {
    fn drop(&mut self) {
        if let Some(cache) = &self.cache {
            cache.close();
        }
    }
}
