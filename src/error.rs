//! Maps core errors to JavaScript errors. The facade turns them into `VaultError`s: the reason
//! carries the stable code, message and path as JSON (never a secret: core messages hold none).

use sharevault_core::Error;

/// Marker the facade looks for at the start of a native error's message.
pub const PREFIX: &str = "sharevault:";

pub fn to_napi(e: Error) -> napi::Error {
    let body = serde_json::json!({ "code": e.code.as_str(), "message": e.message, "path": e.path });
    napi::Error::new(napi::Status::GenericFailure, format!("{PREFIX}{body}"))
}

pub trait IntoNapi<T> {
    fn napi(self) -> napi::Result<T>;
}

impl<T> IntoNapi<T> for sharevault_core::Result<T> {
    fn napi(self) -> napi::Result<T> {
        self.map_err(to_napi)
    }
}
