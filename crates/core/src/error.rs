//! Error kinds with stable codes. Messages carry context (which field, which wallet) and never
//! share material: nothing in this module ever formats a secret.

use std::fmt;

/// The stable codes a caller can match on. They are part of the public API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    NotFound,
    InvalidInput,
    Tampered,
    KmsUnavailable,
    KmsDenied,
    EnvironmentMismatch,
    Conflict,
    Forbidden,
    Closed,
    Storage,
    DbUnavailable,
    /// New shares (after a refresh or reshare, or a new wallet) could not be written; the error
    /// carries them sealed (raised by the SDK wrapper; written back by `recover_sealed`).
    UnpersistedShares,
    /// A webhook whose signature is missing, malformed or wrong: nothing was read or stored.
    BadSignature,
    /// A correctly signed webhook older than the tolerance (or from the future): not stored.
    WebhookExpired,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::NotFound,
        ErrorCode::InvalidInput,
        ErrorCode::Tampered,
        ErrorCode::KmsUnavailable,
        ErrorCode::KmsDenied,
        ErrorCode::EnvironmentMismatch,
        ErrorCode::Conflict,
        ErrorCode::Forbidden,
        ErrorCode::Closed,
        ErrorCode::Storage,
        ErrorCode::DbUnavailable,
        ErrorCode::UnpersistedShares,
        ErrorCode::BadSignature,
        ErrorCode::WebhookExpired,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "ERR_NOT_FOUND",
            ErrorCode::InvalidInput => "ERR_INVALID_INPUT",
            ErrorCode::Tampered => "ERR_TAMPERED",
            ErrorCode::KmsUnavailable => "ERR_KMS_UNAVAILABLE",
            ErrorCode::KmsDenied => "ERR_KMS_DENIED",
            ErrorCode::EnvironmentMismatch => "ERR_ENVIRONMENT_MISMATCH",
            ErrorCode::Conflict => "ERR_CONFLICT",
            ErrorCode::Forbidden => "ERR_FORBIDDEN",
            ErrorCode::Closed => "ERR_CLOSED",
            ErrorCode::Storage => "ERR_STORAGE",
            ErrorCode::DbUnavailable => "ERR_DB_UNAVAILABLE",
            ErrorCode::UnpersistedShares => "ERR_UNPERSISTED_SHARES",
            ErrorCode::BadSignature => "ERR_WEBHOOK_SIGNATURE",
            ErrorCode::WebhookExpired => "ERR_WEBHOOK_EXPIRED",
            ErrorCode::Internal => "ERR_INTERNAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A vault error: a stable code, a human message, and for bad input the path of the offending
/// field (`walletMetadata.addressType`, `externalServerKeyShares[1].secretShare`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub path: Option<String>,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error { code, message: message.into(), path: None }
    }

    /// Bad input at `path`. The message must describe the field, never echo a secret value.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Error { code: ErrorCode::InvalidInput, message: message.into(), path: Some(path.into()) }
    }

    pub fn not_found(address: &str) -> Self {
        Error::new(ErrorCode::NotFound, format!("no wallet is stored for address {address}"))
    }

    pub fn tampered(what: impl Into<String>) -> Self {
        Error::new(ErrorCode::Tampered, what)
    }

    pub fn closed() -> Self {
        Error::new(ErrorCode::Closed, "the vault is closed")
    }

    pub fn storage(context: &str, err: impl fmt::Display) -> Self {
        Error::new(ErrorCode::Storage, format!("{context}: {err}"))
    }

    /// The database cannot be reached or cannot write (connection lost, server down, pool
    /// exhausted past its acquire timeout, disk full, read-only file): nothing was acknowledged,
    /// and the call can be retried once the database is back.
    pub fn db_unavailable(context: &str, err: impl fmt::Display) -> Self {
        Error::new(ErrorCode::DbUnavailable, format!("{context}: {err}"))
    }

    pub fn internal(context: impl Into<String>) -> Self {
        Error::new(ErrorCode::Internal, context)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {} (at {})", self.code, self.message, p),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

impl std::error::Error for Error {}
