//! Building result objects for JavaScript with define semantics (`napi_define_properties`), never
//! with `[[Set]]` (`napi_set_property`/`napi_set_element`): a setter that a careless deep merge
//! or a hostile dependency put on `Object.prototype` (or `Array.prototype`) for `secretShare`,
//! `actor` or `0` must never run, see a value, or keep it from reaching the caller.

use crate::raw::check;
use napi::bindgen_prelude::{ToNapiValue, TypeName, ValueType};
use napi::sys;
use sharevault_core::Error;
use std::collections::HashMap;
use std::os::raw::c_char;
use std::ptr;

const DATA: sys::napi_property_attributes =
    sys::PropertyAttributes::writable | sys::PropertyAttributes::enumerable | sys::PropertyAttributes::configurable;

unsafe fn js_string(env: sys::napi_env, s: &str) -> Result<sys::napi_value, Error> {
    let mut out = ptr::null_mut();
    check(
        sys::napi_create_string_utf8(env, s.as_ptr() as *const c_char, s.len() as isize, &mut out),
        "creating a string",
    )?;
    Ok(out)
}

unsafe fn define(
    env: sys::napi_env,
    target: sys::napi_value,
    entries: &[(sys::napi_value, sys::napi_value)],
) -> Result<(), Error> {
    let descriptors: Vec<sys::napi_property_descriptor> = entries
        .iter()
        .map(|&(name, value)| sys::napi_property_descriptor {
            utf8name: ptr::null(),
            name,
            method: None,
            getter: None,
            setter: None,
            value,
            attributes: DATA,
            data: ptr::null_mut(),
        })
        .collect();
    if descriptors.is_empty() {
        return Ok(());
    }
    check(sys::napi_define_properties(env, target, descriptors.len(), descriptors.as_ptr()), "defining fields")
}

/// A fresh plain object with these own data properties, defined in order.
///
/// # Safety
/// On the JS thread, with `env` and the values live in the current handle scope.
pub unsafe fn define_object(env: sys::napi_env, fields: &[(&str, sys::napi_value)]) -> Result<sys::napi_value, Error> {
    let mut obj = ptr::null_mut();
    check(sys::napi_create_object(env, &mut obj), "creating an object")?;
    let entries = fields.iter().map(|&(k, v)| Ok((js_string(env, k)?, v))).collect::<Result<Vec<_>, Error>>()?;
    define(env, obj, &entries)?;
    Ok(obj)
}

/// A fresh array holding `items`, its elements defined (index keys), not assigned.
///
/// # Safety
/// As [`define_object`].
pub unsafe fn define_array(env: sys::napi_env, items: &[sys::napi_value]) -> Result<sys::napi_value, Error> {
    let mut arr = ptr::null_mut();
    check(sys::napi_create_array_with_length(env, items.len(), &mut arr), "creating an array")?;
    let entries = items
        .iter()
        .enumerate()
        .map(|(i, &v)| Ok((js_string(env, &i.to_string())?, v)))
        .collect::<Result<Vec<_>, Error>>()?;
    define(env, arr, &entries)?;
    Ok(arr)
}

/// Values that become a JS result with define semantics (see the module doc).
pub trait ToJs {
    /// # Safety
    /// On the JS thread, inside a handle scope.
    unsafe fn to_js(self, env: sys::napi_env) -> Result<sys::napi_value, Error>;
}

impl ToJs for String {
    unsafe fn to_js(self, env: sys::napi_env) -> Result<sys::napi_value, Error> {
        js_string(env, &self)
    }
}

impl ToJs for f64 {
    unsafe fn to_js(self, env: sys::napi_env) -> Result<sys::napi_value, Error> {
        let mut out = ptr::null_mut();
        check(sys::napi_create_double(env, self, &mut out), "creating a number")?;
        Ok(out)
    }
}

impl ToJs for bool {
    unsafe fn to_js(self, env: sys::napi_env) -> Result<sys::napi_value, Error> {
        let mut out = ptr::null_mut();
        check(sys::napi_get_boolean(env, self, &mut out), "creating a boolean")?;
        Ok(out)
    }
}

impl ToJs for i64 {
    unsafe fn to_js(self, env: sys::napi_env) -> Result<sys::napi_value, Error> {
        (self as f64).to_js(env)
    }
}

impl<T: ToJs> ToJs for Option<T> {
    unsafe fn to_js(self, env: sys::napi_env) -> Result<sys::napi_value, Error> {
        match self {
            Some(v) => v.to_js(env),
            None => {
                let mut out = ptr::null_mut();
                check(sys::napi_get_undefined(env, &mut out), "creating undefined")?;
                Ok(out)
            }
        }
    }
}

impl<T: ToJs> ToJs for Vec<T> {
    unsafe fn to_js(self, env: sys::napi_env) -> Result<sys::napi_value, Error> {
        let items = self.into_iter().map(|v| v.to_js(env)).collect::<Result<Vec<_>, Error>>()?;
        define_array(env, &items)
    }
}

impl<V: ToJs> ToJs for HashMap<String, V> {
    unsafe fn to_js(self, env: sys::napi_env) -> Result<sys::napi_value, Error> {
        let mut obj = ptr::null_mut();
        check(sys::napi_create_object(env, &mut obj), "creating an object")?;
        let entries = self
            .into_iter()
            .map(|(k, v)| Ok((js_string(env, &k)?, v.to_js(env)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        define(env, obj, &entries)?;
        Ok(obj)
    }
}

impl ToJs for () {
    unsafe fn to_js(self, env: sys::napi_env) -> Result<sys::napi_value, Error> {
        None::<f64>.to_js(env)
    }
}

/// `struct Name { field: Type, ... }` with a [`ToJs`] that defines each field under its
/// camelCase name: the struct and its JS shape written once. `#[napi(object)]` is kept on top
/// for the TypeScript declaration only; its own conversion assigns with `[[Set]]` and is unused.
macro_rules! js_object {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty => $js:literal),* $(,)? }) => {
        $(#[$meta])*
        pub struct $name { $($(#[$fmeta])* pub $field: $ty),* }

        impl $crate::out::ToJs for $name {
            unsafe fn to_js(self, env: napi::sys::napi_env) -> Result<napi::sys::napi_value, sharevault_core::Error> {
                let fields = [$(($js, $crate::out::ToJs::to_js(self.$field, env)?)),*];
                $crate::out::define_object(env, &fields)
            }
        }
    };
}
pub(crate) use js_object;

/// A value already built for JS, returned as is.
pub struct Built(pub sys::napi_value);

impl TypeName for Built {
    fn type_name() -> &'static str {
        "object"
    }
    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl ToNapiValue for Built {
    unsafe fn to_napi_value(_env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        Ok(val.0)
    }
}
