//! sharevault-core: the vault in plain Rust (no napi). See `../../DESIGN.md` in the shared docs.

pub mod audit;
pub mod delegation;
pub mod envelope;
pub mod error;
pub mod integrity;
pub mod keyring;
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
    /// A derived key in HashiCorp Vault / OpenBao Transit.
    Transit(kms::transit::TransitConfig),
    /// An AES-256 key on a PKCS#11 token (an HSM).
    Pkcs11(kms::pkcs11::Pkcs11Config),
}

/// Everything `Vault::open` needs.
pub struct OpenConfig {
    pub database: String,
    pub environment: String,
    pub actor: Option<String>,
    /// The primary key: every new data key is wrapped under it.
    pub kms: KmsConfig,
    /// Earlier keys that may still unwrap (never wrap) while records are re-wrapped off them.
    pub previous_kms: Vec<KmsConfig>,
    /// Accept the local development key for an environment whose name looks like production.
    pub local_in_production: bool,
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
    /// The delegation webhooks' RSA private key (PKCS#8 PEM) given at open, with the option path
    /// that named it (its errors point there); else the imported record is used.
    pub delegation_key: Option<(SecretBuf, String)>,
}

async fn provider(config: KmsConfig, stats: &Arc<stats::Stats>) -> Result<Arc<dyn kms::KeyProvider>> {
    Ok(match config {
        KmsConfig::Local(key) => Arc::new(kms::local::LocalKek::new(key)),
        KmsConfig::Aws(aws) => Arc::new(kms::aws::AwsKms::connect(aws, stats.clone()).await?),
        KmsConfig::Transit(t) => Arc::new(kms::transit::TransitKms::connect(t, stats.clone()).await?),
        KmsConfig::Pkcs11(p) => Arc::new(kms::pkcs11::Pkcs11Kms::connect(p, stats.clone()).await?),
    })
}

/// Opens a vault: storage (created and migrated if needed) and key wrapping.
pub async fn open(config: OpenConfig) -> Result<Vault> {
    vault::check_environment(&config.environment)?;
    vault::check_actor(config.actor.as_deref())?;
    if config.harden_process {
        // Reported by `stats()` (memory.nonDumpable); an OS that refuses is not an error.
        memlock::harden_process();
    }
    // Refuse a bad database option, or a bad delegation key, before any KMS call.
    store::Target::parse(&config.database, &config.store)?;
    let delegation_key = match &config.delegation_key {
        None => None,
        Some((pem, path)) => Some(
            delegation::crypto::pem_to_der(pem.as_slice())
                .and_then(|der| delegation::crypto::DelegationKey::from_pkcs8(&der))
                .map_err(|e| Error::invalid(path.clone(), e.message))?,
        ),
    };
    let stats = Arc::new(stats::Stats::default());
    let primary = provider(config.kms, &stats).await?;
    let mut previous = Vec::with_capacity(config.previous_kms.len());
    for (i, k) in config.previous_kms.into_iter().enumerate() {
        let p = provider(k, &stats).await?;
        if p.kek().same_key(primary.kek())
            || previous.iter().any(|q: &Arc<dyn kms::KeyProvider>| q.kek().same_key(p.kek()))
        {
            return Err(Error::invalid(format!("kms.previous[{i}]"), "names a key that is already configured"));
        }
        previous.push(p);
    }
    let kms = Arc::new(kms::KeyWrapping::with_previous(primary, previous, config.cache, stats.clone()));
    let store = store::open(&config.database, &config.store).await?;
    let opened = async {
        let actor = config.actor.as_deref().unwrap_or(vault::DEFAULT_ACTOR);
        let keys = keyring::open(&store, &kms, &config.environment, actor, config.local_in_production).await?;
        let vault = Vault::new(
            store.clone(),
            kms.clone(),
            stats,
            &config.environment,
            config.actor.as_deref(),
            keys.integrity,
        )?;
        Ok((vault, keys.committed))
    }
    .await;
    match opened {
        Ok((v, committed)) => {
            let v =
                v.with_permissions(config.allow).with_audit_sink(config.audit_sink).with_delegation_key(delegation_key);
            // What opening committed (the keyring's registrations) reaches onAudit like any entry.
            v.forward_all(committed);
            Ok(v)
        }
        Err(e) => {
            // Nothing half-open is left behind: the writer stops, the key material goes.
            let _ = store.close().await;
            kms.close();
            Err(e)
        }
    }
}
