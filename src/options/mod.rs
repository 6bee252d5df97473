//! Reading option objects passed from JavaScript: own properties only, so a polluted
//! `Object.prototype` (a careless deep merge setting `Object.prototype.endpoint`, say) can never
//! supply a value; JS types checked here with the option's path in the error; every rule and
//! range lives in the core, which gets typed values. Each key provider's options are read by
//! its own function in `kms`, beside the core type they build.

pub mod kms;

use crate::audit_sink::Sink;
use crate::raw::{check, thrown_at};
use napi::sys;
use sharevault_core::kms::cache::CacheConfig;
use sharevault_core::permissions::Permissions;
use sharevault_core::store::postgres::PoolConfig;
use sharevault_core::store::{Migrations, StoreOptions};
use sharevault_core::{Error, OpenConfig, Result, SecretBuf};
use std::os::raw::c_char;
use std::ptr;
use std::sync::Arc;

/// A JS object and its path in the options (`kms`, `cache`).
pub struct Obj {
    env: sys::napi_env,
    value: sys::napi_value,
    path: String,
}

fn type_of(env: sys::napi_env, v: sys::napi_value) -> Result<sys::napi_valuetype> {
    let mut t = 0;
    // SAFETY: `env` and `v` are live handles of the current call on the JS thread.
    check(unsafe { sys::napi_typeof(env, v, &mut t) }, "reading an option's type")?;
    Ok(t)
}

/// A JS string as a Rust string (options are not secret, except credentials, which the AWS SDK
/// takes as `String`s anyway).
fn string_of(env: sys::napi_env, v: sys::napi_value) -> Result<String> {
    let mut len = 0usize;
    // SAFETY: as above; the buffer has room for `len` bytes and the NUL N-API writes.
    unsafe {
        check(sys::napi_get_value_string_utf8(env, v, ptr::null_mut(), 0, &mut len), "sizing an option")?;
        let mut buf = vec![0u8; len + 1];
        let mut written = 0usize;
        check(
            sys::napi_get_value_string_utf8(env, v, buf.as_mut_ptr() as *mut c_char, buf.len(), &mut written),
            "reading an option",
        )?;
        buf.truncate(written);
        String::from_utf8(buf).map_err(|_| Error::internal("an option was not UTF-8"))
    }
}

impl Obj {
    /// `value` as an options object at `path`, or `ERR_INVALID_INPUT` if it is not an object.
    pub fn new(env: sys::napi_env, value: sys::napi_value, path: &str, what: &str) -> Result<Obj> {
        if type_of(env, value)? != sys::ValueType::napi_object {
            return Err(Error::invalid(path, format!("must be {what}")));
        }
        Ok(Obj { env, value, path: path.to_string() })
    }

    pub fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value of an own property; `None` when it is absent, `undefined` or `null`. Inherited
    /// properties are never read.
    pub fn get(&self, key: &str) -> Result<Option<sys::napi_value>> {
        let env = self.env;
        let mut name = ptr::null_mut();
        let mut own = false;
        let mut v = ptr::null_mut();
        // SAFETY: live handles on the JS thread; `key` is a Rust string of known length.
        unsafe {
            check(
                sys::napi_create_string_utf8(env, key.as_ptr() as *const c_char, key.len() as isize, &mut name),
                "naming an option",
            )?;
            // A getter or Proxy trap that throws (or a revoked Proxy) is bad input at this option.
            check(sys::napi_has_own_property(env, self.value, name, &mut own), "checking an option")
                .map_err(|e| thrown_at(env, &self.path_of(key), e))?;
            if !own {
                return Ok(None);
            }
            check(sys::napi_get_property(env, self.value, name, &mut v), "reading an option")
                .map_err(|e| thrown_at(env, &self.path_of(key), e))?;
        }
        match type_of(env, v)? {
            sys::ValueType::napi_undefined | sys::ValueType::napi_null => Ok(None),
            _ => Ok(Some(v)),
        }
    }

    pub fn string(&self, key: &str) -> Result<Option<String>> {
        match self.get(key)? {
            None => Ok(None),
            Some(v) if type_of(self.env, v)? == sys::ValueType::napi_string => string_of(self.env, v).map(Some),
            Some(_) => Err(Error::invalid(self.path_of(key), "must be a string")),
        }
    }

