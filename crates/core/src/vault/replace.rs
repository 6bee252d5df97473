//! Writes to a stored wallet: merged backup info, and a new share generation (refresh, reshare), each by compare-and-swap on the row version.

use super::*;

impl Vault {
    /// Replaces `externalServerKeySharesBackupInfo` with `backup_info_json` (after updatePassword
    /// or storeEncryptedBackupByWallet). Shares are not touched.
    pub async fn merge_backup_info(
        &self,
        address: &str,
        backup_info_json: &str,
        actor: Option<&str>,
    ) -> Result<String> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            self.permit(Permission::Backup, "merge_backup_info", address, None, actor).await?;
            let backup = parse_backup_info(backup_info_json)?;
            for attempt in 0..MAX_CAS_ATTEMPTS {
                let row = self.metadata_row(address).await?;
                let mut obj = stored_metadata(&row.metadata_json)?;
                model::apply_update(&mut obj, backup.clone(), None);
                let json = changed_metadata(&obj)?;
                let auth = self.row_auth(RowFacts {
                    metadata_json: &json,
                    version: row.version + 1,
                    ..tamper::metadata_facts(&row)
                });
                let mut audit = self.audit(actor, "merge_backup_info", address, Some(&row.wallet_id), None, "ok");
                audit.wallet_mac = Some(auth.mac.clone());
                let change = Change::UpdateMetadata {
                    address_key: row.address_key.clone(),
                    expected_version: row.version,
                    metadata_json: json.clone(),
                    auth,
                };
                match self.apply(change, audit).await? {
                    Applied::Done => return Ok(json),
                    Applied::Stale => cas_backoff(attempt).await,
                    Applied::NotFound => return Err(Error::not_found(address)),
                }
            }
            Err(Error::new(ErrorCode::Conflict, "the wallet kept changing while its backup info was merged"))
        })
        .await
    }

    /// Writes a new share generation (new data key) together with the new backup info and, on a
    /// reshare, the new scheme, in one transaction.
    pub async fn replace_shares(
        &self,
        address: &str,
        shares: &SecretBuf,
        backup_info_json: &str,
        scheme: Option<&str>,
        actor: Option<&str>,
    ) -> Result<String> {
        self.run(self.replace_shares_at(address, shares, backup_info_json, scheme, actor, None)).await
    }

    /// [`Vault::replace_shares`] for new shares an SDK call derived from `basis` (the wallet and
    /// its generation when the SDK wrapper hydrated it for a refresh or reshare): written only
    /// while the wallet is still that one at that generation, so a retry can never roll a wallet
    /// back to shares a later refresh replaced; if the wallet is at the next generation with
    /// exactly these shares (an earlier attempt committed but its answer was lost), that is success.
    pub async fn replace_shares_from(
        &self,
        address: &str,
        shares: &SecretBuf,
        backup_info_json: &str,
        scheme: Option<&str>,
        actor: Option<&str>,
        basis: Basis<'_>,
    ) -> Result<String> {
        self.run(self.replace_shares_at(address, shares, backup_info_json, scheme, actor, Some(basis))).await
    }

    /// [`Vault::replace_shares`], and if `basis` is given, only onto that wallet at that
    /// generation (checked in the same compare-and-swap as the write).
    pub(super) async fn replace_shares_at(
        &self,
        address: &str,
        shares: &SecretBuf,
        backup_info_json: &str,
        scheme: Option<&str>,
        actor: Option<&str>,
        basis: Option<Basis<'_>>,
    ) -> Result<String> {
        {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            self.permit(Permission::Replace, "replace_shares", address, None, actor).await?;
            let new_scheme = match scheme {
                None => None,
                Some(s) => Some(Scheme::parse(s).ok_or_else(|| {
                    Error::invalid("thresholdSignatureScheme", "must be TWO_OF_TWO, TWO_OF_THREE or THREE_OF_FIVE")
                })?),
            };
            let backup = parse_backup_info(backup_info_json)?;
            for attempt in 0..MAX_CAS_ATTEMPTS {
                let row = self.wallet_row(address).await?;
                if let Some(b) = basis.filter(|b| b.wallet_id != row.wallet_id) {
                    return Err(Error::tampered(format!(
                        "the new shares belong to wallet {}, not to the wallet now stored at {address}",
                        b.wallet_id
                    )));
                }
                if let Some(base) = basis.map(|b| b.generation).filter(|g| *g != row.generation) {
                    // Already written (by an attempt whose answer was lost)? Compared inside
                    // Rust; the stored plaintext never leaves.
                    if row.generation == base + 1 && self.open_row(&row).await?.as_slice() == shares.as_slice() {
                        return Ok(row.metadata_json);
                    }
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        format!(
                            "the wallet {address} has changed since this state was sealed (its shares are at generation \
                             {}, the sealed state replaces generation {base}): the sealed state is stale",
                            row.generation
                        ),
                    ));
                }
                let mut obj = stored_metadata(&row.metadata_json)?;
                let current = obj
                    .get("thresholdSignatureScheme")
                    .and_then(|v| v.as_str())
                    .and_then(Scheme::parse)
                    .ok_or_else(|| Error::tampered("the stored metadata has no valid scheme"))?;
                let effective = new_scheme.unwrap_or(current);
                if !current.can_reshare_to(effective) {
                    return Err(Error::invalid(
                        "thresholdSignatureScheme",
                        format!(
                            "a reshare from {} to {} is not a path the SDK supports",
                            current.as_str(),
                            effective.as_str()
                        ),
                    ));
                }
                shares::validate(shares, effective.external_share_count(), effective.as_str())?;
                model::apply_update(&mut obj, backup.clone(), new_scheme);
                let json = changed_metadata(&obj)?;
                let generation = row.generation + 1;
                let sealed =
                    self.seal_generation(&row.wallet_id, &row.address_key, &row.chain_name, generation, shares).await?;
                let digest = sealed_digest(&sealed);
                let auth = self.row_auth(RowFacts {
                    metadata_json: &json,
                    generation,
                    version: row.version + 1,
                    ..tamper::wallet_facts(&row, &digest)
                });
                let mut audit = self.audit(actor, "replace_shares", &row.address, Some(&row.wallet_id), None, "ok");
                audit.wallet_mac = Some(auth.mac.clone());
                let ctx = self.key_context(&row.wallet_id);
                let (new_kek, new_wrapped) = (sealed.kek.clone(), sealed.wrapped_dek.clone());
                let change = Change::ReplaceShares {
                    address_key: row.address_key.clone(),
                    expected_version: row.version,
                    metadata_json: json.clone(),
                    generation,
                    sealed,
                    auth,
                };
                let applied = self.apply(change, audit).await;
                if !matches!(applied, Ok(Applied::Done)) {
                    self.kms.forget(&new_kek, &new_wrapped, &ctx);
                }
                match applied? {
                    Applied::Done => {
                        // The old generation is gone: so is any cached copy of its data key.
                        self.kms.forget(&row.sealed.kek, &row.sealed.wrapped_dek, &ctx);
                        return Ok(json);
                    }
                    Applied::Stale => cas_backoff(attempt).await,
                    Applied::NotFound => return Err(Error::not_found(address)),
                }
            }
            Err(Error::new(ErrorCode::Conflict, "the wallet kept changing while its shares were replaced"))
        }
    }
}
