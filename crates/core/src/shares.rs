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

    /// Starts a string whose bytes [`Encoder::str_bytes`] appends and [`Encoder::end_str`]
    /// measures: a value (`tagged`) or an object key.
    fn begin_str(&mut self, tagged: bool) -> Result<usize> {
        self.room(5)?;
        if tagged {
            self.buf.push(T_STRING);
        }
        self.buf.extend_from_slice(&[0; 4]);
        Ok(self.buf.len() - 4)
    }

    fn str_bytes(&mut self, b: &[u8]) -> Result<()> {
        self.room(b.len())?;
        self.buf.extend_from_slice(b);
        Ok(())
    }

    /// Ends a string begun at `at`: its length written, its bytes checked to be UTF-8.
    fn end_str(&mut self, at: usize) -> Result<()> {
        let bytes = &self.buf.as_slice()[at + 4..];
        if std::str::from_utf8(bytes).is_err() {
            return Err(Error::internal("a string was not valid UTF-8"));
        }
        let n = bytes.len();
        self.set_count(at, n)
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

/// Encodes a JSON document (a decrypted delegated share) straight into `enc`. Parsed here, not
/// by serde_json, because serde_json unescapes a string with escapes (a `secretShare` that is
/// itself JSON text has them throughout) into a scratch buffer it frees without wiping: here
/// every string is unescaped into the zeroizing encoding itself. A number JavaScript cannot hold
/// exactly is refused: what comes back must be what was sent. Errors name `path` and what was
/// wrong, never a value.
pub fn encode_json(json: &[u8], enc: &mut Encoder, path: &str) -> Result<()> {
    let mut r = JsonReader { s: json, pos: 0 };
    let read = (|| {
        r.ws();
        r.value(enc, 0)?;
        r.ws();
        if r.pos != r.s.len() {
            return Err(Why::from("is not valid JSON (it goes on after its value)"));
        }
        Ok(())
    })();
    read.map_err(|why| Error::invalid(path, why.0))
}

/// Why a document was refused (never a value of it).
struct Why(String);

impl From<&str> for Why {
    fn from(s: &str) -> Why {
        Why(s.to_string())
    }
}

impl From<Error> for Why {
    fn from(e: Error) -> Why {
        Why(e.message)
    }
}

struct JsonReader<'a> {
    s: &'a [u8],
    pos: usize,
}

const NOT_JSON: &str = "is not valid JSON";

