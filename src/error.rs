//! Maps core errors to JavaScript errors. The facade turns them into `VaultError`s: the reason
//! carries the stable code, message and path as JSON (never a secret: core messages hold none).

use napi_derive::napi;
use sharevault_core::error::ErrorCode as Code;
use sharevault_core::Error;

/// Marker the facade looks for at the start of a native error's message.
pub const PREFIX: &str = "sharevault:";

/// The stable error codes, exported to JavaScript (and to `index.d.ts`, where the facade's
/// `VaultErrorCode` type is derived from it). Match on these, never on messages.
#[napi(string_enum = "UPPER_SNAKE")]
pub enum ErrorCode {
    /// No wallet is stored for that address.
    ErrNotFound,
    /// Bad input; `path` names the field. Nothing was written.
    ErrInvalidInput,
    /// A stored record, its wrapped key, or the facts it is bound to were changed or moved.
    ErrTampered,
    /// The key service did not answer in time (retries included).
    ErrKmsUnavailable,
    /// The key service refused, or the record names a key this vault does not trust.
    ErrKmsDenied,
    /// The wallet belongs to another environment than this vault's.
    ErrEnvironmentMismatch,
    /// The address is already stored, or the wallet kept changing under a write.
    ErrConflict,
    /// The operation is not allowed.
    ErrForbidden,
    /// The vault is closed.
    ErrClosed,
    /// The database failed; the write was not acknowledged.
    ErrStorage,
    /// The database cannot be reached or cannot write (down, connection lost, disk full);
    /// nothing was acknowledged; retry once it is back.
    ErrDbUnavailable,
    /// New shares (after a refresh or reshare, or a new wallet) could not be written; the error's
    /// `sealed` holds them, sealed by the vault: keep it and pass it to `vault.recoverSealed()`.
    ErrUnpersistedShares,
    /// A webhook whose signature is missing, malformed or wrong: nothing was read or stored.
    ErrWebhookSignature,
    /// A correctly signed webhook older than the allowed age (or from the future): not stored.
    ErrWebhookExpired,
    /// A defect in sharevault itself.
    ErrInternal,
}

impl From<Code> for ErrorCode {
    /// Exhaustive, so a code added to the core does not compile until it is exported here.
    fn from(c: Code) -> ErrorCode {
        match c {
            Code::NotFound => ErrorCode::ErrNotFound,
            Code::InvalidInput => ErrorCode::ErrInvalidInput,
            Code::Tampered => ErrorCode::ErrTampered,
            Code::KmsUnavailable => ErrorCode::ErrKmsUnavailable,
            Code::KmsDenied => ErrorCode::ErrKmsDenied,
            Code::EnvironmentMismatch => ErrorCode::ErrEnvironmentMismatch,
            Code::Conflict => ErrorCode::ErrConflict,
            Code::Forbidden => ErrorCode::ErrForbidden,
            Code::Closed => ErrorCode::ErrClosed,
            Code::Storage => ErrorCode::ErrStorage,
            Code::DbUnavailable => ErrorCode::ErrDbUnavailable,
            Code::UnpersistedShares => ErrorCode::ErrUnpersistedShares,
            Code::BadSignature => ErrorCode::ErrWebhookSignature,
            Code::WebhookExpired => ErrorCode::ErrWebhookExpired,
            Code::Internal => ErrorCode::ErrInternal,
        }
    }
}

pub fn to_napi(e: Error) -> napi::Error {
    let body = serde_json::json!({ "code": e.code.as_str(), "message": e.message, "path": e.path });
    napi::Error::new(napi::Status::GenericFailure, format!("{PREFIX}{body}"))
}
