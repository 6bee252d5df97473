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
