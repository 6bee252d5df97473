//! The audit log's operator side: reading it, verifying the chain, checkpoints, and the explicit repairs (acknowledging a break, authenticating rows from before rows were authenticated).

use super::*;

impl Vault {
    /// Audit rows, oldest first, optionally for one address.
    pub async fn audit_log(
        &self,
        address: Option<&str>,
        after_seq: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<AuditRecord>> {
        self.run(async {
            self.permit(Permission::AuditRead, "audit_read", address.unwrap_or(""), None, None).await?;
            let limit = page_limit(limit)?;
            if after_seq.is_some_and(|s| s < 0) {
                return Err(Error::invalid("afterSeq", "must be a non-negative integer"));
            }
            // A read filter: the vault's own addresses (a delegation's `sharevault:delegation:…`,
            // a key's `sharevault:key:…`) may be named here, where they select audit rows only.
            let address_key = address
                .map(|a| match a.strip_prefix(model::RESERVED_ADDRESS_PREFIX) {
                    Some(rest) if !rest.is_empty() && a.len() <= 1024 => Ok(a.to_string()),
                    _ => model::check_address_arg(a),
                })
                .transpose()?;
            self.store
                .audit_log(AuditQuery { environment: self.environment.clone(), address_key, after_seq, limit })
                .await
        })
        .await
    }

    /// Verifies the audit log from its first row, a page at a time (constant memory): every
    /// row's hash link; this environment's rows' MACs; that its authenticated head is in the
    /// log, unchanged, and nothing of the environment follows it; and, with `since` (a
    /// checkpoint taken earlier), that the log still holds the checkpoint's row unchanged.
    pub async fn verify_audit_chain(&self, since: Option<&SignedHead>) -> Result<ChainCheck> {
        self.run(async {
            self.permit(Permission::AuditRead, "audit_read", "", None, None).await?;
            if let Some(c) = since {
                if c.environment != self.environment {
                    return Err(Error::new(
                        ErrorCode::EnvironmentMismatch,
                        format!("the checkpoint is of another environment than this vault's ({})", self.environment),
                    ));
                }
                if !self.integrity.head_ok(&c.environment, c.seq, &c.hash, &c.mac) {
                    return Err(Error::tampered("the checkpoint's MAC does not verify: it was changed or forged"));
                }
            }
            let head = self.store.audit_head(&self.environment).await?;
            if let Some(h) = &head {
                if !self.integrity.head_ok(&h.environment, h.seq, &h.hash, &h.mac) {
                    return Ok(ChainCheck {
                        rows: 0,
                        broken_at: Some(h.seq),
                        reason: Some("the authenticated head fails its MAC (changed or forged)".into()),
                        acknowledged: Vec::new(),
                    });
                }
            }
            let key = &self.integrity;
            let row_ok = |seq: i64, hash: &[u8], mac: &[u8]| key.audit_row_ok(key.environment(), seq, hash, mac);
            let mut verifier = ChainVerifier::new(Expectations {
                environment: &self.environment,
                row_ok: &row_ok,
                head: head.as_ref(),
                since,
            });
            loop {
                let page = self.store.audit_page(verifier.last_seq(), VERIFY_PAGE).await?;
                for r in &page {
                    verifier.feed(r);
                }
                if page.len() < VERIFY_PAGE as usize || verifier.is_broken() {
                    break;
                }
            }
            Ok(verifier.finish())
        })
        .await
    }

    /// The operator's acknowledgement of a broken log (a cut tail, a deleted, forged or
    /// rolled-back head), after checking it (`verify_audit_chain`): appends an audited row that
    /// says what was found and why it is accepted, and makes it the environment's head, so writes
    /// resume from there. Refused (`ERR_CONFLICT`) when the log is not broken. The row stays in
    /// the log (`ChainCheck::acknowledged` lists it); cutting it away is a new break.
    pub async fn acknowledge_audit_break(&self, reason: &str, actor: Option<&str>) -> Result<i64> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            check_label(Some(reason), "reason", MAX_PURPOSE_LEN)?;
            self.permit(Permission::IntegrityAdmin, BREAK_ACKNOWLEDGED, "", None, actor).await?;
            let head = self.store.audit_head(&self.environment).await?;
            let found = match &head {
                None => "the authenticated head was missing".to_string(),
                Some(h) if !self.integrity.head_ok(&h.environment, h.seq, &h.hash, &h.mac) => {
                    format!("the authenticated head (seq {}) failed its MAC", h.seq)
                }
                Some(h) => format!("the authenticated head named row {}, which the log no longer holds", h.seq),
            };
            let entry = self.audit(actor, BREAK_ACKNOWLEDGED, "", None, Some(&format!("{found}; {reason}")), "ok");
            let copy = entry.clone();
            let seq = self.store.repair_head(Some(entry), HeadRepair::Acknowledge).await?;
            self.forward(Some(copy));
            // Writes resume: the keyring registers what it could not while the log was broken.
            crate::keyring::repair(&self.store, &self.kms, &self.integrity, actor.unwrap_or(&self.actor), false)
                .await?;
            Ok(seq)
        })
        .await
    }

    /// The explicit operator step for a database upgraded from schema 1 (rows written before rows
    /// were authenticated): authenticates every row of this environment that carries no MAC, or
    /// no write in the log, trusting it as it is, one audited `authenticate` row each (so its
    /// state is on record like any write's); a row whose MAC fails is never authenticated (it is
    /// counted as refused). The environment gets its head first if it has none (an audited
    /// `integrity_enabled` row). With a head already, only with `force` (rows losing their MAC in
    /// an authenticated environment is tampering: authenticate them only after checking them).
    /// Returns how many rows were authenticated and refused.
    pub async fn authenticate_existing_rows(&self, force: bool, actor: Option<&str>) -> Result<(u64, u64)> {
        self.run(async {
            check_label(actor, "actor", MAX_ACTOR_LEN)?;
            self.permit(Permission::IntegrityAdmin, INTEGRITY_ENABLED, "", None, actor).await?;
            if self.store.audit_head(&self.environment).await?.is_some() {
                if !force {
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        "this environment's rows are authenticated already (it has an authenticated head): rows \
                         without a MAC here were stripped of it outside sharevault; authenticate them only after \
                         checking them, with force",
                    ));
                }
            } else {
                if !force && self.store.has_wallet_writes(&self.environment).await? {
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        "this environment's log records writes made with rows authenticated, yet its head is gone: its \
                         head and MACs were removed outside sharevault, not left by schema 1. Check the rows \
                         (verifyAuditChain, your onAudit copy), then authenticate them with force",
                    ));
                }
                let entry =
                    self.audit(actor, INTEGRITY_ENABLED, "", None, Some("rows authenticated by an operator"), "ok");
                let copy = entry.clone();
                self.store.repair_head(Some(entry), HeadRepair::Create).await?;
                self.forward(Some(copy));
            }
            let (mut authenticated, mut refused) = (0u64, 0u64);
            let mut after: Option<String> = None;
            loop {
                let rows = self.store.wallet_page(&self.environment, after.as_deref(), MAX_LIST_LIMIT).await?;
                let Some(last) = rows.last() else { break };
                after = Some(last.address_key.clone());
                for r in &rows {
                    let digest = sealed_digest(&r.sealed);
                    let facts = tamper::wallet_facts(r, &digest);
                    match (&r.mac, &r.state) {
                        // A MAC that fails, or a MAC stripped from a row whose write is on
                        // record: tampered, never authenticated.
                        (Some(m), _) if !self.integrity.row_ok(&facts, m) => {
                            refused += 1;
                            continue;
                        }
                        (None, Some(_)) => {
                            refused += 1;
                            continue;
                        }
                        (Some(_), Some(_)) => continue,
                        _ => {}
                    }
                    let auth = self.row_auth(facts);
                    let mut audit = self.audit(actor, AUTHENTICATED, &r.address, Some(&r.wallet_id), None, "ok");
                    audit.wallet_mac = Some(auth.mac.clone());
                    let change =
                        Change::Authenticate { address_key: r.address_key.clone(), expected_version: r.version, auth };
                    if self.apply(change, audit).await? == Applied::Done {
                        authenticated += 1;
                    }
                }
            }
            let committed =
                crate::keyring::repair(&self.store, &self.kms, &self.integrity, actor.unwrap_or(&self.actor), true)
                    .await?;
            committed.into_iter().for_each(|e| self.forward(Some(e)));
            Ok((authenticated, refused))
        })
        .await
    }

    /// This environment's authenticated audit head, to keep outside the database: a later
    /// `verify_audit_chain(Some(&checkpoint))` proves the log still extends it, which is the
    /// only way a rollback of the whole database to an earlier copy can be seen.
    pub async fn checkpoint(&self) -> Result<SignedHead> {
        self.run(async {
            self.permit(Permission::AuditRead, "audit_read", "", None, None).await?;
            let head = self.store.audit_head(&self.environment).await?.ok_or_else(|| {
                Error::tampered("this environment's authenticated audit head is missing (it was deleted)")
            })?;
            if !self.integrity.head_ok(&head.environment, head.seq, &head.hash, &head.mac) {
                return Err(Error::tampered("the authenticated audit head fails its MAC (changed or forged)"));
            }
            Ok(head)
        })
        .await
    }
}