impl JsonReader<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn next(&mut self) -> std::result::Result<u8, Why> {
        let b = self.peek().ok_or_else(|| Why::from(NOT_JSON))?;
        self.pos += 1;
        Ok(b)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, b: u8) -> std::result::Result<(), Why> {
        if self.next()? == b {
            Ok(())
        } else {
            Err(Why::from(NOT_JSON))
        }
    }

    fn literal(&mut self, word: &[u8]) -> std::result::Result<(), Why> {
        if self.s.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Why::from(NOT_JSON))
        }
    }

    fn value(&mut self, enc: &mut Encoder, depth: usize) -> std::result::Result<(), Why> {
        if depth > MAX_DEPTH {
            return Err(Why::from("is nested too deeply"));
        }
        match self.peek().ok_or_else(|| Why::from(NOT_JSON))? {
            b'{' => {
                self.pos += 1;
                let at = enc.begin_deferred(T_OBJECT)?;
                let mut n = 0;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                } else {
                    loop {
                        self.ws();
                        self.expect(b'"')?;
                        self.string(enc, false)?;
                        self.ws();
                        self.expect(b':')?;
                        self.ws();
                        self.value(enc, depth + 1)?;
                        n += 1;
                        self.ws();
                        match self.next()? {
                            b',' => {}
                            b'}' => break,
                            _ => return Err(Why::from(NOT_JSON)),
                        }
                    }
                }
                enc.set_count(at, n)?;
            }
            b'[' => {
                self.pos += 1;
                let at = enc.begin_deferred(T_ARRAY)?;
                let mut n = 0;
                self.ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                } else {
                    loop {
                        self.ws();
                        self.value(enc, depth + 1)?;
                        n += 1;
                        self.ws();
                        match self.next()? {
                            b',' => {}
                            b']' => break,
                            _ => return Err(Why::from(NOT_JSON)),
                        }
                    }
                }
                enc.set_count(at, n)?;
            }
            b'"' => {
                self.pos += 1;
                self.string(enc, true)?;
            }
            b't' => {
                self.literal(b"true")?;
                enc.boolean(true)?;
            }
            b'f' => {
                self.literal(b"false")?;
                enc.boolean(false)?;
            }
            b'n' => {
                self.literal(b"null")?;
                enc.null()?;
            }
            b'-' | b'0'..=b'9' => self.number(enc)?,
            _ => return Err(Why::from(NOT_JSON)),
        }
        Ok(())
    }

    /// A string's body (after its opening quote), unescaped into the encoding: a value
    /// (`tagged`) or an object key.
    fn string(&mut self, enc: &mut Encoder, tagged: bool) -> std::result::Result<(), Why> {
        let at = enc.begin_str(tagged)?;
        loop {
            // The run up to the next quote or backslash, copied as it is.
            let start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' {
                    break;
                }
                if b < 0x20 {
                    return Err(Why::from("is not valid JSON (a control character in a string)"));
                }
                self.pos += 1;
            }
            enc.str_bytes(&self.s[start..self.pos])?;
            match self.next()? {
                b'"' => break,
                _ => {
                    let c = match self.next()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode()?,
                        _ => return Err(Why::from(NOT_JSON)),
                    };
                    let mut utf8 = [0u8; 4];
                    enc.str_bytes(c.encode_utf8(&mut utf8).as_bytes())?;
                    utf8.iter_mut().for_each(|b| *b = 0);
                }
            }
        }
        enc.end_str(at).map_err(|_| Why::from("is not valid JSON (a string is not UTF-8)"))
    }

    fn hex4(&mut self) -> std::result::Result<u32, Why> {
        let digits = self.s.get(self.pos..self.pos + 4).ok_or_else(|| Why::from(NOT_JSON))?;
        let mut n = 0u32;
        for &d in digits {
            n = n * 16 + (d as char).to_digit(16).ok_or_else(|| Why::from(NOT_JSON))?;
        }
        self.pos += 4;
        Ok(n)
    }

    /// `\uXXXX`, a surrogate pair joined; a lone surrogate is refused (it would not come back).
    fn unicode(&mut self) -> std::result::Result<char, Why> {
        let lone = || Why::from("is not valid JSON (a lone surrogate)");
        let hi = self.hex4()?;
        let code = match hi {
            0xD800..=0xDBFF => {
                self.literal(b"\\u").map_err(|_| lone())?;
                let lo = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err(lone());
                }
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(lone()),
            c => c,
        };
        char::from_u32(code).ok_or_else(lone)
    }

    fn number(&mut self, enc: &mut Encoder) -> std::result::Result<(), Why> {
        let start = self.pos;
        let digits = |r: &mut Self| {
            let from = r.pos;
            while matches!(r.peek(), Some(b'0'..=b'9')) {
                r.pos += 1;
            }
            r.pos > from
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        if !digits(self) || (self.s[int_start] == b'0' && self.pos - int_start > 1) {
            return Err(Why::from(NOT_JSON));
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            integer = false;
            if !digits(self) {
                return Err(Why::from(NOT_JSON));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            integer = false;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(Why::from(NOT_JSON));
            }
        }
        // ASCII by construction.
        let text = std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| Why::from(NOT_JSON))?;
        let n: f64 = text.parse().map_err(|_| Why::from(NOT_JSON))?;
        if integer && n.abs() > MAX_SAFE_INTEGER as f64 {
            return Err(Why::from("holds an integer larger than JavaScript can hold exactly"));
        }
        if !n.is_finite() {
            return Err(Why::from("holds a number too large for JavaScript"));
        }
        enc.number(n)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(v: &Value<'_>, j: &serde_json::Value) -> bool {
        match (v, j) {
            (Value::Null, serde_json::Value::Null) => true,
            (Value::Bool(a), serde_json::Value::Bool(b)) => a == b,
            (Value::Number(a), serde_json::Value::Number(b)) => Some(*a) == b.as_f64(),
            (Value::Str(a), serde_json::Value::String(b)) => a == b,
            (Value::Array(a), serde_json::Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
            }
            (Value::Object(a), serde_json::Value::Object(b)) => {
                a.len() == b.len() && a.iter().all(|(k, x)| b.get(*k).is_some_and(|y| same(x, y)))
            }
            _ => false,
        }
    }

    #[test]
    fn json_is_read_into_the_encoding_as_serde_json_reads_it() {
        for doc in [
            r#"{"secretShare":"{\"a\":[1,2],\"b\":\"x\\ny\"}","pubkey":{"pubkey":[3,255,0]}}"#,
            r#" [ true , false , null , -0.5e3 , 12 , "\u00e9\ud83d\ude00\/\b\f\r\t" , {} , [] ] "#,
            r#""plain""#,
            r#"{"nested":{"deeper":{"deepest":["é", 1.25]}}}"#,
        ] {
            let mut enc = Encoder::new();
            encode_json(doc.as_bytes(), &mut enc, "p").unwrap();
            let buf = enc.finish();
            let expected: serde_json::Value = serde_json::from_str(doc).unwrap();
            assert!(same(&decode(&buf).unwrap(), &expected), "{doc}");
        }
        for bad in [
            r#"{"a":1"#,
            r#"{"a" 1}"#,
            "[1,]",
            "01",
            "\"\\ud800\"",
            "\"\u{1}\"",
            "tru",
            "1 2",
            r#"{"a":9007199254740993}"#,
            "1e999",
        ] {
            let mut enc = Encoder::new();
            let e = encode_json(bad.as_bytes(), &mut enc, "p").unwrap_err();
            assert_eq!((e.code, e.path.as_deref()), (crate::error::ErrorCode::InvalidInput, Some("p")), "{bad}");
        }
    }

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
