//! `kms: { provider: 'local', key }`: a 32-byte key as a Buffer/Uint8Array or base64 (development).

use crate::options::{BytesOrString, Obj};
use sharevault_core::{DataKey, Error, KmsConfig, Result};

pub fn config(o: &Obj) -> Result<KmsConfig> {
    use base64::Engine;
    let bad =
        || Error::invalid(o.path_of("key"), "must be exactly 32 bytes, as a Buffer, a Uint8Array or a base64 string");
    let key = match o.bytes_or_string("key")?.ok_or_else(bad)? {
        BytesOrString::Bytes(b) => DataKey::from_slice(&b),
        BytesOrString::String(s) => {
            let bytes =
                zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(s.trim()).map_err(|_| bad())?);
            DataKey::from_slice(&bytes)
        }
    };
    Ok(KmsConfig::Local(key.ok_or_else(bad)?))
}