    /// A function (`None` when absent).
    pub fn function(&self, key: &str) -> Result<Option<sys::napi_value>> {
        let Some(v) = self.get(key)? else { return Ok(None) };
        if type_of(self.env, v)? != sys::ValueType::napi_function {
            return Err(Error::invalid(self.path_of(key), "must be a function"));
        }
        Ok(Some(v))
    }

    pub fn boolean(&self, key: &str) -> Result<Option<bool>> {
        let Some(v) = self.get(key)? else { return Ok(None) };
        if type_of(self.env, v)? != sys::ValueType::napi_boolean {
            return Err(Error::invalid(self.path_of(key), "must be a boolean"));
        }
        let mut b = false;
        // SAFETY: live handles on the JS thread.
        check(unsafe { sys::napi_get_value_bool(self.env, v, &mut b) }, "reading a boolean")?;
        Ok(Some(b))
    }

    /// An array of strings (`None` when absent); each element is read by index, so a holey or
    /// non-string element is `ERR_INVALID_INPUT` at `key[i]`.
    /// The elements of an array property (at most 64), each with its path (`allow[2]`); a hole
    /// is `None`. `what` names the array's elements for the error of a non-array.
    fn elements(&self, key: &str, what: &str) -> Result<Option<Vec<Element>>> {
        let Some(v) = self.get(key)? else { return Ok(None) };
        let env = self.env;
        let mut is_array = false;
        // SAFETY: live handles on the JS thread.
        check(unsafe { sys::napi_is_array(env, v, &mut is_array) }, "checking an array")
            .map_err(|e| unsafe { thrown_at(env, &self.path_of(key), e) })?;
        if !is_array {
            return Err(Error::invalid(self.path_of(key), format!("must be an array of {what}")));
        }
        let mut len = 0u32;
        check(unsafe { sys::napi_get_array_length(env, v, &mut len) }, "reading an array's length")
            .map_err(|e| unsafe { thrown_at(env, &self.path_of(key), e) })?;
        if len > 64 {
            return Err(Error::invalid(self.path_of(key), "has more than 64 entries"));
        }
        let mut out = Vec::with_capacity(len as usize);
        for i in 0..len {
            let mut has = false;
            let mut item = ptr::null_mut();
            // SAFETY: live handles on the JS thread; own elements only, as for properties.
            let at = format!("{}[{i}]", self.path_of(key));
            unsafe {
                check(sys::napi_has_element(env, v, i, &mut has), "checking an element")
                    .map_err(|e| thrown_at(env, &at, e))?;
                if has {
                    check(sys::napi_get_element(env, v, i, &mut item), "reading an element")
                        .map_err(|e| thrown_at(env, &at, e))?;
                }
            }
            out.push((at, has.then_some(item)));
        }
        Ok(Some(out))
    }

    pub fn string_array(&self, key: &str) -> Result<Option<Vec<String>>> {
        let Some(items) = self.elements(key, "strings")? else { return Ok(None) };
        let mut out = Vec::with_capacity(items.len());
        for (at, item) in items {
            match item {
                Some(item) if type_of(self.env, item)? == sys::ValueType::napi_string => {
                    out.push(string_of(self.env, item)?)
                }
                _ => return Err(Error::invalid(at, "must be a string")),
            }
        }
        Ok(Some(out))
    }

    /// An array of option objects, each read at its own path (`kms.previous[0]`).
    pub fn object_array(&self, key: &str, what: &str) -> Result<Option<Vec<Obj>>> {
        let Some(items) = self.elements(key, what)? else { return Ok(None) };
        let mut out = Vec::with_capacity(items.len());
        for (at, item) in items {
            match item {
                Some(item) => out.push(Obj::new(self.env, item, &at, what)?),
                None => return Err(Error::invalid(at, format!("must be {what}"))),
            }
        }
        Ok(Some(out))
    }

    pub fn required_string(&self, key: &str) -> Result<String> {
        self.string(key)?.ok_or_else(|| Error::invalid(self.path_of(key), "is required"))
    }

