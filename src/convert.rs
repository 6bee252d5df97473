//! JS ⇄ Rust conversion of share objects, on the JS thread, with raw N-API calls so that the
//! plaintext is written straight into a zeroizing buffer and read straight out of one: no JSON
//! string, no intermediate `String`/`Vec` copy of a secret.
//!
//! What comes back is exactly what went in, or the store is refused with `ERR_INVALID_INPUT` and
//! a path: strings must be well-formed UTF-16 (a lone surrogate would come back as U+FFFD), and
//! only plain objects (or class instances, as their own fields), arrays and `Uint8Array`s are
//! walked: a boxed primitive, an `Error`, a `Date` or any other built-in with internal slots
//! would come back as a different, plain object. Results are built with define semantics, so no
//! accessor inherited from a polluted prototype ever runs.

use crate::error::to_napi;
use crate::out::{define_array, define_object};
use crate::raw::{check, thrown_at};
use napi::bindgen_prelude::{FromNapiValue, ToNapiValue, TypeName, ValidateNapiValue, ValueType};
use napi::sys;
use sharevault_core::shares::{self, Encoder, Value, MAX_DEPTH};
use sharevault_core::{Error, SecretBuf};
use std::os::raw::c_char;
use std::ptr;
use zeroize::Zeroizing;

/// U+FFFD in UTF-8: what N-API writes for a lone surrogate (and what a string may also hold).
const REPLACEMENT: [u8; 3] = [0xEF, 0xBF, 0xBD];

fn has_replacement(utf8: &[u8]) -> bool {
    utf8.windows(3).any(|w| w == REPLACEMENT)
}

/// Whether the JS string `v` holds a lone surrogate. Only asked when its UTF-8 form holds
/// U+FFFD, so the usual string is read once. The UTF-16 copy is zeroized.
unsafe fn has_lone_surrogate(env: sys::napi_env, v: sys::napi_value) -> Result<bool, Error> {
    let mut len = 0usize;
    check(sys::napi_get_value_string_utf16(env, v, ptr::null_mut(), 0, &mut len), "sizing a string")?;
    let mut units = Zeroizing::new(vec![0u16; len + 1]);
    let mut written = 0usize;
    check(sys::napi_get_value_string_utf16(env, v, units.as_mut_ptr(), units.len(), &mut written), "reading a string")?;
    Ok(char::decode_utf16(units[..written].iter().copied()).any(|c| c.is_err()))
}

const LONE_SURROGATE: &str = "is not well-formed UTF-16 (it holds a lone surrogate) and would not come back unchanged";

/// The shares as the caller passed them, encoded into zeroizing memory.
pub struct SharesInput(pub SecretBuf);

impl TypeName for SharesInput {
    fn type_name() -> &'static str {
        "ServerKeyShare[]"
    }
    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl ValidateNapiValue for SharesInput {}

impl FromNapiValue for SharesInput {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        let mut enc = Encoder::new();
        let mut path = String::from("externalServerKeyShares");
        let mut is_array = false;
        check(sys::napi_is_array(env, value, &mut is_array), "checking the shares")
            .map_err(|e| to_napi(thrown_at(env, &path, e)))?;
        if !is_array {
            return Err(to_napi(Error::invalid(path, "must be an array of key shares")));
        }
        let tag_fn = object_to_string(env).map_err(to_napi)?;
        // A getter or Proxy trap that throws fails the walk where it was: `path` names that place.
        encode(env, tag_fn, value, &mut enc, &mut path, 0).map_err(|e| to_napi(thrown_at(env, &path, e)))?;
        Ok(SharesInput(enc.finish()))
    }
}

