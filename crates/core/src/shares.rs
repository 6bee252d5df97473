//! The canonical byte encoding of `externalServerKeyShares`.
//!
//! The binding walks the JavaScript share objects and writes them here, straight into a
//! [`SecretBuf`], so no JSON string of the plaintext is ever built. The encoding is typed, so the
//! way back is faithful: strings stay strings, byte arrays stay byte arrays, `undefined` stays
//! `undefined`. Layout (all lengths u32 little-endian):
//!
//! ```text
//! doc    = VERSION value
//! value  = 0x00 null | 0x01 undefined | 0x02 false | 0x03 true | 0x04 f64-le
//!        | 0x05 len utf8 | 0x06 len bytes | 0x07 count value* | 0x08 count (len utf8 value)*
//! ```
//!
//! [`decode`] borrows from the buffer: the tree it returns holds references, never copies.

use crate::error::{Error, Result};
use crate::secret::SecretBuf;

pub const VERSION: u8 = 1;
/// Shares larger than this are refused: real shares are a few KB each.
pub const MAX_ENCODED_BYTES: usize = 1024 * 1024;
/// Nesting deeper than this is refused (it also stops cycles).
pub const MAX_DEPTH: usize = 32;

const T_NULL: u8 = 0;
const T_UNDEFINED: u8 = 1;
const T_FALSE: u8 = 2;
const T_TRUE: u8 = 3;
const T_NUMBER: u8 = 4;
const T_STRING: u8 = 5;
const T_BYTES: u8 = 6;
const T_ARRAY: u8 = 7;
const T_OBJECT: u8 = 8;

const ROOT: &str = "externalServerKeyShares";

fn too_large() -> Error {
    Error::invalid(ROOT, format!("the shares are larger than {} bytes", MAX_ENCODED_BYTES))
}

/// Writes the encoding. Every write checks the size limit, so a hostile input is refused as soon
/// as it crosses it, without first being copied whole.
pub struct Encoder {
    buf: SecretBuf,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        let mut buf = SecretBuf::with_capacity(8 * 1024);
        buf.push(VERSION);
        Encoder { buf }
    }

    fn room(&mut self, n: usize) -> Result<()> {
        if self.buf.len().saturating_add(n) > MAX_ENCODED_BYTES {
            return Err(too_large());
        }
        Ok(())
    }

    fn len_u32(n: usize) -> Result<[u8; 4]> {
        u32::try_from(n).map(u32::to_le_bytes).map_err(|_| too_large())
    }

    fn tag(&mut self, t: u8) -> Result<()> {
        self.room(1)?;
        self.buf.push(t);
        Ok(())
    }

    fn tag_len(&mut self, t: u8, n: usize) -> Result<()> {
        self.room(5)?;
        self.buf.push(t);
        self.buf.extend_from_slice(&Self::len_u32(n)?);
        Ok(())
    }

    pub fn null(&mut self) -> Result<()> {
        self.tag(T_NULL)
    }

    pub fn undefined(&mut self) -> Result<()> {
        self.tag(T_UNDEFINED)
    }

    pub fn boolean(&mut self, v: bool) -> Result<()> {
        self.tag(if v { T_TRUE } else { T_FALSE })
    }

    pub fn number(&mut self, v: f64) -> Result<()> {
        self.room(9)?;
        self.buf.push(T_NUMBER);
        self.buf.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    pub fn string(&mut self, s: &str) -> Result<()> {
        self.room(s.len().saturating_add(5))?;
        self.tag_len(T_STRING, s.len())?;
        self.buf.extend_from_slice(s.as_bytes());
        Ok(())
    }

    /// A string of `len` UTF-8 bytes that `fill` writes in place. `fill` gets `len + 1` bytes of
    /// room (N-API writes a terminating NUL) and returns how many bytes it wrote, which must be
    /// `len`.
    pub fn string_in_place(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> Result<usize>) -> Result<()> {
        self.room(len.saturating_add(6))?;
        self.tag_len(T_STRING, len)?;
        let start = self.buf.len();
        let written = fill(self.buf.append_uninit(len + 1))?;
        if written != len {
            return Err(Error::internal("a string changed length while it was read"));
        }
        self.buf.truncate(start + len);
        if std::str::from_utf8(&self.buf.as_slice()[start..]).is_err() {
            return Err(Error::internal("a string was not valid UTF-8"));
        }
        Ok(())
    }

    pub fn bytes(&mut self, b: &[u8]) -> Result<()> {
        self.room(b.len().saturating_add(5))?;
        self.tag_len(T_BYTES, b.len())?;
        self.buf.extend_from_slice(b);
        Ok(())
    }

    pub fn begin_array(&mut self, count: usize) -> Result<()> {
        self.tag_len(T_ARRAY, count)
    }

    pub fn begin_object(&mut self, count: usize) -> Result<()> {
        self.tag_len(T_OBJECT, count)
    }

    /// An object key. Keys are field names, not secrets, but they live in the same buffer.
    pub fn key(&mut self, k: &str) -> Result<()> {
        self.room(k.len().saturating_add(4))?;
        self.buf.extend_from_slice(&Self::len_u32(k.len())?);
        self.buf.extend_from_slice(k.as_bytes());
        Ok(())
    }

    /// Starts an array or object whose count [`Encoder::set_count`] writes once it is known.
    fn begin_deferred(&mut self, t: u8) -> Result<usize> {
        self.tag_len(t, 0)?;
        Ok(self.buf.len() - 4)
    }

    fn set_count(&mut self, at: usize, n: usize) -> Result<()> {
        let count = Self::len_u32(n)?;
        self.buf.as_mut_vec()[at..at + 4].copy_from_slice(&count);
        Ok(())
    }

    pub fn finish(self) -> SecretBuf {
        self.buf
    }
}

