//! The unpersisted-state blob. After `refreshWalletAccountShares` or `reshare` the old shares no
//! longer sign; if the new ones cannot be written (the database is down), they must not be lost
//! and must not be handed to the caller in plaintext. The vault seals them, with the backup info
//! and scheme that go with them, under a fresh data key from its own KMS (the same key context
//! as the wallet's records), into this blob, which the caller keeps and later passes to
//! `recover_sealed`. The blob names the generation it replaces, so a stale one (the wallet has
//! changed since) is refused instead of rolling the wallet back.
//!
//! The same holds for a new wallet whose store failed after `createWalletAccount` returned: base
//! generation 0, and the payload is the whole metadata instead of the backup info.
//!
//! Layout (all integers big-endian): `SVUS`, version 1, then length-prefixed (u32) fields:
//! environment, wallet id, address, chain, base generation (8 bytes), payload JSON (the backup
//! info; for base generation 0 the whole metadata), scheme (empty: unchanged), KEK provider, key
//! id, key version, wrapped data key, nonce, ciphertext.
//! Every field but the last three is in the AAD (with its own tag, so a blob can never pass for a
//! stored record or the reverse); the shares are the ciphertext.
//!
//! Version 2 has the same layout, and its ciphertext is the SDK's result exactly as it came back
//! (V8's serialization, opaque to the core) when it holds something the share encoding refuses (a
//! `Date`, a `Map`…): sealed losslessly rather than lost, and read back only by an operator
//! (`Vault::open_sealed`), since the vault cannot store it as it is. Its AAD tag differs, so
//! neither kind can pass for the other.
//!
//! Versions 3 (shares) and 4 (raw) have the same layout again, and say that the data key is the
//! vault's spare one (`Vault::permit_operation` keeps it before an SDK call it cannot undo),
//! wrapped under the environment's spare key context instead of the wallet's: what a seal uses
//! when the KMS cannot give a fresh key (an outage after the SDK call). The binding to the wallet
//! is the AAD's, as for every version; their AAD tags differ from the others'.

use crate::envelope::KekRef;
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"SVUS";
const VERSION: u8 = 1;
const RAW_VERSION: u8 = 2;
const SPARE_VERSION: u8 = 3;
const SPARE_RAW_VERSION: u8 = 4;
const AAD_TAG: &[u8] = b"sharevault/unpersisted/v1";
const RAW_AAD_TAG: &[u8] = b"sharevault/unpersisted-raw/v1";
const SPARE_AAD_TAG: &[u8] = b"sharevault/unpersisted-spare/v1";
const SPARE_RAW_AAD_TAG: &[u8] = b"sharevault/unpersisted-spare-raw/v1";
/// Larger than any real state (shares of several KB each, backup info): refuses garbage early.
const MAX_BLOB: usize = 4 << 20;

/// A sealed, unpersisted state (everything but the plaintext shares).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpersisted {
    pub environment: String,
    pub wallet_id: String,
    pub address: String,
    pub chain_name: String,
    /// The generation these shares replace: recovery applies only while it is still current.
    /// 0: a new wallet, not stored yet.
    pub base_generation: i64,
    /// The new backup info; for base generation 0, the wallet's whole metadata.
    pub payload_json: String,
    pub scheme: Option<String>,
    pub kek: KekRef,
    pub wrapped_dek: Vec<u8>,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    /// The ciphertext is the SDK's result as it came (versions 2 and 4), not the share encoding.
    pub raw: bool,
    /// The data key is the vault's spare one, under the spare key context (versions 3 and 4).
    pub spare: bool,
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