unsafe fn encode(
    env: sys::napi_env,
    tag_fn: sys::napi_value,
    v: sys::napi_value,
    enc: &mut Encoder,
    path: &mut String,
    depth: usize,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::invalid(path.clone(), "is nested too deeply (or contains a cycle)"));
    }
    let mut t = 0;
    check(sys::napi_typeof(env, v, &mut t), "reading a type")?;
    match t {
        sys::ValueType::napi_undefined => enc.undefined(),
        sys::ValueType::napi_null => enc.null(),
        sys::ValueType::napi_boolean => {
            let mut b = false;
            check(sys::napi_get_value_bool(env, v, &mut b), "reading a boolean")?;
            enc.boolean(b)
        }
        sys::ValueType::napi_number => {
            let mut n = 0f64;
            check(sys::napi_get_value_double(env, v, &mut n), "reading a number")?;
            enc.number(n)
        }
        sys::ValueType::napi_string => {
            let mut len = 0usize;
            check(sys::napi_get_value_string_utf8(env, v, ptr::null_mut(), 0, &mut len), "sizing a string")?;
            enc.string_in_place(len, |dst| {
                let mut written = 0usize;
                check(
                    sys::napi_get_value_string_utf8(env, v, dst.as_mut_ptr() as *mut c_char, dst.len(), &mut written),
                    "reading a string",
                )?;
                if has_replacement(&dst[..written.min(dst.len())]) && has_lone_surrogate(env, v)? {
                    return Err(Error::invalid(path.clone(), LONE_SURROGATE));
                }
                Ok(written)
            })
        }
        sys::ValueType::napi_object => encode_object(env, tag_fn, v, enc, path, depth),
        _ => Err(Error::invalid(path.clone(), "holds a value that cannot be stored (function, symbol or bigint)")),
    }
}

unsafe fn encode_object(
    env: sys::napi_env,
    tag_fn: sys::napi_value,
    v: sys::napi_value,
    enc: &mut Encoder,
    path: &mut String,
    depth: usize,
) -> Result<(), Error> {
    let mut flag = false;
    check(sys::napi_is_typedarray(env, v, &mut flag), "checking a typed array")?;
    if flag {
        let mut kind = 0;
        let mut length = 0usize;
        let mut data: *mut std::ffi::c_void = ptr::null_mut();
        let mut ab = ptr::null_mut();
        let mut offset = 0usize;
        check(
            sys::napi_get_typedarray_info(env, v, &mut kind, &mut length, &mut data, &mut ab, &mut offset),
            "reading a typed array",
        )?;
        if kind != sys::TypedarrayType::uint8_array {
            return Err(Error::invalid(
                path.clone(),
                "typed arrays other than Uint8Array (or Buffer) are not supported",
            ));
        }
        let bytes =
            if length == 0 || data.is_null() { &[][..] } else { std::slice::from_raw_parts(data as *const u8, length) };
        return enc.bytes(bytes);
    }
    check(sys::napi_is_array(env, v, &mut flag), "checking an array")?;
    if flag {
        let mut len = 0u32;
        check(sys::napi_get_array_length(env, v, &mut len), "reading an array length")?;
        enc.begin_array(len as usize)?;
        let base = path.len();
        for i in 0..len {
            let mut item = ptr::null_mut();
            check(sys::napi_get_element(env, v, i, &mut item), "reading an array element")?;
            path.push_str(&format!("[{i}]"));
            encode(env, tag_fn, item, enc, path, depth + 1)?;
            path.truncate(base);
        }
        return Ok(());
    }
    // Only ordinary objects from here on. `Object.prototype.toString` reads internal slots, so it
    // recognizes built-ins (boxed primitives, errors, dates, maps, arguments...) also from another
    // realm (a vm context, jest's sandbox), where `instanceof` would not.
    let mut tag_buf = [0u8; 64];
    let tag = to_string_tag(env, tag_fn, v, &mut tag_buf)?;
    if tag != "[object Object]" {
        let kind = tag.strip_prefix("[object ").and_then(|t| t.strip_suffix(']')).unwrap_or("value");
        return Err(Error::invalid(
            path.clone(),
            format!(
                "a {kind} cannot be stored; use plain objects, arrays, strings, numbers, booleans, null or Uint8Array"
            ),
        ));
    }
    // A plain object, or an instance of a JS class such as the SDK's `EcdsaKeygenResult`: its own
    // enumerable string-keyed fields (the class itself is documented not to come back).
    let mut names = ptr::null_mut();
    check(
        sys::napi_get_all_property_names(
            env,
            v,
            sys::KeyCollectionMode::own_only,
            sys::KeyFilter::enumerable | sys::KeyFilter::skip_symbols,
            sys::KeyConversion::numbers_to_strings,
            &mut names,
        ),
        "listing an object's fields",
    )?;
    let mut count = 0u32;
    check(sys::napi_get_array_length(env, names, &mut count), "counting an object's fields")?;
    enc.begin_object(count as usize)?;
    let base = path.len();
    let mut key_buf: Vec<u8> = Vec::new();
    for i in 0..count {
        let mut key = ptr::null_mut();
        check(sys::napi_get_element(env, names, i, &mut key), "reading a field name")?;
        let mut klen = 0usize;
        check(sys::napi_get_value_string_utf8(env, key, ptr::null_mut(), 0, &mut klen), "sizing a field name")?;
        if klen > 1024 {
            return Err(Error::invalid(path.clone(), "has a field name longer than 1024 bytes"));
        }
        key_buf.clear();
        key_buf.resize(klen + 1, 0);
        let mut written = 0usize;
        check(
            sys::napi_get_value_string_utf8(env, key, key_buf.as_mut_ptr() as *mut c_char, key_buf.len(), &mut written),
            "reading a field name",
        )?;
        let name =
            std::str::from_utf8(&key_buf[..written]).map_err(|_| Error::internal("a field name was not UTF-8"))?;
        if has_replacement(name.as_bytes()) && has_lone_surrogate(env, key)? {
            // '\ud800' and '\udc00' would both come back as '\u{fffd}', one field instead of two.
            return Err(Error::invalid(path.clone(), format!("has a field name that {LONE_SURROGATE}")));
        }
        if name == "__proto__" {
            // Set back on a fresh object it would change the object's prototype, not add a field.
            return Err(Error::invalid(path.clone(), "has a field named __proto__"));
        }
        enc.key(name)?;
        path.push('.');
        path.push_str(name);
        let mut field = ptr::null_mut();
        check(sys::napi_get_property(env, v, key, &mut field), "reading a field")?;
        encode(env, tag_fn, field, enc, path, depth + 1)?;
        path.truncate(base);
    }
    Ok(())
}

