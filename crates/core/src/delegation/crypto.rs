//! The cryptography of Dynamic's delegation webhooks: the HMAC-SHA256 signature over the raw
//! body, and the hybrid encryption of each secret (an AES-256 key wrapped with RSA-OAEP-SHA256
//! under the developer's RSA key; the secret under AES-256-GCM). All of it in Rust: the RSA
//! private key and both plaintexts exist only in zeroizing memory.
//!
//! RSA is AWS-LC's (`aws-lc-rs`), constant-time; the `rsa` crate's decryption has a published
//! timing side channel (RUSTSEC-2023-0071). AES-GCM is RustCrypto's `aes-gcm`, because Dynamic's
//! sample payloads carry 16-byte IVs and AWS-LC's AEAD API takes only 12-byte nonces.

use crate::error::{Error, ErrorCode, Result};
use crate::secret::SecretBuf;
use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{OaepPrivateDecryptingKey, PrivateDecryptingKey, OAEP_SHA256_MGF1SHA256};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The one algorithm a field may name.
pub const ALG: &str = "HYBRID-RSA-AES-256";
/// A secret larger than this is refused (a share is a few KB).
const MAX_FIELD_BYTES: usize = 1024 * 1024;

/// base64url, padded or not (Dynamic's fields are unpadded; a padded one is the same bytes).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The webhook's RSA private key, parsed. Its PKCS#8 bytes were only ever in a [`SecretBuf`];
/// AWS-LC wipes its own copy of the key's numbers when it frees them (`OPENSSL_free` cleanses).
/// `Debug` shows the public key's fingerprint only.
pub struct DelegationKey {
    key: OaepPrivateDecryptingKey,
    fingerprint: String,
    bits: usize,
}

impl std::fmt::Debug for DelegationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DelegationKey {{ bits: {}, fingerprint: {:?} }}", self.bits, self.fingerprint)
    }
}

fn key_refused(why: &str) -> Error {
    Error::invalid("privateKey", why.to_string())
}

/// The DER inside a PEM `PRIVATE KEY` block (PKCS#8), decoded into zeroizing memory. A PEM is
/// parsed here rather than by a PEM crate so that neither the base64 text nor the DER is ever
/// in an allocation that is freed without being wiped.
pub fn pem_to_der(pem: &[u8]) -> Result<SecretBuf> {
    const BEGIN: &[u8] = b"-----BEGIN PRIVATE KEY-----";
    const END: &[u8] = b"-----END PRIVATE KEY-----";
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    if find(pem, b"-----BEGIN RSA PRIVATE KEY-----").is_some() {
        return Err(key_refused(
            "is a PKCS#1 key (BEGIN RSA PRIVATE KEY): convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt`",
        ));
    }
    if find(pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----").is_some() {
        return Err(key_refused("is encrypted: give the unencrypted PKCS#8 key (BEGIN PRIVATE KEY)"));
    }
    let Some(start) = find(pem, BEGIN) else {
        return Err(key_refused("must be a PEM PKCS#8 private key (-----BEGIN PRIVATE KEY-----)"));
    };
    let body = &pem[start + BEGIN.len()..];
    let Some(end) = find(body, END) else {
        return Err(key_refused("has no -----END PRIVATE KEY----- line"));
    };
    let mut text = SecretBuf::with_capacity(end);
    for &b in &body[..end] {
        if !b.is_ascii_whitespace() {
            text.push(b);
        }
    }
    let mut der = SecretBuf::with_capacity(text.len());
    let room = der.append_uninit(text.len());
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(text.as_slice(), room)
        .map_err(|_| key_refused("is not valid PEM (its base64 does not decode)"))?;
    der.truncate(n);
    Ok(der)
}

impl DelegationKey {
    /// Parses a PKCS#8 RSA private key (2048 to 8192 bits).
    pub fn from_pkcs8(der: &SecretBuf) -> Result<DelegationKey> {
        let key = PrivateDecryptingKey::from_pkcs8(der.as_slice())
            .map_err(|_| key_refused("is not an RSA private key of 2048 to 8192 bits in PKCS#8"))?;
        let bits = key.key_size_bits();
        let spki = key.public_key().as_der().map_err(|_| Error::internal("encoding the delegation public key"))?;
        let fingerprint = hex::encode(Sha256::digest(spki.as_ref()));
        let key = OaepPrivateDecryptingKey::new(key).map_err(|_| key_refused("cannot be used for RSA-OAEP"))?;
        Ok(DelegationKey { key, fingerprint, bits })
    }

