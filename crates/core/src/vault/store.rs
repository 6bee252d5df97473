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
        self.run(self.store_new(metadata_json, created_address, shares, actor, Deleted::MayReturn)).await
    }

    /// `store_wallet` for the recovery of a first store whose answer was lost: the same checks,
    /// and a wallet this environment deleted since is never brought back (`ERR_CONFLICT`).
    pub(super) async fn store_recovered(
        &self,
        metadata_json: &str,
        address: &str,
        shares: &SecretBuf,
        actor: Option<&str>,
    ) -> Result<String> {
        self.store_new(metadata_json, Some(address), shares, actor, Deleted::IsFinal).await
    }

    async fn store_new(
        &self,
        metadata_json: &str,
        created_address: Option<&str>,
        shares: &SecretBuf,
        actor: Option<&str>,
        deleted: Deleted,
    ) -> Result<String> {
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
        self.insert_new(&id, metadata_json, shares, actor, deleted).await?;
        Ok(metadata_json.to_string())
    }

    /// Seals and inserts a validated new wallet, if the environment's history allows it: the log
    /// says a wallet is stored here, then it is (a conflict), or its row was deleted outside
    /// sharevault (tampered), never silently re-created; a wallet the log says was deleted comes
    /// back only if `deleted` allows it. The insert is conditional on the history being what was
    /// checked (`Change::Insert`'s `state_seq`): a delete or a store committed in between, by
    /// another process, is seen and the check made again, never a stale answer.
    async fn insert_new(
        &self,
        id: &model::Identity,
        metadata_json: &str,
        shares: &SecretBuf,
        actor: Option<&str>,
        deleted: Deleted,
    ) -> Result<()> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some(state_seq) = self.may_insert(id, deleted).await? else { continue };
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
            let applied = self.apply(Change::Insert { row: Box::new(row), auth, state_seq }, audit).await;
            if !matches!(applied, Ok(Applied::Done)) {
                // Not stored: no cached copy of its data key may outlive it.
                self.kms.forget(&kek, &wrapped, &self.key_context(&id.wallet_id));
            }
            match applied? {
                Applied::Done => return Ok(()),
                // The history moved since it was checked: check again.
                Applied::Stale | Applied::NotFound => continue,
            }
        }
        Err(Error::new(ErrorCode::Conflict, "the wallet's history kept changing while it was stored"))
    }

    /// Whether the history allows storing `id` now: `Some(seq)` of the latest state checked
    /// (`Some(None)`: never stored here), `None` to check again (the wallet was deleted between
    /// the two reads of the check).
    async fn may_insert(&self, id: &model::Identity, deleted: Deleted) -> Result<Option<Option<i64>>> {
        let Some(latest) = self.store.latest_state(&self.environment, &id.address_key).await? else {
            return Ok(Some(None));
        };
        if tamper::audited_state(&self.integrity, &id.account_address, &latest)?.is_empty() {
            return match deleted {
                Deleted::MayReturn => Ok(Some(Some(latest.seq))),
                Deleted::IsFinal => Err(Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "wallet {} was deleted (audit seq {}): a recovery never re-creates a deleted wallet",
                        id.account_address, latest.seq
                    ),
                )),
            };
        }
        match self.metadata_row(&id.account_address).await {
            Ok(_) => Err(Error::new(
                ErrorCode::Conflict,
                format!("a wallet is already stored for address {}", id.account_address),
            )),
            // The row and its state are two reads: not found means the log now says the wallet
            // was deleted (a row missing while the log says stored is tampered, not this).
            Err(e) if e.code == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Whether a store may bring back a wallet this environment deleted: a new store may (the same
/// address created again), the recovery of an unpersisted first store may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deleted {
    MayReturn,
    IsFinal,
}