    /// A whole number from 0 to 2^53 − 1; ranges are the core's to check.
    pub fn integer(&self, key: &str) -> Result<Option<u64>> {
        let Some(v) = self.get(key)? else { return Ok(None) };
        if type_of(self.env, v)? != sys::ValueType::napi_number {
            return Err(Error::invalid(self.path_of(key), "must be a number"));
        }
        let mut n = 0f64;
        // SAFETY: live handles on the JS thread.
        check(unsafe { sys::napi_get_value_double(self.env, v, &mut n) }, "reading a number")?;
        whole(n).map(Some).ok_or_else(|| Error::invalid(self.path_of(key), "must be a non-negative whole number"))
    }

    /// A nested options object (`None` when absent), or `false` (`Some(None)` is never returned:
    /// see [`Obj::object_or_false`]).
    pub fn object(&self, key: &str, what: &str) -> Result<Option<Obj>> {
        match self.get(key)? {
            None => Ok(None),
            Some(v) => Obj::new(self.env, v, &self.path_of(key), what).map(Some),
        }
    }

    /// `false` → `Ok(Some(None))`; an object → `Ok(Some(Some(obj)))`; absent → `Ok(None)`.
    pub fn object_or_false(&self, key: &str, what: &str) -> Result<Option<Option<Obj>>> {
        let Some(v) = self.get(key)? else { return Ok(None) };
        if type_of(self.env, v)? == sys::ValueType::napi_boolean {
            let mut b = true;
            // SAFETY: live handles on the JS thread.
            check(unsafe { sys::napi_get_value_bool(self.env, v, &mut b) }, "reading a boolean")?;
            if !b {
                return Ok(Some(None));
            }
        }
        Obj::new(self.env, v, &self.path_of(key), what).map(|o| Some(Some(o)))
    }

    /// The bytes of a `Uint8Array`/`Buffer` property, copied into `out` (which the caller
    /// zeroizes), or the string, if it is one. For key material.
    pub fn bytes_or_string(&self, key: &str) -> Result<Option<BytesOrString>> {
        let Some(v) = self.get(key)? else { return Ok(None) };
        let env = self.env;
        if type_of(env, v)? == sys::ValueType::napi_string {
            return string_of(env, v).map(|s| Some(BytesOrString::String(zeroize::Zeroizing::new(s))));
        }
        let mut is_typed = false;
        // SAFETY: live handles on the JS thread; the slice is read before any JS runs again.
        unsafe {
            check(sys::napi_is_typedarray(env, v, &mut is_typed), "checking a typed array")?;
            if is_typed {
                let (mut kind, mut len, mut data, mut ab, mut off) = (0, 0usize, ptr::null_mut(), ptr::null_mut(), 0);
                check(
                    sys::napi_get_typedarray_info(env, v, &mut kind, &mut len, &mut data, &mut ab, &mut off),
                    "reading a typed array",
                )?;
                if kind == sys::TypedarrayType::uint8_array {
                    let bytes = if len == 0 || data.is_null() {
                        Vec::new()
                    } else {
                        std::slice::from_raw_parts(data as *const u8, len).to_vec()
                    };
                    return Ok(Some(BytesOrString::Bytes(zeroize::Zeroizing::new(bytes))));
                }
            }
        }
        Err(Error::invalid(self.path_of(key), "must be a Buffer, a Uint8Array or a string"))
    }
}

/// An array element with its path; `None` for a hole.
type Element = (String, Option<sys::napi_value>);

pub enum BytesOrString {
    Bytes(zeroize::Zeroizing<Vec<u8>>),
    String(zeroize::Zeroizing<String>),
}

/// A JS number that is a whole number from 0 to 2^53 − 1.
pub fn whole(n: f64) -> Option<u64> {
    (n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0).then_some(n as u64)
}

