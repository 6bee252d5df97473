//! The local development provider: a 32-byte key held in process memory wraps each data key
//! with AES-256-GCM, bound to the key context. For development and tests; production uses a KMS.

use super::{GeneratedKey, KeyContext, KeyProvider, ProviderError, ProviderResult};
use crate::envelope::{random_nonce, KekRef};
use crate::secret::{scrubbing_stack, DataKey, SecretBuf};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::sync::{PoisonError, RwLock};

pub const PROVIDER: &str = "local";

pub struct LocalKek {
    /// `None` once the vault is closed: the key is zeroized then, not when the handle is freed.
    key: RwLock<Option<DataKey>>,
    kek: KekRef,
}

impl std::fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalKek {{ key_id: {} }}", self.kek.key_id)
    }
}

/// A domain-separated fingerprint of the key: names it in records without revealing it.
pub fn fingerprint(key: &DataKey) -> String {
    let mut h = Sha256::new();
    h.update(b"sharevault/local-kek-fingerprint/v1");
    h.update(key.expose());
    hex::encode(&h.finalize()[..16])
}

impl LocalKek {
    pub fn new(key: DataKey) -> Self {
        let key_id = scrubbing_stack(|| fingerprint(&key));
        let kek = KekRef { provider: PROVIDER.to_string(), key_id, key_version: "1".to_string() };
        LocalKek { key: RwLock::new(Some(key)), kek }
    }

    fn cipher(&self) -> ProviderResult<Aes256Gcm> {
        let key = self.key.read().unwrap_or_else(PoisonError::into_inner);
        match key.as_ref() {
            Some(k) => Ok(Aes256Gcm::new(k.expose().into())),
            None => Err(ProviderError::Unavailable("the local key was dropped when the vault closed".into())),
        }
    }

    fn wrap(&self, dek: &DataKey, ctx: &KeyContext) -> ProviderResult<Vec<u8>> {
        scrubbing_stack(|| self.wrap_in(dek, ctx))
    }

    fn wrap_in(&self, dek: &DataKey, ctx: &KeyContext) -> ProviderResult<Vec<u8>> {
        let nonce = random_nonce();
        let aad = ctx.to_bytes();
        let ct = self
            .cipher()?
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: dek.expose(), aad: &aad })
            .map_err(|_| ProviderError::Unavailable("wrapping the data key failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn unwrap_raw(&self, wrapped: &[u8], ctx: &KeyContext) -> ProviderResult<DataKey> {
        scrubbing_stack(|| self.unwrap_in(wrapped, ctx))
    }

    fn unwrap_in(&self, wrapped: &[u8], ctx: &KeyContext) -> ProviderResult<DataKey> {
        if wrapped.len() != 12 + 32 + 16 {
            return Err(ProviderError::Rejected("the wrapped data key is malformed".into()));
        }
        let aad = ctx.to_bytes();
        let pt = self
            .cipher()?
            .decrypt(Nonce::from_slice(&wrapped[..12]), Payload { msg: &wrapped[12..], aad: &aad })
            .map_err(|_| ProviderError::Rejected("the wrapped data key failed authentication".into()))?;
        let pt = SecretBuf::from_vec(pt);
        DataKey::from_slice(pt.as_slice())
            .ok_or_else(|| ProviderError::Rejected("the data key has the wrong length".into()))
    }
}

#[async_trait]
impl KeyProvider for LocalKek {
    fn kek(&self) -> &KekRef {
        &self.kek
    }

    async fn generate(&self, ctx: &KeyContext) -> ProviderResult<GeneratedKey> {
        let plaintext = DataKey::generate();
        let wrapped = self.wrap(&plaintext, ctx)?;
        Ok(GeneratedKey { plaintext, wrapped, kek: self.kek.clone() })
    }

    async fn unwrap(&self, _kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> ProviderResult<DataKey> {
        self.unwrap_raw(wrapped, ctx)
    }

    async fn wrap(&self, key: &DataKey, ctx: &KeyContext) -> ProviderResult<(Vec<u8>, KekRef)> {
        Ok((LocalKek::wrap(self, key, ctx)?, self.kek.clone()))
    }

    fn integrity_root(&self) -> Option<DataKey> {
        let key = self.key.read().unwrap_or_else(PoisonError::into_inner);
        key.as_ref().and_then(|k| DataKey::from_slice(k.expose()))
    }

    fn close(&self) {
        // Dropping the key zeroizes it.
        self.key.write().unwrap_or_else(PoisonError::into_inner).take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_fingerprint_not_the_key() {
        let key = DataKey::from_bytes([9u8; 32]);
        let kek = LocalKek::new(key);
        let shown = format!("{kek:?}");
        assert!(!shown.contains("9, 9"));
        assert!(shown.contains(&kek.kek().key_id));
    }

    #[tokio::test]
    async fn after_close_the_key_is_gone_and_nothing_unwraps() {
        let kek = LocalKek::new(DataKey::generate());
        let ctx = KeyContext { environment: "test".into(), wallet_id: "w1".into() };
        let g = kek.generate(&ctx).await.unwrap();
        kek.close();
        assert!(matches!(kek.unwrap(&g.kek, &g.wrapped, &ctx).await, Err(ProviderError::Unavailable(_))));
    }
}
