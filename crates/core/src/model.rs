//! Wallet metadata: kept whole as opaque JSON, with the identity fields validated. All SDK
//! knowledge on the Rust side lives here: schemes and share counts, chain rules, address keys.

use crate::error::{Error, Result};
use serde_json::{Map, Value};

/// Metadata larger than this is refused (real metadata is a few KB).
pub const MAX_METADATA_BYTES: usize = 1024 * 1024;
/// The longest id or address accepted (wallet ids, addresses, event ids).
pub const MAX_ID_LEN: usize = 512;

/// The threshold schemes the SDK uses, and how many external server shares each leaves with us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    TwoOfTwo,
    TwoOfThree,
    ThreeOfFive,
}

impl Scheme {
    pub fn parse(s: &str) -> Option<Scheme> {
        match s {
            "TWO_OF_TWO" => Some(Scheme::TwoOfTwo),
            "TWO_OF_THREE" => Some(Scheme::TwoOfThree),
            "THREE_OF_FIVE" => Some(Scheme::ThreeOfFive),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::TwoOfTwo => "TWO_OF_TWO",
            Scheme::TwoOfThree => "TWO_OF_THREE",
            Scheme::ThreeOfFive => "THREE_OF_FIVE",
        }
    }

    /// The reshare paths Dynamic's server accepts (SDK-CONTRACT §4): 2/2→2/2, 2/3→2/3, 3/5→3/5,
    /// 2/2→2/3, 2/2→3/5, 2/3→3/5, 2/3→2/2, 3/5→2/3.
    pub fn can_reshare_to(self, to: Scheme) -> bool {
        use Scheme::*;
        !matches!((self, to), (ThreeOfFive, TwoOfTwo))
    }

    /// `TWO_OF_TWO` → 1, `TWO_OF_THREE` → 2, `THREE_OF_FIVE` → 3.
    pub fn external_share_count(self) -> usize {
        match self {
            Scheme::TwoOfTwo => 1,
            Scheme::TwoOfThree => 2,
            Scheme::ThreeOfFive => 3,
        }
    }
}

/// The validated identity of a wallet, read from its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub wallet_id: String,
    pub account_address: String,
    pub address_key: String,
    pub chain_name: String,
    pub scheme: Scheme,
}

/// The lookup key of an address: EVM addresses (`0x` + 40 hex digits) are case-insensitive and
/// folded to lower case; every other chain's addresses are case-sensitive and kept exactly.
pub fn address_key(address: &str) -> String {
    let b = address.as_bytes();
    if b.len() == 42
        && (address.starts_with("0x") || address.starts_with("0X"))
        && b[2..].iter().all(u8::is_ascii_hexdigit)
    {
        address.to_ascii_lowercase()
    } else {
        address.to_string()
    }
}

/// Addresses that start with this are the vault's own (a key's place in the audit log, see
/// `keyring`): no wallet may have one, and no call may name one.
pub const RESERVED_ADDRESS_PREFIX: &str = "sharevault:";

fn reserved(address: &str) -> bool {
    address.len() >= RESERVED_ADDRESS_PREFIX.len()
        && address.as_bytes()[..RESERVED_ADDRESS_PREFIX.len()].eq_ignore_ascii_case(RESERVED_ADDRESS_PREFIX.as_bytes())
}

/// Checks an address argument (from the caller, not from metadata).
pub fn check_address_arg(address: &str) -> Result<String> {
    if address.is_empty() || address.len() > MAX_ID_LEN {
        return Err(Error::invalid("address", "must be a non-empty string of at most 512 characters"));
    }
    if reserved(address) {
        return Err(Error::invalid("address", format!("must not start with {RESERVED_ADDRESS_PREFIX:?} (reserved)")));
    }
    Ok(address_key(address))
}

