//! The sealed record (envelope v1): AES-256-GCM under a per-wallet, per-generation data key, with
//! an AAD recomputed from the row, so a record copied to another wallet, generation or
//! environment fails to open.

use crate::error::{Error, Result};
use crate::secret::{scrubbing_stack, DataKey, SecretBuf};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};

pub const FORMAT_V1: i64 = 1;
pub const ALG_AES_256_GCM: i64 = 1;
const AAD_TAG: &[u8] = b"sharevault/envelope/v1";
const TAG_LEN: usize = 16;

/// Which key-encryption key wrapped a record's data key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KekRef {
    pub provider: String,
    pub key_id: String,
    pub key_version: String,
}

impl KekRef {
    /// The same key, whatever its version: a provider's key id names the key, and its versions
    /// (material ids) are the key's own history.
    pub fn same_key(&self, other: &KekRef) -> bool {
        self.provider == other.provider && self.key_id == other.key_id
    }
}

/// Everything stored for one wallet generation's shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    pub format: i64,
    pub alg: i64,
    pub kek: KekRef,
    pub wrapped_dek: Vec<u8>,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    /// When the data key was wrapped under `kek` (ms since the epoch): set by every seal and
    /// every re-wrap. `None` on a record from before schema 4 (its wrap time was not recorded).
    pub wrapped_at: Option<i64>,
    /// When the ciphertext (and its data key) was made: set by every seal, kept by a re-wrap.
    /// `None` on a record from before schema 4.
    pub sealed_at: Option<i64>,
}

/// The facts of a row a sealed record is bound to. Not stored in the record: recomputed.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub environment: &'a str,
    pub wallet_id: &'a str,
    pub address_key: &'a str,
    pub chain_name: &'a str,
    pub generation: i64,
}

impl Binding<'_> {
    /// Length-prefixed fields, so no two different bindings can produce the same bytes.
    pub fn aad(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        for part in [
            AAD_TAG,
            self.environment.as_bytes(),
            self.wallet_id.as_bytes(),
            self.address_key.as_bytes(),
            self.chain_name.as_bytes(),
        ] {
            put_field(&mut out, part);
        }
        out.extend_from_slice(&self.generation.to_be_bytes());
        out
    }
}

/// Appends `part` with its length (u32, big-endian) in front: the framing of every byte string a
/// key or MAC is bound to (record AAD, key context, integrity MACs), so no two different lists of
/// fields encode to the same bytes.
pub(crate) fn put_field(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u32).to_be_bytes());
    out.extend_from_slice(part);
}

/// A fresh 96-bit nonce from the OS CSPRNG.
pub fn random_nonce() -> [u8; 12] {
    use aes_gcm::aead::rand_core::RngCore;
    let mut n = [0u8; 12];
    aes_gcm::aead::OsRng.fill_bytes(&mut n);
    n
}

/// Encrypts `plaintext` under a fresh nonce and returns `(nonce, ciphertext + tag)`. The working
/// copy is a [`SecretBuf`] with room for the tag, so encrypting never leaves an unwiped copy.
pub fn seal(dek: &DataKey, binding: &Binding<'_>, plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    seal_with(dek, &binding.aad(), plaintext)
}

/// [`seal`] under an AAD the caller builds (for blobs other than stored records, whose AAD
/// starts with a tag of their own so that neither can pass for the other).
pub fn seal_with(dek: &DataKey, aad: &[u8], plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    scrubbing_stack(|| seal_in(dek, aad, plaintext))
}

fn seal_in(dek: &DataKey, aad: &[u8], plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let cipher = Aes256Gcm::new(dek.expose().into());
    let nonce = random_nonce();
    let mut plaintext_copy = SecretBuf::with_capacity(plaintext.len() + TAG_LEN);
    plaintext_copy.extend_from_slice(plaintext);
    let mut plaintext = plaintext_copy;
    cipher
        .encrypt_in_place(Nonce::from_slice(&nonce), aad, plaintext.as_mut_vec())
        .map_err(|_| Error::internal("encryption failed"))?;
    let ciphertext = std::mem::take(plaintext.as_mut_vec());
    Ok((nonce.to_vec(), ciphertext))
}

