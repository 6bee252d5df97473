//! States the SDK returned that could not be written: sealed outside the database, recovered later, or opened by an operator.

use super::*;

impl Vault {
    /// Seals shares the SDK returned that could not be written (see `unpersisted`), bound to the
    /// wallet `metadata_json` names, this vault's environment, and the generation they replace:
    /// with the backup info and scheme that go with them, or, for a new wallet (`base_generation`
    /// 0), with its whole metadata. Needs the KMS, not the database; with the KMS out of reach,
    /// the spare key `permit_operation` kept (if it ran) seals it instead.
    pub async fn seal_unpersisted(
        &self,
        metadata_json: &str,
        base_generation: i64,
        shares: &SecretBuf,
        backup_info_json: Option<&str>,
        scheme: Option<&str>,
    ) -> Result<Vec<u8>> {
        self.run(self.seal_state(metadata_json, base_generation, shares, backup_info_json, scheme, false)).await
    }

    /// [`Vault::seal_unpersisted`] for an SDK result that the share encoding refuses (a `Date`,
    /// a `Map`…): `raw` is that result exactly as it came (the binding's serialization, opaque
    /// here), sealed losslessly the same way, so it is never lost. `recover_sealed` refuses it
    /// (the vault cannot store it as it is); an operator reads it back with `open_sealed`.
    pub async fn seal_unpersisted_raw(
        &self,
        metadata_json: &str,
        base_generation: i64,
        raw: &SecretBuf,
        backup_info_json: Option<&str>,
        scheme: Option<&str>,
    ) -> Result<Vec<u8>> {
        self.run(self.seal_state(metadata_json, base_generation, raw, backup_info_json, scheme, true)).await
    }