/// `Object.prototype.toString`, looked up once per walk.
unsafe fn object_to_string(env: sys::napi_env) -> Result<sys::napi_value, Error> {
    let mut global = ptr::null_mut();
    check(sys::napi_get_global(env, &mut global), "reading the global object")?;
    let mut object = ptr::null_mut();
    check(sys::napi_get_named_property(env, global, c"Object".as_ptr(), &mut object), "reading Object")?;
    let mut proto = ptr::null_mut();
    check(sys::napi_get_named_property(env, object, c"prototype".as_ptr(), &mut proto), "reading Object.prototype")?;
    let mut to_string = ptr::null_mut();
    check(sys::napi_get_named_property(env, proto, c"toString".as_ptr(), &mut to_string), "reading toString")?;
    Ok(to_string)
}

/// `Object.prototype.toString.call(v)`, e.g. `[object Map]`. Not secret: a type tag.
unsafe fn to_string_tag(
    env: sys::napi_env,
    tag_fn: sys::napi_value,
    v: sys::napi_value,
    buf: &mut [u8; 64],
) -> Result<&str, Error> {
    let mut out = ptr::null_mut();
    check(sys::napi_call_function(env, v, tag_fn, 0, ptr::null(), &mut out), "reading a type tag")?;
    let mut written = 0usize;
    check(
        sys::napi_get_value_string_utf8(env, out, buf.as_mut_ptr() as *mut c_char, buf.len(), &mut written),
        "reading a type tag",
    )?;
    Ok(std::str::from_utf8(&buf[..written]).unwrap_or(""))
}

