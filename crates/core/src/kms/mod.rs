//! Key wrapping: the trait every key-encryption-key provider implements, and the providers.

pub mod aws;
pub mod cache;
pub mod local;

use crate::envelope::KekRef;
use crate::error::{Error, ErrorCode, Result};
use crate::secret::DataKey;
use async_trait::async_trait;

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
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
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

/// A key-encryption-key provider.
#[async_trait]
pub trait KeyWrapper: Send + Sync {
    /// The key new data keys are wrapped under.
    fn current_kek(&self) -> &KekRef;

    /// Whether a record naming `kek` may be sent to this provider at all. A record naming a key
    /// the vault was not configured with is refused before any unwrap is attempted.
    fn trusts(&self, kek: &KekRef) -> bool {
        let current = self.current_kek();
        kek.provider == current.provider && kek.key_id == current.key_id
    }

    /// `ERR_KMS_DENIED` unless `kek` is trusted.
    fn ensure_trusted(&self, kek: &KekRef) -> Result<()> {
        if self.trusts(kek) {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::KmsDenied,
            format!("the record names {} key {}, which this vault does not trust", kek.provider, kek.key_id),
        ))
    }

    /// A new AES-256 data key bound to `ctx`.
    async fn generate_data_key(&self, ctx: &KeyContext) -> Result<GeneratedKey>;

    /// Unwraps a data key; fails unless `kek` is trusted and `ctx` is the one it was made with.
    async fn unwrap_data_key(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> Result<DataKey>;

    /// Re-wraps a data key under the current key (rotation), without touching the sealed shares.
    async fn rewrap_data_key(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> Result<(Vec<u8>, KekRef)>;

    /// Drops any plaintext copy of this data key held in memory (a cache): called when its record
    /// is deleted or replaced, or when a store that made it did not commit.
    fn forget(&self, _kek: &KekRef, _wrapped: &[u8], _ctx: &KeyContext) {}
}