/// A decoded value, borrowing from the buffer it came from.
#[derive(PartialEq)]
pub enum Value<'a> {
    Null,
    Undefined,
    Bool(bool),
    Number(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    Array(Vec<Value<'a>>),
    Object(Vec<(&'a str, Value<'a>)>),
}

impl std::fmt::Debug for Value<'_> {
    /// Prints the shape only: never a string or byte value, which may be share material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Undefined => f.write_str("undefined"),
            Value::Bool(_) => f.write_str("<bool>"),
            Value::Number(_) => f.write_str("<number>"),
            Value::Str(s) => write!(f, "<string; {} bytes>", s.len()),
            Value::Bytes(b) => write!(f, "<bytes; {}>", b.len()),
            Value::Array(items) => f.debug_list().entries(items).finish(),
            Value::Object(fields) => {
                let mut m = f.debug_map();
                for (k, v) in fields {
                    m.entry(k, v);
                }
                m.finish()
            }
        }
    }
}

fn malformed() -> Error {
    Error::tampered("the decrypted share encoding is malformed")
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(malformed)?;
        let out = self.data.get(self.pos..end).ok_or_else(malformed)?;
        self.pos = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<usize> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn str(&mut self) -> Result<&'a str> {
        let n = self.u32()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| malformed())
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>> {
        if depth > MAX_DEPTH {
            return Err(malformed());
        }
        let tag = self.take(1)?[0];
        Ok(match tag {
            T_NULL => Value::Null,
            T_UNDEFINED => Value::Undefined,
            T_FALSE => Value::Bool(false),
            T_TRUE => Value::Bool(true),
            T_NUMBER => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Value::Number(f64::from_le_bytes(a))
            }
            T_STRING => Value::Str(self.str()?),
            T_BYTES => {
                let n = self.u32()?;
                Value::Bytes(self.take(n)?)
            }
            T_ARRAY => {
                let n = self.u32()?;
                // Every element takes at least one byte: bound the allocation by what is left.
                let mut items = Vec::with_capacity(n.min(self.data.len() - self.pos));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            T_OBJECT => {
                let n = self.u32()?;
                let mut fields = Vec::with_capacity(n.min(self.data.len() - self.pos));
                for _ in 0..n {
                    let k = self.str()?;
                    fields.push((k, self.value(depth + 1)?));
                }
                Value::Object(fields)
            }
            _ => return Err(malformed()),
        })
    }
}

