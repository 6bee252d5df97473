//! Reclaiming the space that deleted and replaced rows left (`vault.compact()`, `sharevault compact`).

use super::*;
use crate::store::Compacted;

impl Vault {
    /// Compacts the database (see [`crate::store::WalletStore::compact`]): the operator's step
    /// after deletes, with what it promises about freed bytes. Needs `delete` (it finishes what a
    /// delete began, and a compaction holds the database for a while).
    pub async fn compact(&self, actor: Option<&str>) -> Result<Compacted> {
        self.run(async {
            self.permit(Permission::Delete, "compact", "", None, actor).await?;
            self.store.compact().await
        })
        .await
    }
}