    /// SHA-256 of the public key's SubjectPublicKeyInfo DER, in hex: what an operator compares
    /// with the key registered at Dynamic (`openssl pkey -pubout -outform DER | sha256sum`).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The AES-256 key inside `ek`.
    fn unwrap_aes_key(&self, ek: &[u8], path: &str) -> Result<Zeroizing<[u8; 32]>> {
        let bad = || Error::invalid(format!("{path}.ek"), "does not decrypt with the delegation key");
        if ek.len() != self.key.key_size_bytes() {
            return Err(bad());
        }
        let mut out = Zeroizing::new(vec![0u8; self.key.min_output_size()]);
        let plain = self.key.decrypt(&OAEP_SHA256_MGF1SHA256, ek, &mut out, None).map_err(|_| bad())?;
        let key: [u8; 32] = (&*plain).try_into().map_err(|_| bad())?;
        Ok(Zeroizing::new(key))
    }
}

/// Checks `header` (`x-dynamic-signature-256`: the hex HMAC-SHA256 of the raw body under the
/// webhook secret, bare or as `sha256=<hex>`) in constant time. Refused with
/// `ERR_WEBHOOK_SIGNATURE`; the message never echoes the header.
pub fn verify_signature(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<()> {
    let refused = |why: &str| Error::new(ErrorCode::BadSignature, format!("the webhook signature {why}"));
    if secret.is_empty() {
        return Err(Error::invalid("secret", "must be the webhook's non-empty secret"));
    }
    let Some(header) = header.map(str::trim) else { return Err(refused("header is missing")) };
    let hex_sig = match header.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("sha256=") => &header[7..],
        _ => header,
    };
    let mut sig = [0u8; 32];
    if hex_sig.len() != 64 || hex::decode_to_slice(hex_sig, &mut sig).is_err() {
        return Err(refused("is not a hex HMAC-SHA256 (64 hex digits)"));
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(|_| Error::internal("keying the HMAC"))?;
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| refused("does not match the body"))
}

fn field_bytes(obj: &serde_json::Map<String, Value>, name: &str, path: &str) -> Result<Vec<u8>> {
    let p = || format!("{path}.{name}");
    let Some(Value::String(s)) = obj.get(name) else {
        return Err(Error::invalid(p(), "must be a base64url string"));
    };
    if s.len() > MAX_FIELD_BYTES * 4 / 3 + 4 {
        return Err(Error::invalid(p(), "is too large"));
    }
    B64URL.decode(s).map_err(|_| Error::invalid(p(), "is not valid base64url"))
}