/// Builds fresh JS values from decoded shares (on the JS thread).
pub unsafe fn build(env: sys::napi_env, v: &Value<'_>) -> Result<sys::napi_value, Error> {
    let mut out = ptr::null_mut();
    match v {
        Value::Null => check(sys::napi_get_null(env, &mut out), "creating null")?,
        Value::Undefined => check(sys::napi_get_undefined(env, &mut out), "creating undefined")?,
        Value::Bool(b) => check(sys::napi_get_boolean(env, *b, &mut out), "creating a boolean")?,
        Value::Number(n) => check(sys::napi_create_double(env, *n, &mut out), "creating a number")?,
        Value::Str(s) => check(
            sys::napi_create_string_utf8(env, s.as_ptr() as *const c_char, s.len() as isize, &mut out),
            "creating a string",
        )?,
        Value::Bytes(b) => {
            let mut data: *mut std::ffi::c_void = ptr::null_mut();
            let mut ab = ptr::null_mut();
            check(sys::napi_create_arraybuffer(env, b.len(), &mut data, &mut ab), "creating an ArrayBuffer")?;
            if !b.is_empty() && !data.is_null() {
                ptr::copy_nonoverlapping(b.as_ptr(), data as *mut u8, b.len());
            }
            check(
                sys::napi_create_typedarray(env, sys::TypedarrayType::uint8_array, b.len(), ab, 0, &mut out),
                "creating a Uint8Array",
            )?;
        }
        Value::Array(items) => {
            let js = items.iter().map(|item| build(env, item)).collect::<Result<Vec<_>, _>>()?;
            out = define_array(env, &js)?;
        }
        Value::Object(fields) => {
            let js = fields.iter().map(|(k, item)| Ok((*k, build(env, item)?))).collect::<Result<Vec<_>, Error>>()?;
            out = define_object(env, &js)?;
        }
    }
    Ok(out)
}

/// A hydrated wallet on its way to JS: `{ metadata: string, shares: ServerKeyShare[] }`. The
/// plaintext buffer is zeroized when this is dropped, right after the JS objects are built.
pub struct HydratedOutput(pub sharevault_core::Hydrated);

impl TypeName for HydratedOutput {
    fn type_name() -> &'static str {
        "NativeHydrated"
    }
    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl ToNapiValue for HydratedOutput {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let h = val.0;
        let doc = shares::decode(&h.shares).map_err(to_napi)?;
        let shares_js = build(env, &doc).map_err(to_napi)?;
        drop(doc);
        let meta = String::to_napi_value(env, h.metadata_json)?;
        let generation = f64::to_napi_value(env, h.generation as f64)?;
        define_object(env, &[("metadata", meta), ("shares", shares_js), ("generation", generation)]).map_err(to_napi)
        // `h.shares` (the plaintext) is zeroized here, when it goes out of scope.
    }
}

/// A secret the caller passes as a string or bytes (a PEM key, a webhook secret), read straight
/// into zeroizing memory: a string as its UTF-8, a `Uint8Array` (or `Buffer`) as its bytes.
pub struct SecretInput(pub SecretBuf);

impl TypeName for SecretInput {
    fn type_name() -> &'static str {
        "string | Uint8Array"
    }
    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl ValidateNapiValue for SecretInput {}

impl FromNapiValue for SecretInput {
    unsafe fn from_napi_value(env: sys::napi_env, v: sys::napi_value) -> napi::Result<Self> {
        read_secret(env, v).map(SecretInput).map_err(to_napi)
    }
}

unsafe fn read_secret(env: sys::napi_env, v: sys::napi_value) -> Result<SecretBuf, Error> {
    read_input(env, v, usize::MAX, |why| Error::new(sharevault_core::ErrorCode::InvalidInput, why))
}

/// Where `read_input` puts what it reads: zeroizing memory for a secret, a plain `Vec` for bytes
/// that are not.
trait InputBuf: Sized {
    /// `len` bytes (and the NUL N-API writes after a string), filled by `fill`, which says how
    /// many it wrote.
    fn filled(len: usize, fill: impl FnOnce(&mut [u8]) -> Result<usize, Error>) -> Result<Self, Error>;
    fn copied(bytes: &[u8]) -> Self;
}

impl InputBuf for SecretBuf {
    fn filled(len: usize, fill: impl FnOnce(&mut [u8]) -> Result<usize, Error>) -> Result<Self, Error> {
        let mut buf = SecretBuf::with_capacity(len + 1);
        let n = fill(buf.append_uninit(len + 1))?;
        buf.truncate(n);
        Ok(buf)
    }
    fn copied(bytes: &[u8]) -> Self {
        let mut buf = SecretBuf::with_capacity(bytes.len());
        buf.extend_from_slice(bytes);
        buf
    }
}

