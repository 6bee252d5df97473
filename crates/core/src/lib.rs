//! sharevault-core: the vault in plain Rust (no napi). See `../../DESIGN.md` in the shared docs.

pub mod audit;
pub mod envelope;
pub mod error;
pub mod integrity;
pub mod kms;
pub mod memlock;
pub mod model;
pub mod permissions;
pub mod secret;
pub mod shares;
pub mod stats;
pub mod store;
pub mod tamper;
pub mod threads;
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
    /// Make the process non-dumpable (`PR_SET_DUMPABLE 0`) when the vault opens.
    pub harden_process: bool,
    /// `onAudit`: where committed audit entries are also offered.
    pub audit_sink: Option<Arc<dyn audit::AuditSink>>,
}

/// Opens a vault: storage (created and migrated if needed) and key wrapping.
pub async fn open(config: OpenConfig) -> Result<Vault> {
    vault::check_environment(&config.environment)?;
    vault::check_actor(config.actor.as_deref())?;
    if config.harden_process {
        // Reported by `stats()` (memory.nonDumpable); an OS that refuses is not an error.
        memlock::harden_process();
    }
    // Refuse a bad database option before any KMS call.
    store::Target::parse(&config.database, &config.store)?;
    let stats = Arc::new(stats::Stats::default());
    let provider: Arc<dyn kms::KeyProvider> = match config.kms {
        KmsConfig::Local(key) => Arc::new(kms::local::LocalKek::new(key)),
        KmsConfig::Aws(aws) => Arc::new(kms::aws::AwsKms::connect(aws, stats.clone()).await?),
    };
    let kms = Arc::new(kms::KeyWrapping::new(provider, config.cache, stats.clone()));
    let store = store::open(&config.database, &config.store).await?;
    let opened = async {
        let key = Arc::new(tamper::integrity_key(&store, &kms, &config.environment).await?);
        store.bind_audit_key(key.clone()).await?;
        tamper::enable(&store, &key).await?;
        Vault::new(store.clone(), kms.clone(), stats, &config.environment, config.actor.as_deref(), key)
    }
    .await;
    match opened {
        Ok(v) => Ok(v.with_permissions(config.allow).with_audit_sink(config.audit_sink)),
        Err(e) => {
            // Nothing half-open is left behind: the writer stops, the key material goes.
            let _ = store.close().await;
            kms.close();
            Err(e)
        }
    }
}
