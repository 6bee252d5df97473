//! Storing a new wallet: validated whole, sealed under a fresh data key, written with its audit row in one transaction.

use super::*;

impl Vault {
    /// Stores a new wallet: validates everything first, then seals the shares under a fresh data
    /// key and writes metadata, sealed record and audit row in one transaction.
    pub async fn store_wallet(
        &self,
        metadata_json: &str,
        created_address: Option<&str>,
        shares: &SecretBuf,
        actor: Option<&str>,
    ) -> Result<String> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            if !self.allow.allows(Permission::Store) {
                // The address for the audit row, as far as the input names one.
                let named = created_address.map(str::to_string).or_else(|| {
                    serde_json::from_str::<serde_json::Value>(metadata_json)
                        .ok()
                        .and_then(|v| v.get("accountAddress").and_then(|a| a.as_str()).map(str::to_string))
                });
                self.permit(Permission::Store, "store", named.as_deref().unwrap_or(""), None, actor).await?;
            }
            let obj = model::parse_metadata(metadata_json)?;
            let id = model::validate_metadata(&obj)?;
            if let Some(a) = created_address {
                if model::address_key(a) != id.address_key {
                    return Err(Error::invalid(
                        "walletMetadata.accountAddress",
                        "does not match the wallet's accountAddress",
                    ));
                }
            }
            shares::validate(shares, id.scheme.external_share_count(), id.scheme.as_str())?;
            // The log says a wallet is stored here: then it is (a conflict), or its row was
            // deleted outside sharevault (tampered), never silently re-created.
            if let Some(latest) = self.store.latest_state(&self.environment, &id.address_key).await? {
                if !tamper::audited_state(&self.integrity, &id.account_address, &latest)?.is_empty() {
                    self.metadata_row(&id.account_address).await?;
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        format!("a wallet is already stored for address {}", id.account_address),
                    ));
                }
            }
            let sealed = self.seal_generation(&id.wallet_id, &id.address_key, &id.chain_name, 1, shares).await?;
            let row = WalletRow {
                address: id.account_address.clone(),
                address_key: id.address_key.clone(),
                wallet_id: id.wallet_id.clone(),
                chain_name: id.chain_name.clone(),
                environment: self.environment.clone(),
                metadata_json: metadata_json.to_string(),
                version: 1,
                generation: 1,
                sealed,
                mac: None,
                sealed_digest: None,
                state: None,
            };
            let digest = sealed_digest(&row.sealed);
            let auth = self.row_auth(tamper::wallet_facts(&row, &digest));
            let mut audit = self.audit(actor, "store", &id.account_address, Some(&id.wallet_id), None, "ok");
            audit.wallet_mac = Some(auth.mac.clone());
            let (kek, wrapped) = (row.sealed.kek.clone(), row.sealed.wrapped_dek.clone());
            if let Err(e) = self.apply(Change::Insert { row: Box::new(row), auth }, audit).await {
                // Not stored: no cached copy of its data key may outlive it.
                self.kms.forget(&kek, &wrapped, &self.key_context(&id.wallet_id));
                return Err(e);
            }
            Ok(metadata_json.to_string())
        })
        .await
    }
}