impl Unpersisted {
    /// The bound facts, length-prefixed after the blob's own tag: everything in the blob but the
    /// wrapped key, nonce and ciphertext (the key reference too, so no byte of the blob can
    /// change unnoticed).
    pub fn aad(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.payload_json.len());
        let tag = match (self.raw, self.spare) {
            (false, false) => AAD_TAG,
            (true, false) => RAW_AAD_TAG,
            (false, true) => SPARE_AAD_TAG,
            (true, true) => SPARE_RAW_AAD_TAG,
        };
        put(&mut out, tag);
        self.put_facts(&mut out);
        put(&mut out, self.kek.provider.as_bytes());
        put(&mut out, self.kek.key_id.as_bytes());
        put(&mut out, self.kek.key_version.as_bytes());
        out
    }

    fn put_facts(&self, out: &mut Vec<u8>) {
        put(out, self.environment.as_bytes());
        put(out, self.wallet_id.as_bytes());
        put(out, self.address.as_bytes());
        put(out, self.chain_name.as_bytes());
        put(out, &self.base_generation.to_be_bytes());
        put(out, self.payload_json.as_bytes());
        put(out, self.scheme.as_deref().unwrap_or("").as_bytes());
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.payload_json.len() + self.ciphertext.len());
        out.extend_from_slice(MAGIC);
        out.push(match (self.raw, self.spare) {
            (false, false) => VERSION,
            (true, false) => RAW_VERSION,
            (false, true) => SPARE_VERSION,
            (true, true) => SPARE_RAW_VERSION,
        });
        self.put_facts(&mut out);
        put(&mut out, self.kek.provider.as_bytes());
        put(&mut out, self.kek.key_id.as_bytes());
        put(&mut out, self.kek.key_version.as_bytes());
        put(&mut out, &self.wrapped_dek);
        put(&mut out, &self.nonce);
        put(&mut out, &self.ciphertext);
        out
    }

    /// Parses a blob strictly: anything that is not one whole blob of this version is
    /// `ERR_INVALID_INPUT` (path `sealed`); whether it is authentic is for the decryption to say.
    pub fn decode(bytes: &[u8]) -> Result<Unpersisted> {
        let bad =
            || Error::invalid("sealed", "is not a sealed state (the value an ERR_UNPERSISTED_SHARES error carries)");
        if bytes.len() > MAX_BLOB
            || bytes.len() < 5
            || &bytes[..4] != MAGIC
            || ![VERSION, RAW_VERSION, SPARE_VERSION, SPARE_RAW_VERSION].contains(&bytes[4])
        {
            return Err(bad());
        }
        let raw = [RAW_VERSION, SPARE_RAW_VERSION].contains(&bytes[4]);
        let spare = [SPARE_VERSION, SPARE_RAW_VERSION].contains(&bytes[4]);
        let mut rest = &bytes[5..];
        let mut field = || -> Result<Vec<u8>> {
            if rest.len() < 4 {
                return Err(bad());
            }
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if rest.len() - 4 < len {
                return Err(bad());
            }
            let v = rest[4..4 + len].to_vec();
            rest = &rest[4 + len..];
            Ok(v)
        };
        let text = |v: Vec<u8>| String::from_utf8(v).map_err(|_| bad());
        let environment = text(field()?)?;
        let wallet_id = text(field()?)?;
        let address = text(field()?)?;
        let chain_name = text(field()?)?;
        let generation: [u8; 8] = field()?.try_into().map_err(|_| bad())?;
        let payload_json = text(field()?)?;
        let scheme = text(field()?)?;
        let kek = KekRef { provider: text(field()?)?, key_id: text(field()?)?, key_version: text(field()?)? };
        let wrapped_dek = field()?;
        let nonce = field()?;
        let ciphertext = field()?;
        if !rest.is_empty() {
            return Err(bad());
        }
        Ok(Unpersisted {
            environment,
            wallet_id,
            address,
            chain_name,
            base_generation: i64::from_be_bytes(generation),
            payload_json,
            scheme: (!scheme.is_empty()).then_some(scheme),
            kek,
            wrapped_dek,
            nonce,
            ciphertext,
            raw,
            spare,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Unpersisted {
        Unpersisted {
            environment: "prod".into(),
            wallet_id: "w-1".into(),
            address: "0xAbC".into(),
            chain_name: "EVM".into(),
            base_generation: 3,
            payload_json: r#"{"passwordEncrypted":false,"backups":{}}"#.into(),
            scheme: Some("TWO_OF_THREE".into()),
            kek: KekRef { provider: "local".into(), key_id: "k".into(), key_version: "1".into() },
            wrapped_dek: vec![1; 60],
            nonce: vec![2; 12],
            ciphertext: vec![3; 100],
            raw: false,
            spare: false,
        }
    }

    #[test]
    fn a_blob_decodes_to_what_was_encoded() {
        let s = sample();
        assert_eq!(Unpersisted::decode(&s.encode()).unwrap(), s);
        let none = Unpersisted { scheme: None, ..sample() };
        assert_eq!(Unpersisted::decode(&none.encode()).unwrap(), none);
        let raw = Unpersisted { raw: true, ..sample() };
        assert_eq!(Unpersisted::decode(&raw.encode()).unwrap(), raw);
        for raw in [false, true] {
            let spare = Unpersisted { raw, spare: true, ..sample() };
            assert_eq!(Unpersisted::decode(&spare.encode()).unwrap(), spare);
        }
    }

    #[test]
    fn anything_but_one_whole_blob_is_invalid_input() {
        let blob = sample().encode();
        for cut in 0..blob.len() {
            let e = Unpersisted::decode(&blob[..cut]).unwrap_err();
            assert_eq!(e.code, crate::error::ErrorCode::InvalidInput, "cut at {cut}");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(Unpersisted::decode(&longer).is_err());
        let mut other_version = blob.clone();
        other_version[4] = 5;
        assert!(Unpersisted::decode(&other_version).is_err());
    }

    #[test]
    fn every_bound_fact_changes_the_aad() {
        let base = sample().aad();
        let variants = [
            Unpersisted { environment: "dev".into(), ..sample() },
            Unpersisted { wallet_id: "w-2".into(), ..sample() },
            Unpersisted { address: "0xabc".into(), ..sample() },
            Unpersisted { chain_name: "SVM".into(), ..sample() },
            Unpersisted { base_generation: 4, ..sample() },
            Unpersisted { payload_json: "{}".into(), ..sample() },
            Unpersisted { scheme: None, ..sample() },
            Unpersisted { kek: KekRef { key_version: "2".into(), ..sample().kek }, ..sample() },
            Unpersisted { raw: true, ..sample() },
            Unpersisted { spare: true, ..sample() },
            Unpersisted { raw: true, spare: true, ..sample() },
        ];
        for v in variants {
            assert_ne!(v.aad(), base, "{v:?}");
        }
    }
}