    async fn seal_state(
        &self,
        metadata_json: &str,
        base_generation: i64,
        shares: &SecretBuf,
        backup_info_json: Option<&str>,
        scheme: Option<&str>,
        raw: bool,
    ) -> Result<Vec<u8>> {
        {
            let obj = model::parse_metadata(metadata_json)?;
            let id = model::validate_metadata(&obj)?;
            let needed = if base_generation == 0 { Permission::Store } else { Permission::Replace };
            self.permit(needed, "seal_unpersisted", &id.account_address, None, None).await?;
            let effective = match scheme {
                None => id.scheme,
                Some(s) => Scheme::parse(s).ok_or_else(|| {
                    Error::invalid("thresholdSignatureScheme", "must be TWO_OF_TWO, TWO_OF_THREE or THREE_OF_FIVE")
                })?,
            };
            if !raw {
                shares::validate(shares, effective.external_share_count(), effective.as_str())?;
            }
            let payload_json = match (base_generation, backup_info_json) {
                (0, _) => metadata_json.to_string(),
                // The raw result holds its backup info as it came: the copy here is a label.
                (g, b) if g > 0 && raw => b.unwrap_or("null").to_string(),
                (g, Some(b)) if g > 0 => {
                    parse_backup_info(b)?;
                    b.to_string()
                }
                (g, None) if g > 0 => return Err(Error::invalid("backupInfo", "is required")),
                _ => {
                    return Err(Error::invalid(
                        "generation",
                        "must be the generation the shares replace (0 for a wallet not stored yet)",
                    ))
                }
            };
            let ctx = self.key_context(&id.wallet_id);
            let (key, spare) = match self.kms.generate_data_key(&ctx).await {
                Ok(key) => {
                    // A one-off key: no cached copy of it should outlive this call.
                    self.kms.forget(&key.kek, &key.wrapped, &ctx);
                    (Arc::new(key), false)
                }
                // The KMS is out of reach: the spare key kept for this before the SDK call.
                Err(e) if e.code == ErrorCode::KmsUnavailable => match self.spare_key().await {
                    Some(key) => (key, true),
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            };
            let mut state = Unpersisted {
                environment: self.environment.clone(),
                wallet_id: id.wallet_id.clone(),
                address: id.account_address.clone(),
                chain_name: id.chain_name.clone(),
                base_generation,
                payload_json,
                scheme: scheme.filter(|_| base_generation > 0).map(|_| effective.as_str().to_string()),
                kek: key.kek.clone(),
                wrapped_dek: key.wrapped.clone(),
                nonce: Vec::new(),
                ciphertext: Vec::new(),
                raw,
                spare,
            };
            let (nonce, ciphertext) = envelope::seal_with(&key.plaintext, &state.aad(), shares.as_slice())?;
            state.nonce = nonce;
            state.ciphertext = ciphertext;
            Ok(state.encode())
        }
    }

    /// The operator's way to a raw sealed state (`seal_unpersisted_raw`: an SDK result the vault
    /// could not store as it was): needs `hydrate:export` (it hands out plaintext), checked
    /// before any key use, and is audited (`open_sealed`, purpose `export`) before the plaintext
    /// is returned. A state of the ordinary kind is refused: `recover_sealed` writes it.
    pub async fn open_sealed(&self, blob: &[u8], actor: Option<&str>) -> Result<(Unpersisted, SecretBuf)> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            let state = Unpersisted::decode(blob)?;
            self.same_environment(&state.environment, &state.address)?;
            self.permit(Permission::HydrateExport, "open_sealed", &state.address, Some("export"), actor).await?;
            if !state.raw {
                return Err(Error::invalid("sealed", "holds shares the vault can store: use recoverSealed"));
            }
            let ctx = self.state_context(&state);
            let dek = self.kms.unwrap_data_key(&state.kek, &state.wrapped_dek, &ctx).await?;
            self.kms.forget(&state.kek, &state.wrapped_dek, &ctx);
            let plaintext = envelope::open_with(&dek, &state.aad(), &state.nonce, &state.ciphertext)
                .map_err(|_| Error::tampered("the sealed state failed authentication"))?;
            let audit = self.audit(actor, "open_sealed", &state.address, Some(&state.wallet_id), Some("export"), "ok");
            self.append_audit(audit).await?;
            Ok((state, plaintext))
        })
        .await
    }

    /// Writes a sealed, unpersisted state (from [`Vault::seal_unpersisted`]): a new wallet is
    /// stored (if the same wallet with the same shares is already there, because the first store
    /// did commit, that is success); new shares replace the stored ones if the wallet is still at
    /// the generation they replace (`ERR_CONFLICT` if it has changed since: the state is stale).
    /// A blob of another environment is `ERR_ENVIRONMENT_MISMATCH`, of another wallet or altered
    /// `ERR_TAMPERED`. Resolves to the stored metadata.
    pub async fn recover_sealed(&self, blob: &[u8], actor: Option<&str>) -> Result<String> {
        self.run(async {
            let state = Unpersisted::decode(blob)?;
            self.same_environment(&state.environment, &state.address)?;
            // Refused before any key is touched.
            let needed = if state.base_generation == 0 { Permission::Store } else { Permission::Replace };
            self.permit(needed, "recover_sealed", &state.address, None, actor).await?;
            if state.raw {
                return Err(Error::invalid(
                    "sealed",
                    "holds the SDK's result exactly as it came back, which the vault cannot store as it is (it holds a \
                     value such as a Date or a Map): an operator reads it with vault.openSealed() (needs \
                     hydrate:export), corrects it, and stores it with replaceShares or storeWallet",
                ));
            }
            let ctx = self.state_context(&state);
            let dek = self.kms.unwrap_data_key(&state.kek, &state.wrapped_dek, &ctx).await?;
            self.kms.forget(&state.kek, &state.wrapped_dek, &ctx);
            let shares = envelope::open_with(&dek, &state.aad(), &state.nonce, &state.ciphertext)
                .map_err(|_| Error::tampered("the sealed state failed authentication"))?;
            if state.base_generation == 0 {
                return self.recover_new_wallet(&state, &shares, actor).await;
            }
            let basis = Basis { wallet_id: &state.wallet_id, generation: state.base_generation };
            self.replace_shares_at(
                &state.address,
                &shares,
                &state.payload_json,
                state.scheme.as_deref(),
                actor,
                Some(basis),
            )
            .await
        })
        .await
    }

    async fn recover_new_wallet(&self, state: &Unpersisted, shares: &SecretBuf, actor: Option<&str>) -> Result<String> {
        // Deletion is final: a recovery never brings back a wallet this environment deleted,
        // checked by the insert itself (a delete racing the recovery is seen, see `insert_new`).
        match self.store_recovered(&state.payload_json, &state.address, shares, actor).await {
            Err(e) if e.code == ErrorCode::Conflict => {
                // Stored already? Then only if it is this wallet, at its first generation, with
                // exactly these shares (the first store committed but its answer was lost).
                let row = match self.wallet_row(&state.address).await {
                    Ok(row) => row,
                    // No row: deleted (final), or stored and deleted since; the conflict says which.
                    Err(gone) if gone.code == ErrorCode::NotFound => return Err(e),
                    Err(other) => return Err(other),
                };
                let same = row.wallet_id == state.wallet_id
                    && row.generation == 1
                    && self.open_row(&row).await?.as_slice() == shares.as_slice();
                if same {
                    Ok(row.metadata_json)
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }

    /// The key context a sealed state's data key is wrapped under: its wallet's, or the spare's.
    fn state_context(&self, state: &Unpersisted) -> KeyContext {
        self.key_context(if state.spare { SPARE_CONTEXT } else { &state.wallet_id })
    }
}
