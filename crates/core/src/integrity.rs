//! Tamper evidence for what is stored next to the sealed records: the per-environment integrity
//! key, the MAC over a wallet row, the digest of a sealed record that row MAC covers, and the
//! MAC over the audit log's head (which is also what a checkpoint carries).
//!
//! The envelope already refuses a changed sealed record; these MACs extend that to every column
//! the vault relies on (metadata, address, chain, generation, row version, key reference), so
//! someone who can write the database but has no key cannot change a row, or recompute the
//! audit chain's hashes, without it being noticed. The key never touches the database in the
//! clear: it is derived through the key provider (see `tamper::integrity_key`).
//!
//! Every encoding is length-prefixed and starts with its own tag, so no two different inputs,
//! and no two kinds of input, share bytes. The formats are pinned by `tests/vectors.rs`.

use crate::envelope::{put_field as put, SealedRecord};
use crate::secret::{scrubbing_stack, DataKey};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

type HmacSha256 = Hmac<Sha256>;

const KEY_SALT: &[u8] = b"sharevault/integrity-key/v1";
const ROW_TAG: &[u8] = b"sharevault/wallet-row/v1";
const SEALED_TAG: &[u8] = b"sharevault/sealed-digest/v1";
/// A record that carries its wrap and seal times (schema 4 on): a tag of its own, so a row whose
/// times were removed never verifies under the MAC it was written with.
const SEALED_TAG_V2: &[u8] = b"sharevault/sealed-digest/v2";
const HEAD_TAG: &[u8] = b"sharevault/audit-head/v1";
/// An audit row's own MAC: a tag of its own, so no row's MAC can ever pass for a head's (a head
/// copied from any row would otherwise vouch for a log cut after that row).
const AUDIT_ROW_TAG: &[u8] = b"sharevault/audit-row/v1";
const KEYRING_TAG: &[u8] = b"sharevault/keyring-entry/v1";
const EVENT_TAG: &[u8] = b"sharevault/webhook-event/v1";

/// The MAC key of one environment. Zeroized on drop (it is a [`DataKey`]); `Debug` names only
/// the environment.
pub struct IntegrityKey {
    environment: String,
    key: DataKey,
}

impl std::fmt::Debug for IntegrityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IntegrityKey {{ environment: {:?} }}", self.environment)
    }
}

/// Everything a wallet row's MAC covers.
#[derive(Debug, Clone, Copy)]
pub struct RowFacts<'a> {
    pub environment: &'a str,
    pub wallet_id: &'a str,
    pub address: &'a str,
    pub address_key: &'a str,
    pub chain_name: &'a str,
    pub metadata_json: &'a str,
    pub generation: i64,
    pub version: i64,
    /// [`sealed_digest`] of the row's sealed record.
    pub sealed_digest: &'a [u8],
}

impl RowFacts<'_> {
    /// The bytes the row MAC is computed over.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.metadata_json.len());
        for part in [
            ROW_TAG,
            self.environment.as_bytes(),
            self.wallet_id.as_bytes(),
            self.address.as_bytes(),
            self.address_key.as_bytes(),
            self.chain_name.as_bytes(),
            self.metadata_json.as_bytes(),
        ] {
            put(&mut out, part);
        }
        out.extend_from_slice(&self.generation.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        put(&mut out, self.sealed_digest);
        out
    }
}

/// Everything a keyring entry's MAC covers (see `keyring`).
#[derive(Debug, Clone, Copy)]
pub struct KeyringFacts<'a> {
    pub environment: &'a str,
    pub provider: &'a str,
    pub key_id: &'a str,
    pub key_version: &'a str,
    pub state: &'a str,
    pub added_at: i64,
    pub changed_at: i64,
    pub version: i64,
    /// -1 when none is set.
    pub reencrypt_before: i64,
}

impl KeyringFacts<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        for part in [KEYRING_TAG, self.environment.as_bytes(), self.provider.as_bytes(), self.key_id.as_bytes()] {
            put(&mut out, part);
        }
        put(&mut out, self.key_version.as_bytes());
        put(&mut out, self.state.as_bytes());
        for n in [self.added_at, self.changed_at, self.version, self.reencrypt_before] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out
    }
}

/// SHA-256 over every stored field of a sealed record, the key reference and the wrap and seal
/// times included (none of them is part of the envelope's AAD, so this is what authenticates
/// them: a writer without the key cannot make an old wrap look new).
pub fn sealed_digest(s: &SealedRecord) -> Vec<u8> {
    let mut h = Sha256::new();
    let mut buf = Vec::with_capacity(96 + s.wrapped_dek.len() + s.ciphertext.len());
    match (s.wrapped_at, s.sealed_at) {
        (None, None) => put(&mut buf, SEALED_TAG),
        (wrapped, sealed) => {
            put(&mut buf, SEALED_TAG_V2);
            for t in [wrapped, sealed] {
                // -1 for a time not recorded (never written by this build: both are always set).
                buf.extend_from_slice(&t.unwrap_or(-1).to_be_bytes());
            }
        }
    }
    buf.extend_from_slice(&s.format.to_be_bytes());
    buf.extend_from_slice(&s.alg.to_be_bytes());
    for part in [
        s.kek.provider.as_bytes(),
        s.kek.key_id.as_bytes(),
        s.kek.key_version.as_bytes(),
        &s.wrapped_dek,
        &s.nonce,
        &s.ciphertext,
    ] {
        put(&mut buf, part);
    }
    h.update(&buf);
    h.finalize().to_vec()
}

