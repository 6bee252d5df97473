//! Small pieces shared by the modules that talk N-API directly.

use napi::bindgen_prelude::{FromNapiValue, TypeName, ValidateNapiValue, ValueType};
use napi::sys;
use sharevault_core::Error;

/// An N-API status as a core error (no secret: it only names what was being done).
pub fn check(status: sys::napi_status, what: &str) -> Result<(), Error> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(Error::internal(format!("N-API failed while {what}")))
    }
}

/// After an N-API call on a caller's value failed: if JavaScript threw (a getter, a Proxy trap,
/// a revoked Proxy), the exception is cleared (its message is the caller's code's, never shown)
/// and the failure is bad input at `path`; any other failure stands as it was.
///
/// # Safety
/// `env` must be the live environment of the current JS thread.
pub unsafe fn thrown_at(env: sys::napi_env, path: &str, err: Error) -> Error {
    let mut pending = false;
    if sys::napi_is_exception_pending(env, &mut pending) == sys::Status::napi_ok && pending {
        let mut exception = std::ptr::null_mut();
        sys::napi_get_and_clear_last_exception(env, &mut exception);
        return Error::invalid(path, "could not be read: a getter or Proxy trap threw (pass plain data)");
    }
    err
}

/// A JS value passed through untouched, for code that reads it with raw N-API calls (options
/// objects, read as own properties only).
pub struct RawValue(pub sys::napi_value);

impl TypeName for RawValue {
    fn type_name() -> &'static str {
        "unknown"
    }
    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl ValidateNapiValue for RawValue {}

impl FromNapiValue for RawValue {
    unsafe fn from_napi_value(_env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        Ok(RawValue(value))
    }
}