/// Decodes a whole document. Anything malformed (which only a changed record or a bug can
/// produce, since the binding wrote it) is `ERR_TAMPERED`.
pub fn decode(buf: &SecretBuf) -> Result<Value<'_>> {
    let mut r = Reader { data: buf.as_slice(), pos: 0 };
    if r.take(1)?[0] != VERSION {
        return Err(malformed());
    }
    let v = r.value(0)?;
    if r.pos != r.data.len() {
        return Err(malformed());
    }
    Ok(v)
}

impl<'a> Value<'a> {
    pub fn field(&self, name: &str) -> Option<&Value<'a>> {
        match self {
            Value::Object(fields) => fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Checks the shape the SDK needs: an array of `expected` share objects, each with a non-empty
/// string `secretShare`. Errors name the path, never a value.
pub fn validate(buf: &SecretBuf, expected: usize, scheme: &str) -> Result<()> {
    let doc = decode(buf).map_err(|_| Error::invalid(ROOT, "the shares could not be read"))?;
    let Value::Array(items) = &doc else {
        return Err(Error::invalid(ROOT, "must be an array of key shares"));
    };
    if items.len() != expected {
        return Err(Error::invalid(
            ROOT,
            format!("{scheme} needs {expected} external server key share(s), got {}", items.len()),
        ));
    }
    for (i, share) in items.iter().enumerate() {
        validate_share(share, &format!("{ROOT}[{i}]"))?;
    }
    Ok(())
}

/// Checks one share object: a non-empty string `secretShare`. Errors name `path`, never a value.
pub fn validate_share(share: &Value<'_>, path: &str) -> Result<()> {
    if !matches!(share, Value::Object(_)) {
        return Err(Error::invalid(path, "must be an object"));
    }
    match share.field("secretShare") {
        Some(Value::Str(s)) if !s.is_empty() => Ok(()),
        Some(Value::Str(_)) => Err(Error::invalid(format!("{path}.secretShare"), "must be a non-empty string")),
        _ => Err(Error::invalid(format!("{path}.secretShare"), "must be a string")),
    }
}

/// The largest integer a JavaScript number holds exactly.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Encodes a JSON document (a decrypted delegated share) straight into `enc`, with no
/// `serde_json::Value` in between (its strings would be freed unwiped). A number JavaScript
/// cannot hold exactly is refused: what comes back must be what was sent.
pub fn encode_json(json: &[u8], enc: &mut Encoder, path: &str) -> Result<()> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(json);
    let read = JsonSeed { enc, depth: 0 }.deserialize(&mut de).and_then(|()| de.end());
    read.map_err(|e| {
        let why = if e.is_data() { e.to_string() } else { "is not valid JSON".to_string() };
        // serde_json's own messages name a position, never the text at it.
        Error::invalid(path, why.split(" at line ").next().unwrap_or("is not valid JSON").to_string())
    })
}

struct JsonSeed<'e> {
    enc: &'e mut Encoder,
    depth: usize,
}

fn de_err<E: serde::de::Error>(e: Error) -> E {
    E::custom(e.message)
}

