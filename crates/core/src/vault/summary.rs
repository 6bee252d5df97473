//! What the vault holds, counted: the operator's `status` (schema, backend, wallets per chain,
//! and the data-key cache settings this vault runs with).

use super::*;
use crate::kms::cache::CacheConfig;

/// The environment's wallets, and what stores them.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The schema version the database is at (an open vault's is always this sharevault's).
    pub schema_version: i64,
    /// Wallets per chain name, in chain order.
    pub wallets_by_chain: Vec<(String, u64)>,
    /// The data-key cache's settings (`None`: the cache is off).
    pub cache: Option<CacheConfig>,
}

impl Vault {
    /// Counts the environment's wallets per chain (no row is read whole, nothing is decrypted).
    pub async fn summary(&self) -> Result<Summary> {
        self.run(async {
            self.permit(Permission::AuditRead, "summary", "", None, None).await?;
            let (backend, schema_version) = self.store.schema();
            Ok(Summary {
                backend,
                schema_version,
                wallets_by_chain: self.store.wallets_by_chain(&self.environment).await?,
                cache: self.kms.cache_config(),
            })
        })
        .await
    }
}
