//! Dynamic's delegated access: the webhook it sends when a user delegates signing to the
//! developer's server (`wallet.delegation.created`), or takes it back
//! (`wallet.delegation.revoked`), read from the raw body. The vault (`vault::delegations`) checks
//! the signature first, then reads the event here, decrypts its secrets (`crypto`) and seals them.
//!
//! Both spellings Dynamic has used are accepted (`encryptedDelegatedShare` and
//! `encryptedDelegatedKeyShare`).

pub mod crypto;

use crate::error::{Error, Result};
use crate::model::MAX_ID_LEN;
use serde_json::{Map, Value};

pub const CREATED: &str = "wallet.delegation.created";
pub const REVOKED: &str = "wallet.delegation.revoked";
pub const PING: &str = "ping";

/// A webhook body larger than this is refused before it is parsed.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The envelope of every event.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub event_id: String,
    pub event_name: String,
    pub message_id: Option<String>,
    pub webhook_id: Option<String>,
    /// Dynamic's `timestamp`, in ms since the epoch, if the event carries a readable one.
    pub timestamp_ms: Option<i64>,
    pub environment_id: Option<String>,
    pub user_id: Option<String>,
    pub data: Value,
}

/// What a `wallet.delegation.created` event carries (its secrets still encrypted).
#[derive(Debug, Clone, PartialEq)]
pub struct Created<'a> {
    pub wallet_id: &'a str,
    pub chain: &'a str,
    /// The wallet's address (`publicKey`).
    pub address: &'a str,
    pub user_id: &'a str,
    pub share_set_id: Option<&'a str>,
    pub share: &'a Value,
    pub api_key: &'a Value,
}

/// What a `wallet.delegation.revoked` event names.
#[derive(Debug, Clone, PartialEq)]
pub struct Revoked<'a> {
    pub wallet_id: &'a str,
    pub chain: Option<&'a str>,
}

fn id<'a>(obj: &'a Map<String, Value>, field: &str, path: &str) -> Result<&'a str> {
    match obj.get(field) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_LEN => Ok(s),
        Some(Value::String(_)) => {
            Err(Error::invalid(format!("{path}{field}"), "must be a non-empty string of at most 512 characters"))
        }
        None | Some(Value::Null) => Err(Error::invalid(format!("{path}{field}"), "is required")),
        Some(_) => Err(Error::invalid(format!("{path}{field}"), "must be a string")),
    }
}

fn optional_id<'a>(obj: &'a Map<String, Value>, field: &str, path: &str) -> Result<Option<&'a str>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        _ => id(obj, field, path).map(Some),
    }
}

/// Dynamic's `timestamp`: an RFC 3339 string, or a number of ms (or s) since the epoch.
fn timestamp(v: Option<&Value>) -> Result<Option<i64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            aws_smithy_types::DateTime::from_str(s, aws_smithy_types::date_time::Format::DateTime)
                .ok()
                .and_then(|t| t.to_millis().ok())
                .map(Some)
                .ok_or_else(|| Error::invalid("timestamp", "must be an RFC 3339 date and time"))
        }
        Some(Value::Number(n)) => match n.as_f64() {
            // Seconds before 2286 are below 1e10; milliseconds since 1970-04 are above it.
            Some(t) if t.is_finite() && t >= 0.0 => Ok(Some(if t < 1e10 { (t * 1000.0) as i64 } else { t as i64 })),
            _ => Err(Error::invalid("timestamp", "must be a time since the epoch")),
        },
        Some(_) => Err(Error::invalid("timestamp", "must be an RFC 3339 string")),
    }
}