impl InputBuf for Vec<u8> {
    fn filled(len: usize, fill: impl FnOnce(&mut [u8]) -> Result<usize, Error>) -> Result<Self, Error> {
        let mut buf = vec![0u8; len + 1];
        let n = fill(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }
    fn copied(bytes: &[u8]) -> Self {
        bytes.to_vec()
    }
}

/// A string (as its UTF-8) or a `Uint8Array` (as its bytes), at most `max` bytes, read straight
/// into `B`; anything else, or anything larger, is refused with what `refuse` makes of why.
unsafe fn read_input<B: InputBuf>(
    env: sys::napi_env,
    v: sys::napi_value,
    max: usize,
    refuse: impl Fn(&str) -> Error,
) -> Result<B, Error> {
    let too_large = || refuse(&format!("is larger than {} MiB", max >> 20));
    let mut t = 0;
    check(sys::napi_typeof(env, v, &mut t), "reading an input's type")?;
    if t == sys::ValueType::napi_string {
        let mut len = 0usize;
        check(sys::napi_get_value_string_utf8(env, v, ptr::null_mut(), 0, &mut len), "sizing a string")?;
        if len > max {
            return Err(too_large());
        }
        return B::filled(len, |room| {
            let mut written = 0usize;
            check(
                sys::napi_get_value_string_utf8(env, v, room.as_mut_ptr() as *mut c_char, len + 1, &mut written),
                "reading a string",
            )?;
            Ok(written)
        });
    }
    let mut is_typed = false;
    check(sys::napi_is_typedarray(env, v, &mut is_typed), "checking a typed array")?;
    if is_typed {
        let (mut kind, mut length, mut data, mut ab, mut offset) =
            (0, 0usize, ptr::null_mut(), ptr::null_mut(), 0usize);
        check(
            sys::napi_get_typedarray_info(env, v, &mut kind, &mut length, &mut data, &mut ab, &mut offset),
            "reading a typed array",
        )?;
        if kind == sys::TypedarrayType::uint8_array {
            if length > max {
                return Err(too_large());
            }
            if length == 0 || data.is_null() {
                return Ok(B::copied(&[]));
            }
            return Ok(B::copied(std::slice::from_raw_parts(data as *const u8, length)));
        }
    }
    Err(refuse("must be a string or a Uint8Array"))
}

/// Bytes that are not secret (a webhook's raw body: its secrets are encrypted), copied.
pub struct BytesInput(pub Vec<u8>);

impl TypeName for BytesInput {
    fn type_name() -> &'static str {
        "Uint8Array"
    }
    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl ValidateNapiValue for BytesInput {}

impl FromNapiValue for BytesInput {
    /// Into a plain `Vec` (no locked pages for a body anyone can send), at most `MAX_BYTES`.
    unsafe fn from_napi_value(env: sys::napi_env, v: sys::napi_value) -> napi::Result<Self> {
        read_bytes(env, v).map(BytesInput).map_err(to_napi)
    }
}

impl BytesInput {
    /// Larger inputs are refused before they are copied (a webhook body is at most 4 MiB).
    pub const MAX_BYTES: usize = sharevault_core::delegation::MAX_BODY_BYTES;
}

unsafe fn read_bytes(env: sys::napi_env, v: sys::napi_value) -> Result<Vec<u8>, Error> {
    read_input(env, v, BytesInput::MAX_BYTES, |why| Error::invalid("rawBody", why))
}

/// A hydrated delegation on its way to JS: `{ info: string, secrets: { keyShare, walletApiKey } }`;
/// the plaintext is zeroized as soon as the JS values are built.
pub struct DelegationOutput(pub sharevault_core::vault::delegations::HydratedDelegation);

impl TypeName for DelegationOutput {
    fn type_name() -> &'static str {
        "NativeHydratedDelegation"
    }
    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl ToNapiValue for DelegationOutput {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let h = val.0;
        let doc = shares::decode(&h.secrets).map_err(to_napi)?;
        let secrets = build(env, &doc).map_err(to_napi)?;
        drop(doc);
        let info = serde_json::to_string(&h.info).map_err(|_| to_napi(Error::internal("serializing a delegation")))?;
        let info = String::to_napi_value(env, info)?;
        define_object(env, &[("info", info), ("secrets", secrets)]).map_err(to_napi)
    }
}