fn required_string<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str> {
    let path = format!("walletMetadata.{field}");
    match obj.get(field) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_LEN => Ok(s),
        Some(Value::String(s)) if s.is_empty() => Err(Error::invalid(path, "must not be empty")),
        Some(Value::String(_)) => Err(Error::invalid(path, "is longer than 512 characters")),
        None | Some(Value::Null) => Err(Error::invalid(path, "is required")),
        Some(_) => Err(Error::invalid(path, "must be a string")),
    }
}

/// Checks `KeyShareBackupInfo`: an object whose `backups`, when present, is an object of arrays.
pub fn check_backup_info(v: Option<&Value>, path: &str) -> Result<()> {
    let obj = match v {
        Some(Value::Object(o)) => o,
        None | Some(Value::Null) => return Err(Error::invalid(path, "is required")),
        Some(_) => return Err(Error::invalid(path, "must be an object")),
    };
    if let Some(pe) = obj.get("passwordEncrypted") {
        if !pe.is_boolean() {
            return Err(Error::invalid(format!("{path}.passwordEncrypted"), "must be a boolean"));
        }
    }
    match obj.get("backups") {
        None => Ok(()),
        Some(Value::Object(b)) => {
            for (k, v) in b {
                if !v.is_array() {
                    return Err(Error::invalid(format!("{path}.backups.{k}"), "must be an array"));
                }
            }
            Ok(())
        }
        Some(_) => Err(Error::invalid(format!("{path}.backups"), "must be an object")),
    }
}

/// Parses metadata JSON (as the facade serialized it) into a JSON object.
pub fn parse_metadata(json: &str) -> Result<Map<String, Value>> {
    if json.len() > MAX_METADATA_BYTES {
        return Err(Error::invalid("walletMetadata", "is larger than 1 MiB"));
    }
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(Value::Null) => Err(Error::invalid("walletMetadata", "is required")),
        Ok(_) => Err(Error::invalid("walletMetadata", "must be an object")),
        Err(_) => Err(Error::invalid("walletMetadata", "is not valid JSON data")),
    }
}

/// Validates the metadata of a wallet about to be stored and returns its identity.
pub fn validate_metadata(obj: &Map<String, Value>) -> Result<Identity> {
    let wallet_id = required_string(obj, "walletId")?;
    let account_address = required_string(obj, "accountAddress")?;
    if reserved(account_address) {
        return Err(Error::invalid(
            "walletMetadata.accountAddress",
            format!("must not start with {RESERVED_ADDRESS_PREFIX:?} (reserved)"),
        ));
    }
    let chain_name = required_string(obj, "chainName")?;
    let scheme_str = required_string(obj, "thresholdSignatureScheme")?;
    let scheme = Scheme::parse(scheme_str).ok_or_else(|| {
        Error::invalid("walletMetadata.thresholdSignatureScheme", "must be TWO_OF_TWO, TWO_OF_THREE or THREE_OF_FIVE")
    })?;
    if chain_name == "BTC" {
        match obj.get("addressType") {
            Some(Value::String(t)) if t == "taproot" || t == "native_segwit" => {}
            _ => {
                return Err(Error::invalid(
                    "walletMetadata.addressType",
                    "a BTC wallet needs addressType 'taproot' or 'native_segwit'",
                ))
            }
        }
    }
    if let Some(dp) = obj.get("derivationPath") {
        if !dp.is_string() && !dp.is_null() {
            return Err(Error::invalid("walletMetadata.derivationPath", "must be a string"));
        }
    }
    check_backup_info(
        obj.get("externalServerKeySharesBackupInfo"),
        "walletMetadata.externalServerKeySharesBackupInfo",
    )?;
    Ok(Identity {
        wallet_id: wallet_id.to_string(),
        account_address: account_address.to_string(),
        address_key: address_key(account_address),
        chain_name: chain_name.to_string(),
        scheme,
    })
}

