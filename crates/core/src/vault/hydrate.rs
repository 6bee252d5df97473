//! Reads: metadata alone, the audited hydrate that hands out plaintext shares for one SDK call, and listing.

use super::*;

impl Vault {
    /// The stored metadata, whole. No decryption and no KMS call.
    pub async fn get_metadata(&self, address: &str) -> Result<String> {
        self.run(async { Ok(self.metadata_row(address).await?.metadata_json) }).await
    }

    async fn hydrate_inner(&self, address: &str) -> Result<(WalletRow, SecretBuf)> {
        let row = self.wallet_row(address).await?;
        let plaintext = self.open_row(&row).await?;
        Ok((row, plaintext))
    }

    /// Reads and decrypts a wallet for one SDK call. The access is in the audit log (durably)
    /// before the plaintext is handed out; failed attempts are audited with their error code.
    pub async fn hydrate(&self, address: &str, purpose: Option<&str>, actor: Option<&str>) -> Result<Hydrated> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            check_label(purpose, "purpose", MAX_PURPOSE_LEN)?;
            let started = std::time::Instant::now();
            let hydrated = self.hydrate_audited(address, purpose, actor).await?;
            self.stats.hydrated(started.elapsed());
            Ok(hydrated)
        })
        .await
    }

    async fn hydrate_audited(&self, address: &str, purpose: Option<&str>, actor: Option<&str>) -> Result<Hydrated> {
        // A refused hydrate is audited (outcome `denied`) and decrypts nothing.
        self.permit(Permission::for_hydrate(purpose), "hydrate", address, purpose, actor).await?;
        match self.hydrate_inner(address).await {
            Ok((row, shares)) => {
                let audit = self.audit(actor, "hydrate", &row.address, Some(&row.wallet_id), purpose, "ok");
                self.append_audit(audit).await?;
                Ok(Hydrated { metadata_json: row.metadata_json, shares, generation: row.generation })
            }
            Err(e) => {
                if e.code != ErrorCode::InvalidInput && e.code != ErrorCode::Closed {
                    let audit = self.audit(actor, "hydrate", address, None, purpose, e.code.as_str());
                    // The caller gets the hydrate error; a failure to audit it is secondary.
                    let _ = self.append_audit(audit).await;
                }
                Err(e)
            }
        }
    }

    /// Metadata of this environment's wallets, ordered by address key, `limit` at a time after
    /// the address `after`.
    pub async fn list_wallets(
        &self,
        chain_name: Option<&str>,
        limit: Option<u32>,
        after: Option<&str>,
    ) -> Result<Vec<String>> {
        self.run(async {
            let limit = page_limit(limit)?;
            check_label(chain_name, "chainName", 64)?;
            let after = after
                .map(model::check_address_arg)
                .transpose()
                .map_err(|_| Error::invalid("after", "must be a non-empty address"))?;
            let rows = self
                .store
                .list(ListQuery {
                    environment: self.environment.clone(),
                    chain_name: chain_name.map(str::to_string),
                    after,
                    limit,
                    prefix: None,
                })
                .await?;
            rows.into_iter()
                .map(|r| {
                    if r.environment != self.environment {
                        return Err(Error::tampered("a listed row names another environment"));
                    }
                    tamper::check_metadata(&self.integrity, &r)?;
                    Ok(r.metadata_json)
                })
                .collect()
        })
        .await
    }
}