/// Reads `Vault.open`'s options; with `onAudit`, also the sink made for it (created last, once
/// every other option is valid).
pub fn open_config(env: sys::napi_env, options: sys::napi_value) -> Result<(OpenConfig, Option<Arc<Sink>>)> {
    let o = Obj::new(env, options, "options", "an object such as { database, environment, kms }")?;
    // The root's fields are named on their own: `database`, `kms.keyId`.
    let o = Obj { path: String::new(), ..o };
    let database = o.required_string("database")?;
    let environment = o.required_string("environment")?;
    let actor = o.string("actor")?;
    let kms_opts = o
        .object("kms", "an object such as { provider: 'local', key }")?
        .ok_or_else(|| Error::invalid("kms", "is required"))?;
    let keys = kms::config(&kms_opts)?;
    let cache = match o.object_or_false("cache", "false or { maxEntries?, maxAgeMs?, maxUses? }")? {
        Some(None) => None,
        None => Some(CacheConfig::default()),
        Some(Some(c)) => Some(cache_config(&c)?),
    };
    let store = store_options(&o)?;
    let allow = match o.string_array("allow")? {
        None => Permissions::default(),
        Some(list) => Permissions::parse(&list)?,
    };
    let harden_process = o.boolean("hardenProcess")?.unwrap_or(false);
    let delegation_key = match o.object("delegation", "an object such as { privateKeyFile } or { privateKeyEnv }")? {
        None => None,
        Some(d) => delegation_key(&d)?,
    };
    let sink = match o.function("onAudit")? {
        // SAFETY: `env` and the function are this call's, on the JS thread.
        Some(f) => Some(unsafe { crate::audit_sink::create(env, f) }?),
        None => None,
    };
    let audit_sink = sink.clone().map(|s| s as Arc<dyn sharevault_core::audit::AuditSink>);
    let config = OpenConfig {
        database,
        environment,
        actor,
        kms: keys.primary,
        previous_kms: keys.previous,
        local_in_production: keys.local_in_production,
        cache,
        store,
        allow,
        harden_process,
        audit_sink,
        delegation_key,
    };
    Ok((config, sink))
}

/// `delegation`: where the webhooks' RSA private key is, when it is not imported into the vault:
/// a PEM file (`privateKeyFile`) or an environment variable holding the PEM (`privateKeyEnv`).
/// Read straight into zeroizing memory; parsed (and refused, at its path) by the core.
fn delegation_key(d: &Obj) -> Result<Option<(SecretBuf, String)>> {
    let file = d.string("privateKeyFile")?;
    let var = d.string("privateKeyEnv")?;
    match (file, var) {
        (Some(_), Some(_)) => {
            Err(Error::invalid(d.path_of("privateKeyFile"), "give privateKeyFile or privateKeyEnv, not both"))
        }
        (Some(f), None) => {
            let path = d.path_of("privateKeyFile");
            let bytes = std::fs::read(&f).map_err(|e| Error::invalid(path.clone(), format!("cannot be read: {e}")))?;
            Ok(Some((SecretBuf::from_vec(bytes), path)))
        }
        (None, Some(v)) => {
            let path = d.path_of("privateKeyEnv");
            let value = std::env::var_os(&v)
                .ok_or_else(|| Error::invalid(path.clone(), format!("names {v:?}, which is not set")))?;
            Ok(Some((SecretBuf::from_vec(value.into_encoded_bytes()), path)))
        }
        (None, None) => Ok(None),
    }
}

/// The storage options shared by `Vault.open` and `migrate`: `pool`, `allowInsecureTransport`,
/// `allowTls12`, `migrate`.
fn store_options(o: &Obj) -> Result<StoreOptions> {
    let pool = match o.object("pool", "an object such as { maxConnections, acquireTimeoutMs, statementTimeoutMs }")? {
        None => PoolConfig::default(),
        Some(p) => PoolConfig::from_options(
            p.integer("maxConnections")?,
            p.integer("acquireTimeoutMs")?,
            p.integer("statementTimeoutMs")?,
        )?,
    };
    let allow_insecure_transport = o.boolean("allowInsecureTransport")?.unwrap_or(false);
    let allow_tls12 = o.boolean("allowTls12")?.unwrap_or(false);
    let migrations = match o.boolean("migrate")? {
        Some(false) => Migrations::Never,
        _ => Migrations::OnOpen,
    };
    Ok(StoreOptions { allow_insecure_transport, allow_tls12, pool, migrations })
}

/// Reads `migrate()`'s options: `database` and the storage options.
pub fn migrate_config(env: sys::napi_env, options: sys::napi_value) -> Result<(String, StoreOptions)> {
    let o = Obj::new(env, options, "options", "an object such as { database }")?;
    let o = Obj { path: String::new(), ..o };
    let database = o.required_string("database")?;
    let store = store_options(&o)?;
    Ok((database, store))
}

fn cache_config(c: &Obj) -> Result<CacheConfig> {
    CacheConfig::from_options(c.integer("maxEntries")?, c.integer("maxAgeMs")?, c.integer("maxUses")?)
}