impl Envelope {
    /// Reads a webhook body (already authenticated: call only after the signature is checked).
    pub fn parse(raw: &[u8]) -> Result<Envelope> {
        if raw.len() > MAX_BODY_BYTES {
            return Err(Error::invalid("body", "is larger than 4 MiB"));
        }
        let obj = match serde_json::from_slice::<Value>(raw) {
            Ok(Value::Object(o)) => o,
            Ok(_) => return Err(Error::invalid("body", "must be a JSON object")),
            Err(_) => return Err(Error::invalid("body", "is not valid JSON")),
        };
        let event_id = id(&obj, "eventId", "")?.to_string();
        let event_name = id(&obj, "eventName", "")?.to_string();
        let owned = |f: &str| optional_id(&obj, f, "").map(|o| o.map(str::to_string));
        Ok(Envelope {
            message_id: owned("messageId")?,
            webhook_id: owned("webhookId")?,
            environment_id: owned("environmentId")?,
            user_id: owned("userId")?,
            timestamp_ms: timestamp(obj.get("timestamp"))?,
            data: obj.get("data").cloned().unwrap_or(Value::Null),
            event_id,
            event_name,
        })
    }

    fn data(&self) -> Result<&Map<String, Value>> {
        match &self.data {
            Value::Object(o) => Ok(o),
            _ => Err(Error::invalid("data", "must be an object")),
        }
    }

    /// The `data` of a created event.
    pub fn created(&self) -> Result<Created<'_>> {
        let d = self.data()?;
        let share = d
            .get("encryptedDelegatedShare")
            .or_else(|| d.get("encryptedDelegatedKeyShare"))
            .ok_or_else(|| Error::invalid("data.encryptedDelegatedShare", "is required"))?;
        let api_key = d
            .get("encryptedWalletApiKey")
            .ok_or_else(|| Error::invalid("data.encryptedWalletApiKey", "is required"))?;
        let user_id = match optional_id(d, "userId", "data.")? {
            Some(u) => u,
            None => self.user_id.as_deref().ok_or_else(|| Error::invalid("data.userId", "is required"))?,
        };
        Ok(Created {
            wallet_id: id(d, "walletId", "data.")?,
            chain: id(d, "chain", "data.")?,
            address: id(d, "publicKey", "data.")?,
            user_id,
            share_set_id: optional_id(d, "shareSetId", "data.")?,
            share,
            api_key,
        })
    }

    /// The `data` of a revoked event.
    pub fn revoked(&self) -> Result<Revoked<'_>> {
        let d = self.data()?;
        Ok(Revoked { wallet_id: id(d, "walletId", "data.")?, chain: optional_id(d, "chain", "data.")? })
    }

    /// The path of the share field this event used (for errors).
    pub fn share_path(&self) -> &'static str {
        match &self.data {
            Value::Object(d)
                if !d.contains_key("encryptedDelegatedShare") && d.contains_key("encryptedDelegatedKeyShare") =>
            {
                "data.encryptedDelegatedKeyShare"
            }
            _ => "data.encryptedDelegatedShare",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_of_the_share_field_are_read() {
        for field in ["encryptedDelegatedShare", "encryptedDelegatedKeyShare"] {
            let body = format!(
                r#"{{"eventId":"e1","eventName":"{CREATED}","timestamp":"2026-12-04T10:00:00.000Z","userId":"u1",
                "data":{{"walletId":"w1","chain":"EVM","publicKey":"0xabc","{field}":{{"alg":"x"}},"encryptedWalletApiKey":{{}}}}}}"#
            );
            let env = Envelope::parse(body.as_bytes()).unwrap();
            assert_eq!(env.timestamp_ms, Some(1_796_378_400_000));
            let c = env.created().unwrap();
            assert_eq!((c.wallet_id, c.user_id, c.chain), ("w1", "u1", "EVM"));
            assert_eq!(env.share_path(), format!("data.{field}"));
        }
    }

    #[test]
    fn a_body_without_an_event_id_is_refused_with_its_path() {
        let e = Envelope::parse(br#"{"eventName":"ping"}"#).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("eventId"));
        assert_eq!(Envelope::parse(b"[1]").unwrap_err().path.as_deref(), Some("body"));
    }
}