/// The bytes an audit head's MAC is computed over.
pub fn head_bytes(environment: &str, seq: i64, hash: &[u8]) -> Vec<u8> {
    position_bytes(HEAD_TAG, environment, seq, hash)
}

fn event_bytes(environment: &str, event_id: &str, outcome: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + event_id.len() + outcome.len());
    for part in [EVENT_TAG, environment.as_bytes(), event_id.as_bytes(), outcome.as_bytes()] {
        put(&mut out, part);
    }
    out
}

fn position_bytes(tag: &[u8], environment: &str, seq: i64, hash: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    put(&mut out, tag);
    put(&mut out, environment.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    put(&mut out, hash);
    out
}

impl IntegrityKey {
    /// HKDF-SHA-256 of `root` (key material only the key provider can produce) for
    /// `environment`: every environment has its own key.
    pub fn derive(root: &DataKey, environment: &str) -> IntegrityKey {
        // HKDF's state holds key material on the stack: scrubbed after, like a cipher's.
        let key = scrubbing_stack(|| {
            let hk = hkdf::Hkdf::<Sha256>::new(Some(KEY_SALT), root.expose());
            let mut okm = [0u8; 32];
            // 32 bytes is always a valid HKDF-SHA-256 output length.
            let _ = hk.expand(environment.as_bytes(), &mut okm);
            let key = DataKey::from_bytes(okm);
            okm.zeroize();
            key
        });
        IntegrityKey { environment: environment.to_string(), key }
    }

    pub fn environment(&self) -> &str {
        &self.environment
    }

    fn mac(&self, bytes: &[u8]) -> HmacSha256 {
        // HMAC pads a key shorter than its block with zeros: the 32-byte key in a zeroed 64-byte
        // block is the same key, and this constructor cannot fail.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(self.key.expose());
        let mut m = <HmacSha256 as hmac::digest::KeyInit>::new(&block.into());
        block.zeroize();
        m.update(bytes);
        m
    }

    fn tag(&self, bytes: &[u8]) -> Vec<u8> {
        self.mac(bytes).finalize().into_bytes().to_vec()
    }

    /// Constant-time comparison of `tag` with the MAC of `bytes`.
    fn verify(&self, bytes: &[u8], tag: &[u8]) -> bool {
        self.mac(bytes).verify_slice(tag).is_ok()
    }

    /// The MAC of a wallet row.
    pub fn row_tag(&self, facts: &RowFacts<'_>) -> Vec<u8> {
        self.tag(&facts.encode())
    }

    pub fn row_ok(&self, facts: &RowFacts<'_>, tag: &[u8]) -> bool {
        self.verify(&facts.encode(), tag)
    }

    /// The MAC of a keyring entry.
    pub fn keyring_tag(&self, facts: &KeyringFacts<'_>) -> Vec<u8> {
        self.tag(&facts.encode())
    }

    pub fn keyring_ok(&self, facts: &KeyringFacts<'_>, tag: &[u8]) -> bool {
        facts.environment == self.environment && self.verify(&facts.encode(), tag)
    }

    /// The MAC of a handled webhook event's record (its id and the outcome a replay answers), so
    /// a record written by someone without the key never passes for one.
    pub fn event_tag(&self, event_id: &str, outcome: &str) -> Vec<u8> {
        self.tag(&event_bytes(&self.environment, event_id, outcome))
    }

    pub fn event_ok(&self, event_id: &str, outcome: &str, tag: &[u8]) -> bool {
        self.verify(&event_bytes(&self.environment, event_id, outcome), tag)
    }

    /// The MAC of this environment's audit head (sequence number and hash of its last row).
    pub fn head_tag(&self, seq: i64, hash: &[u8]) -> Vec<u8> {
        self.tag(&head_bytes(&self.environment, seq, hash))
    }

    pub fn head_ok(&self, environment: &str, seq: i64, hash: &[u8], tag: &[u8]) -> bool {
        environment == self.environment && self.verify(&head_bytes(environment, seq, hash), tag)
    }

    /// The MAC of one of this environment's audit rows (its sequence number and hash).
    pub fn audit_row_tag(&self, seq: i64, hash: &[u8]) -> Vec<u8> {
        self.tag(&position_bytes(AUDIT_ROW_TAG, &self.environment, seq, hash))
    }

    pub fn audit_row_ok(&self, environment: &str, seq: i64, hash: &[u8], tag: &[u8]) -> bool {
        environment == self.environment && self.verify(&position_bytes(AUDIT_ROW_TAG, environment, seq, hash), tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(env: &str) -> IntegrityKey {
        IntegrityKey::derive(&DataKey::from_bytes([7u8; 32]), env)
    }

    #[test]
    fn each_environment_has_its_own_key() {
        let (a, b) = (key("a"), key("b"));
        assert_ne!(a.head_tag(1, &[0; 32]), b.head_tag(1, &[0; 32]));
        assert!(!b.head_ok("a", 1, &[0; 32], &a.head_tag(1, &[0; 32])));
        assert!(a.head_ok("a", 1, &[0; 32], &a.head_tag(1, &[0; 32])));
    }

    #[test]
    fn the_debug_output_names_no_key_byte() {
        assert_eq!(format!("{:?}", key("prod")), "IntegrityKey { environment: \"prod\" }");
    }
}