/// The identity columns of a stored row must agree with the stored metadata; a row whose JSON
/// was edited to name another wallet is tampered with.
pub fn check_stored_identity(
    metadata_json: &str,
    wallet_id: &str,
    address_key_col: &str,
    chain_name: &str,
) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(rename = "walletId", borrow)]
        wallet_id: std::borrow::Cow<'a, str>,
        #[serde(rename = "accountAddress", borrow)]
        account_address: std::borrow::Cow<'a, str>,
        #[serde(rename = "chainName", borrow)]
        chain_name: std::borrow::Cow<'a, str>,
    }
    let id: Id<'_> =
        serde_json::from_str(metadata_json).map_err(|_| Error::tampered("the stored metadata is not readable"))?;
    if id.wallet_id != wallet_id || address_key(&id.account_address) != address_key_col || id.chain_name != chain_name {
        return Err(Error::tampered("the stored metadata does not match the wallet's record"));
    }
    Ok(())
}

/// Replaces `externalServerKeySharesBackupInfo` (the SDK returns the whole, current value) and,
/// on a reshare, the scheme. Every other field is left exactly as it was.
pub fn apply_update(obj: &mut Map<String, Value>, backup_info: Value, scheme: Option<Scheme>) {
    obj.insert("externalServerKeySharesBackupInfo".to_string(), backup_info);
    if let Some(s) = scheme {
        obj.insert("thresholdSignatureScheme".to_string(), Value::String(s.as_str().to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta() -> Map<String, Value> {
        match json!({
            "walletId": "w-1", "accountAddress": "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01",
            "chainName": "EVM", "thresholdSignatureScheme": "TWO_OF_TWO", "derivationPath": "",
            "externalServerKeySharesBackupInfo": {"passwordEncrypted": false, "backups": {"dynamic": []}},
            "shareSetId": "kept"
        }) {
            Value::Object(o) => o,
            _ => unreachable!(),
        }
    }

    #[test]
    fn evm_addresses_are_keyed_case_insensitively_and_others_exactly() {
        let id = validate_metadata(&meta()).unwrap();
        assert_eq!(id.address_key, "0xabcdef0123456789abcdef0123456789abcdef01");
        assert_eq!(address_key("So1anaAddrXYZ"), "So1anaAddrXYZ");
        assert_eq!(address_key("bc1qXYZ"), "bc1qXYZ");
    }

    #[test]
    fn btc_without_a_valid_address_type_is_refused_with_its_path() {
        let mut m = meta();
        m.insert("chainName".into(), json!("BTC"));
        let e = validate_metadata(&m).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("walletMetadata.addressType"));
        m.insert("addressType".into(), json!("legacy"));
        assert!(validate_metadata(&m).is_err());
        m.insert("addressType".into(), json!("taproot"));
        assert!(validate_metadata(&m).is_ok());
    }

    #[test]
    fn each_identity_field_is_required_as_a_string() {
        for f in ["walletId", "accountAddress", "chainName", "thresholdSignatureScheme"] {
            let mut m = meta();
            m.remove(f);
            assert_eq!(validate_metadata(&m).unwrap_err().path.unwrap(), format!("walletMetadata.{f}"));
            m.insert(f.into(), json!(7));
            assert_eq!(validate_metadata(&m).unwrap_err().path.unwrap(), format!("walletMetadata.{f}"));
        }
        let mut m = meta();
        m.insert("thresholdSignatureScheme".into(), json!("ONE_OF_ONE"));
        assert!(validate_metadata(&m).is_err());
        let mut m = meta();
        m.remove("externalServerKeySharesBackupInfo");
        assert_eq!(
            validate_metadata(&m).unwrap_err().path.unwrap(),
            "walletMetadata.externalServerKeySharesBackupInfo"
        );
    }

    #[test]
    fn stored_identity_must_match_the_row() {
        let json = serde_json::to_string(&meta()).unwrap();
        let key = "0xabcdef0123456789abcdef0123456789abcdef01";
        assert!(check_stored_identity(&json, "w-1", key, "EVM").is_ok());
        assert!(check_stored_identity(&json, "w-2", key, "EVM").is_err());
    }
}
