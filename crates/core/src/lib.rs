//! sharevault-core: the vault in plain Rust (no napi). See `../../DESIGN.md` in the shared docs.

pub mod audit;
pub mod envelope;
pub mod error;
pub mod kms;
pub mod model;
pub mod secret;
pub mod shares;
pub mod store;
pub mod vault;

pub use error::{Error, ErrorCode, Result};
pub use secret::{DataKey, SecretBuf};
pub use vault::{Hydrated, Vault};

use std::sync::Arc;

/// Which key-encryption key to use.
pub enum KmsConfig {
    /// A 32-byte key held in memory (development only).
    Local(DataKey),
}

/// Everything `Vault::open` needs.
pub struct OpenConfig {
    pub database: String,
    pub environment: String,
    pub actor: Option<String>,
    pub kms: KmsConfig,
}

/// Opens a vault: storage (created and migrated if needed) and key wrapping.
pub async fn open(config: OpenConfig) -> Result<Vault> {
    vault::check_environment(&config.environment)?;
    let location = store::sqlite::Location::parse(&config.database)?;
    let kms: Arc<dyn kms::KeyWrapper> = match config.kms {
        KmsConfig::Local(key) => Arc::new(kms::local::LocalKek::new(key)),
    };
    let store = tokio::task::spawn_blocking(move || store::sqlite::SqliteStore::open(location))
        .await
        .map_err(|_| Error::internal("opening the database panicked"))??;
    Vault::new(Arc::new(store), kms, &config.environment, config.actor.as_deref())
}
