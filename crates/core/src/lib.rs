//! sharevault-core: the vault in plain Rust (no napi). See `../../DESIGN.md` in the shared docs.

pub mod audit;
pub mod envelope;
pub mod error;
pub mod kms;
pub mod model;
pub mod permissions;
pub mod secret;
pub mod shares;
pub mod stats;
pub mod store;
pub mod unpersisted;
pub mod vault;

pub use error::{Error, ErrorCode, Result};
pub use secret::{DataKey, SecretBuf};
pub use vault::{Hydrated, Vault};

use std::sync::Arc;

/// Which key-encryption key to use.
pub enum KmsConfig {
    /// A 32-byte key held in memory (development only).
    Local(DataKey),
    /// A key in AWS KMS.
    Aws(kms::aws::AwsKmsConfig),
}

/// Everything `Vault::open` needs.
pub struct OpenConfig {
    pub database: String,
    pub environment: String,
    pub actor: Option<String>,
    pub kms: KmsConfig,
    /// The data-key cache on the hydrate path; `None` turns it off (one unwrap per hydrate).
    pub cache: Option<kms::cache::CacheConfig>,
    /// Transport and pool options of the database.
    pub store: store::StoreOptions,
    /// What this vault may do beyond the ordinary (`hydrate:export`).
    pub allow: permissions::Permissions,
}

/// Opens a vault: storage (created and migrated if needed) and key wrapping.
pub async fn open(config: OpenConfig) -> Result<Vault> {
    vault::check_environment(&config.environment)?;
    // Refuse a bad database option before any KMS call.
    store::Target::parse(&config.database, &config.store)?;
    let stats = Arc::new(stats::Stats::default());
    let provider: Arc<dyn kms::KeyProvider> = match config.kms {
        KmsConfig::Local(key) => Arc::new(kms::local::LocalKek::new(key)),
        KmsConfig::Aws(aws) => Arc::new(kms::aws::AwsKms::connect(aws, stats.clone()).await?),
    };
    let kms = Arc::new(kms::KeyWrapping::new(provider, config.cache, stats.clone()));
    let store = store::open(&config.database, &config.store).await?;
    Vault::new(store, kms, stats, &config.environment, config.actor.as_deref())
        .map(|v| v.with_permissions(config.allow))
}