impl<'de> serde::de::DeserializeSeed<'de> for JsonSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// An object key, written as one.
struct KeySeed<'e>(&'e mut Encoder);

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeySeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: serde::de::Error>(self, k: &str) -> std::result::Result<(), E> {
        self.0.key(k).map_err(de_err)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> std::result::Result<(), E> {
        self.enc.boolean(v).map_err(de_err)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<(), E> {
        if v > MAX_SAFE_INTEGER {
            return Err(E::custom("holds an integer larger than JavaScript can hold exactly"));
        }
        self.enc.number(v as f64).map_err(de_err)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<(), E> {
        if v.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(E::custom("holds an integer larger than JavaScript can hold exactly"));
        }
        self.enc.number(v as f64).map_err(de_err)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<(), E> {
        self.enc.number(v).map_err(de_err)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<(), E> {
        self.enc.string(v).map_err(de_err)
    }
    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        self.enc.null().map_err(de_err)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(serde::de::Error::custom("is nested too deeply"));
        }
        let at = self.enc.begin_deferred(T_ARRAY).map_err(de_err)?;
        let mut n = 0;
        while seq.next_element_seed(JsonSeed { enc: &mut *self.enc, depth: self.depth + 1 })?.is_some() {
            n += 1;
        }
        self.enc.set_count(at, n).map_err(de_err)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(serde::de::Error::custom("is nested too deeply"));
        }
        let at = self.enc.begin_deferred(T_OBJECT).map_err(de_err)?;
        let mut n = 0;
        while map.next_key_seed(KeySeed(&mut *self.enc))?.is_some() {
            map.next_value_seed(JsonSeed { enc: &mut *self.enc, depth: self.depth + 1 })?;
            n += 1;
        }
        self.enc.set_count(at, n).map_err(de_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SecretBuf {
        let mut e = Encoder::new();
        e.begin_array(1).unwrap();
        e.begin_object(3).unwrap();
        e.key("pubkey").unwrap();
        e.begin_object(1).unwrap();
        e.key("pubkey").unwrap();
        e.bytes(&[7u8; 64]).unwrap();
        e.key("secretShare").unwrap();
        e.string_in_place(5, |dst| {
            dst[..5].copy_from_slice(b"abcde");
            dst[5] = 0;
            Ok(5)
        })
        .unwrap();
        e.key("extra").unwrap();
        e.undefined().unwrap();
        e.finish()
    }

    #[test]
    fn an_encoded_share_decodes_to_the_same_typed_values() {
        let buf = sample();
        let doc = decode(&buf).unwrap();
        let Value::Array(items) = doc else { panic!("not an array") };
        assert_eq!(items[0].field("secretShare"), Some(&Value::Str("abcde")));
        let pk = items[0].field("pubkey").unwrap().field("pubkey").unwrap();
        assert_eq!(pk, &Value::Bytes(&[7u8; 64]));
        assert_eq!(items[0].field("extra"), Some(&Value::Undefined));
    }

    #[test]
    fn validation_counts_shares_and_requires_a_string_secret_share() {
        let buf = sample();
        assert!(validate(&buf, 1, "TWO_OF_TWO").is_ok());
        let err = validate(&buf, 2, "TWO_OF_THREE").unwrap_err();
        assert_eq!(err.path.as_deref(), Some("externalServerKeyShares"));

        let mut e = Encoder::new();
        e.begin_array(1).unwrap();
        e.begin_object(1).unwrap();
        e.key("secretShare").unwrap();
        e.number(1.0).unwrap();
        let err = validate(&e.finish(), 1, "TWO_OF_TWO").unwrap_err();
        assert_eq!(err.path.as_deref(), Some("externalServerKeyShares[0].secretShare"));
    }

    #[test]
    fn a_truncated_or_extended_encoding_is_refused() {
        let buf = sample();
        let cut = SecretBuf::from_vec(buf.as_slice()[..buf.len() - 1].to_vec());
        assert!(decode(&cut).is_err());
        let mut longer = SecretBuf::from_vec(buf.as_slice().to_vec());
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn input_beyond_the_size_limit_is_refused_while_it_is_written() {
        let mut e = Encoder::new();
        let big = vec![b'x'; MAX_ENCODED_BYTES];
        let err = e.bytes(&big).unwrap_err();
        assert_eq!(err.code, crate::error::ErrorCode::InvalidInput);
    }

    #[test]
    fn debug_output_of_a_decoded_share_shows_no_values() {
        let buf = sample();
        let shown = format!("{:?}", decode(&buf).unwrap());
        assert!(!shown.contains("abcde"));
        assert!(shown.contains("secretShare"));
    }
}
