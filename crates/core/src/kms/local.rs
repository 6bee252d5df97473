//! The local development provider: a 32-byte key held in process memory wraps each data key
//! with AES-256-GCM, bound to the key context. For development and tests; production uses a KMS.

use super::{GeneratedKey, KeyContext, KeyWrapper};
use crate::envelope::{random_nonce, KekRef};
use crate::error::{Error, Result};
use crate::secret::{DataKey, SecretBuf};
use crate::stats::{bump, Stats};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub const PROVIDER: &str = "local";

pub struct LocalKek {
    key: DataKey,
    kek: KekRef,
    stats: Arc<Stats>,
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
    pub fn new(key: DataKey, stats: Arc<Stats>) -> Self {
        let kek = KekRef { provider: PROVIDER.to_string(), key_id: fingerprint(&key), key_version: "1".to_string() };
        LocalKek { key, kek, stats }
    }

    fn wrap(&self, dek: &DataKey, ctx: &KeyContext) -> Result<Vec<u8>> {
        let cipher = Aes256Gcm::new(self.key.expose().into());
        let nonce = random_nonce();
        let aad = ctx.to_bytes();
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: dek.expose(), aad: &aad })
            .map_err(|_| Error::internal("wrapping the data key failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn unwrap(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> Result<DataKey> {
        self.ensure_trusted(kek)?;
        if wrapped.len() != 12 + 32 + 16 {
            return Err(Error::tampered("the wrapped data key is malformed"));
        }
        let cipher = Aes256Gcm::new(self.key.expose().into());
        let aad = ctx.to_bytes();
        let pt = cipher
            .decrypt(Nonce::from_slice(&wrapped[..12]), Payload { msg: &wrapped[12..], aad: &aad })
            .map_err(|_| Error::tampered("the wrapped data key failed authentication"))?;
        let pt = SecretBuf::from_vec(pt);
        DataKey::from_slice(pt.as_slice()).ok_or_else(|| Error::tampered("the data key has the wrong length"))
    }
}

#[async_trait]
impl KeyWrapper for LocalKek {
    fn current_kek(&self) -> &KekRef {
        &self.kek
    }

    async fn generate_data_key(&self, ctx: &KeyContext) -> Result<GeneratedKey> {
        bump(&self.stats.kms_generate);
        let plaintext = DataKey::generate();
        let wrapped = self.wrap(&plaintext, ctx)?;
        Ok(GeneratedKey { plaintext, wrapped, kek: self.kek.clone() })
    }

    async fn unwrap_data_key(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> Result<DataKey> {
        bump(&self.stats.kms_decrypt);
        self.unwrap(kek, wrapped, ctx)
    }

    async fn rewrap_data_key(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> Result<(Vec<u8>, KekRef)> {
        bump(&self.stats.kms_reencrypt);
        let dek = self.unwrap(kek, wrapped, ctx)?;
        Ok((self.wrap(&dek, ctx)?, self.kek.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn ctx(w: &str) -> KeyContext {
        KeyContext { environment: "test".into(), wallet_id: w.into() }
    }

    #[tokio::test]
    async fn a_wrapped_key_unwraps_only_with_the_same_key_and_context() {
        let kek = LocalKek::new(DataKey::generate(), Arc::default());
        let g = kek.generate_data_key(&ctx("w1")).await.unwrap();
        let back = kek.unwrap_data_key(&g.kek, &g.wrapped, &ctx("w1")).await.unwrap();
        assert_eq!(back.expose(), g.plaintext.expose());
        let e = kek.unwrap_data_key(&g.kek, &g.wrapped, &ctx("w2")).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Tampered);
    }

    #[tokio::test]
    async fn a_record_wrapped_by_another_key_is_refused_without_trying() {
        let a = LocalKek::new(DataKey::generate(), Arc::default());
        let b = LocalKek::new(DataKey::generate(), Arc::default());
        let g = a.generate_data_key(&ctx("w1")).await.unwrap();
        let e = b.unwrap_data_key(&g.kek, &g.wrapped, &ctx("w1")).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::KmsDenied);
        // Even if the record claims b's key id, b's key cannot open a's wrapping.
        let forged = b.current_kek().clone();
        let e = b.unwrap_data_key(&forged, &g.wrapped, &ctx("w1")).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Tampered);
    }

    #[tokio::test]
    async fn rewrap_keeps_the_data_key() {
        let kek = LocalKek::new(DataKey::generate(), Arc::default());
        let g = kek.generate_data_key(&ctx("w1")).await.unwrap();
        let (w2, r2) = kek.rewrap_data_key(&g.kek, &g.wrapped, &ctx("w1")).await.unwrap();
        assert_ne!(w2, g.wrapped);
        let back = kek.unwrap_data_key(&r2, &w2, &ctx("w1")).await.unwrap();
        assert_eq!(back.expose(), g.plaintext.expose());
    }

    #[test]
    fn debug_shows_the_fingerprint_not_the_key() {
        let key = DataKey::from_bytes([9u8; 32]);
        let kek = LocalKek::new(key, Arc::default());
        let shown = format!("{kek:?}");
        assert!(!shown.contains("9, 9"));
        assert!(shown.contains(&kek.current_kek().key_id));
    }
}