/// Decrypts a record's ciphertext. Any change to the ciphertext, nonce, or any bound fact is
/// `ERR_TAMPERED`; no partial plaintext is ever returned.
pub fn open(dek: &DataKey, binding: &Binding<'_>, nonce: &[u8], ciphertext: &[u8]) -> Result<SecretBuf> {
    open_with(dek, &binding.aad(), nonce, ciphertext)
}

/// [`open`] under an AAD the caller builds (see [`seal_with`]).
pub fn open_with(dek: &DataKey, aad: &[u8], nonce: &[u8], ciphertext: &[u8]) -> Result<SecretBuf> {
    scrubbing_stack(|| open_in(dek, aad, nonce, ciphertext))
}

fn open_in(dek: &DataKey, aad: &[u8], nonce: &[u8], ciphertext: &[u8]) -> Result<SecretBuf> {
    if nonce.len() != 12 || ciphertext.len() < TAG_LEN {
        return Err(Error::tampered("the sealed shares are malformed"));
    }
    let cipher = Aes256Gcm::new(dek.expose().into());
    let mut buf = SecretBuf::with_capacity(ciphertext.len());
    buf.extend_from_slice(ciphertext);
    cipher
        .decrypt_in_place(Nonce::from_slice(nonce), aad, buf.as_mut_vec())
        .map_err(|_| Error::tampered("the sealed shares failed authentication"))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(gen: i64) -> Binding<'static> {
        Binding { environment: "test", wallet_id: "w1", address_key: "0xab", chain_name: "EVM", generation: gen }
    }

    #[test]
    fn a_sealed_record_opens_with_the_same_key_and_binding() {
        let dek = DataKey::generate();
        let (nonce, ct) = seal(&dek, &binding(1), b"share").unwrap();
        assert!(!ct.windows(5).any(|w| w == b"share"));
        let pt = open(&dek, &binding(1), &nonce, &ct).unwrap();
        assert_eq!(pt.as_slice(), b"share");
    }

    #[test]
    fn any_changed_byte_fails_as_tampered() {
        let dek = DataKey::generate();
        let (nonce, ct) = seal(&dek, &binding(1), b"share").unwrap();
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 1;
            let e = open(&dek, &binding(1), &nonce, &bad).unwrap_err();
            assert_eq!(e.code, crate::error::ErrorCode::Tampered);
        }
        let mut n = nonce.clone();
        n[0] ^= 1;
        assert!(open(&dek, &binding(1), &n, &ct).is_err());
    }

    #[test]
    fn a_record_bound_to_another_wallet_generation_or_environment_fails() {
        let dek = DataKey::generate();
        let (nonce, ct) = seal(&dek, &binding(1), b"share").unwrap();
        assert!(open(&dek, &binding(2), &nonce, &ct).is_err());
        let other_wallet = Binding { wallet_id: "w2", ..binding(1) };
        assert!(open(&dek, &other_wallet, &nonce, &ct).is_err());
        let other_env = Binding { environment: "prod", ..binding(1) };
        assert!(open(&dek, &other_env, &nonce, &ct).is_err());
        let other_addr = Binding { address_key: "0xac", ..binding(1) };
        assert!(open(&dek, &other_addr, &nonce, &ct).is_err());
    }

    #[test]
    fn the_wrong_key_fails() {
        let (nonce, ct) = seal(&DataKey::generate(), &binding(1), b"share").unwrap();
        assert!(open(&DataKey::generate(), &binding(1), &nonce, &ct).is_err());
    }

    #[test]
    fn aad_fields_are_length_prefixed() {
        let a = Binding { wallet_id: "ab", address_key: "c", ..binding(1) }.aad();
        let b = Binding { wallet_id: "a", address_key: "bc", ..binding(1) }.aad();
        assert_ne!(a, b);
    }
}
