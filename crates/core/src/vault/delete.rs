//! Deleting a wallet (crypto-shredding).

use super::*;

impl Vault {
    /// Deletes a wallet: metadata, sealed shares and the wrapped data key (crypto-shredding).
    pub async fn delete_wallet(&self, address: &str, actor: Option<&str>) -> Result<()> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            self.permit(Permission::Delete, "delete", address, None, actor).await?;
            let row = self.wallet_row(address).await?;
            let mut audit = self.audit(actor, "delete", address, Some(&row.wallet_id), None, "ok");
            // No row after this write: a row put back later is not the wallet's latest state.
            audit.wallet_mac = Some(Vec::new());
            match self.apply(Change::Delete { address_key: row.address_key.clone() }, audit).await? {
                Applied::Done => {
                    // Crypto-shredding includes the process: drop any cached copy of the data key.
                    self.kms.forget(&row.sealed.kek, &row.sealed.wrapped_dek, &self.key_context(&row.wallet_id));
                    Ok(())
                }
                _ => Err(Error::not_found(address)),
            }
        })
        .await
    }
}