/// Decrypts one `{ alg, iv, ct, tag, ek, kid? }` field into zeroizing memory. Every failure is
/// `ERR_INVALID_INPUT` at `path`: a field that does not decrypt is refused, never guessed at.
pub fn open_field(key: &DelegationKey, field: Option<&Value>, path: &str) -> Result<SecretBuf> {
    let Some(Value::Object(obj)) = field else {
        return Err(Error::invalid(path, "must be an encrypted object { alg, iv, ct, tag, ek }"));
    };
    match obj.get("alg") {
        Some(Value::String(a)) if a == ALG => {}
        _ => return Err(Error::invalid(format!("{path}.alg"), format!("must be {ALG}"))),
    }
    let iv = field_bytes(obj, "iv", path)?;
    let tag = field_bytes(obj, "tag", path)?;
    let ek = field_bytes(obj, "ek", path)?;
    let ct = field_bytes(obj, "ct", path)?;
    if tag.len() != 16 {
        return Err(Error::invalid(format!("{path}.tag"), "must be 16 bytes"));
    }
    if ct.len() > MAX_FIELD_BYTES {
        return Err(Error::invalid(format!("{path}.ct"), "is larger than 1 MiB"));
    }
    let aes_key = key.unwrap_aes_key(&ek, path)?;
    let mut out = SecretBuf::with_capacity(ct.len());
    out.append_uninit(ct.len()).copy_from_slice(&ct);
    let tag = GenericArray::from_slice(&tag);
    let key_bytes = GenericArray::from_slice(&aes_key[..]);
    let opened = match iv.len() {
        12 => AesGcm::<Aes256, U12>::new(key_bytes).decrypt_in_place_detached(
            GenericArray::from_slice(&iv),
            b"",
            out.as_mut_vec(),
            tag,
        ),
        16 => AesGcm::<Aes256, U16>::new(key_bytes).decrypt_in_place_detached(
            GenericArray::from_slice(&iv),
            b"",
            out.as_mut_vec(),
            tag,
        ),
        _ => return Err(Error::invalid(format!("{path}.iv"), "must be 12 or 16 bytes")),
    };
    // A failed tag leaves `out` holding what the ciphertext decrypted to: wiped on drop.
    opened.map_err(|_| Error::invalid(path, "does not decrypt: its ct, iv or tag was changed"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_accepted_bare_or_prefixed_and_refused_otherwise() {
        let body = br#"{"eventName":"ping"}"#;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let sig = hex::encode(mac.finalize().into_bytes());
        assert!(verify_signature(b"s3cret", body, Some(&sig)).is_ok());
        assert!(verify_signature(b"s3cret", body, Some(&format!("sha256={sig}"))).is_ok());
        assert!(verify_signature(b"s3cret", body, Some(&sig.to_uppercase())).is_ok());
        for bad in [None, Some(""), Some(&sig[..63]), Some("sha256=zz")] {
            assert_eq!(verify_signature(b"s3cret", body, bad).unwrap_err().code, ErrorCode::BadSignature);
        }
        assert_eq!(verify_signature(b"other", body, Some(&sig)).unwrap_err().code, ErrorCode::BadSignature);
        assert_eq!(verify_signature(b"s3cret", b"{}", Some(&sig)).unwrap_err().code, ErrorCode::BadSignature);
    }

    /// A field as Dynamic makes it, with AWS-LC's public-key half and RustCrypto's AES-GCM.
    fn encrypt(key: &PrivateDecryptingKey, plaintext: &[u8], iv_len: usize) -> Value {
        use aes_gcm::aead::rand_core::RngCore;
        use aws_lc_rs::rsa::OaepPublicEncryptingKey;
        let mut aes = [0u8; 32];
        let mut iv = vec![0u8; iv_len];
        aes_gcm::aead::OsRng.fill_bytes(&mut aes);
        aes_gcm::aead::OsRng.fill_bytes(&mut iv);
        let mut ct = plaintext.to_vec();
        let tag = match iv_len {
            12 => AesGcm::<Aes256, U12>::new(GenericArray::from_slice(&aes))
                .encrypt_in_place_detached(GenericArray::from_slice(&iv), b"", &mut ct)
                .unwrap(),
            _ => AesGcm::<Aes256, U16>::new(GenericArray::from_slice(&aes))
                .encrypt_in_place_detached(GenericArray::from_slice(&iv), b"", &mut ct)
                .unwrap(),
        };
        let public = OaepPublicEncryptingKey::new(key.public_key()).unwrap();
        let mut ek = vec![0u8; public.ciphertext_size()];
        let ek = public.encrypt(&OAEP_SHA256_MGF1SHA256, &aes, &mut ek, None).unwrap().to_vec();
        serde_json::json!({ "alg": ALG, "iv": B64URL.encode(&iv), "ct": B64URL.encode(&ct), "tag": B64URL.encode(tag), "ek": B64URL.encode(&ek) })
    }

    #[test]
    fn a_field_opens_with_its_key_and_any_change_to_it_is_refused_at_its_path() {
        let private = PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = SecretBuf::from_vec(private.as_der().unwrap().as_ref().to_vec());
        let key = DelegationKey::from_pkcs8(&der).unwrap();
        assert_eq!(key.bits(), 2048);
        assert!(!format!("{key:?}").contains(&hex::encode(&der.as_slice()[..16])));
        for iv_len in [12, 16] {
            let field = encrypt(&private, b"the secret", iv_len);
            assert_eq!(open_field(&key, Some(&field), "f").unwrap().as_slice(), b"the secret");
            for (name, path) in [("ek", "f.ek"), ("iv", "f"), ("ct", "f"), ("tag", "f")] {
                let mut bad = field.clone();
                let mut bytes = B64URL.decode(bad[name].as_str().unwrap()).unwrap();
                bytes[0] ^= 1;
                bad[name] = Value::String(B64URL.encode(&bytes));
                let e = open_field(&key, Some(&bad), "f").unwrap_err();
                assert_eq!((e.code, e.path.as_deref()), (ErrorCode::InvalidInput, Some(path)), "{name}");
            }
            let mut other = field.clone();
            other["alg"] = Value::String("RSA-OAEP".into());
            assert_eq!(open_field(&key, Some(&other), "f").unwrap_err().path.as_deref(), Some("f.alg"));
        }
        // Encrypted to another key: refused at `ek`, never opened.
        let stranger = PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let field = encrypt(&stranger, b"the secret", 16);
        assert_eq!(open_field(&key, Some(&field), "f").unwrap_err().path.as_deref(), Some("f.ek"));
    }

    #[test]
    fn a_pem_that_is_not_pkcs8_is_refused_with_what_to_do() {
        let e = pem_to_der(b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n").unwrap_err();
        assert!(e.message.contains("pkcs8"), "{}", e.message);
        assert_eq!(pem_to_der(b"hello").unwrap_err().path.as_deref(), Some("privateKey"));
    }
}
