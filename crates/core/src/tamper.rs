//! Tamper evidence at the vault: where the integrity key comes from, turning authentication on
//! for an environment (once), and the checks every read of a wallet row goes through. The MACs
//! themselves are `integrity`'s; what the store keeps is the store's.
//!
//! What is detected (see the README's "What tampering is detected"):
//! - any change to a wallet row's columns, or a row copied to another address: its MAC;
//! - an older copy of one wallet's row put back while the log moved on: the latest write of the
//!   wallet in the audit log records the row MAC it wrote, and the row must carry that MAC;
//! - a deleted wallet's row put back: its latest write is the delete;
//! - audit rows changed, deleted in the middle or at the end, or rehashed: the hash links, each
//!   row's MAC, and the environment's authenticated head (`verifyAuditChain`);
//! - the whole database rolled back to an earlier consistent copy: only against a checkpoint
//!   kept outside it (`verifyAuditChain({ since })`).

use crate::audit::{now_ms, AuditEntry, SignedHead, GENESIS};
use crate::error::{Error, ErrorCode, Result};
use crate::integrity::{sealed_digest, IntegrityKey, RowFacts};
use crate::kms::{KeyContext, KeyWrapping};
use crate::store::{MetadataRow, RowAuth, WalletRow, WalletStore, WrappedKey, INTEGRITY_ENABLED};
use std::sync::Arc;

/// The key context of an environment's stored integrity key. Not a wallet id the SDK makes
/// (those are UUIDs), and bound by the provider like any data key's context.
const INTEGRITY_CONTEXT: &str = "sharevault:integrity-key";

/// How many rows the first-open backfill authenticates per statement.
const BACKFILL_PAGE: u32 = 500;

/// The environment's integrity key: derived from the provider's own key where it has one in
/// the process, otherwise from a data key made once, stored wrapped, and unwrapped at each open
/// (one KMS call), so the database alone can never produce it.
pub async fn integrity_key(store: &Arc<dyn WalletStore>, kms: &KeyWrapping, environment: &str) -> Result<IntegrityKey> {
    if let Some(root) = kms.integrity_root() {
        return Ok(IntegrityKey::derive(&root, environment));
    }
    let ctx = KeyContext { environment: environment.to_string(), wallet_id: INTEGRITY_CONTEXT.to_string() };
    let stored = match store.integrity_key(environment).await? {
        Some(k) => k,
        None => {
            let fresh = kms.generate_uncached(&ctx).await?;
            store.put_integrity_key(environment, &WrappedKey { kek: fresh.kek, wrapped: fresh.wrapped }).await?;
            // Another process may have stored its key first: every process uses the stored one.
            store
                .integrity_key(environment)
                .await?
                .ok_or_else(|| Error::internal("the integrity key was not stored"))?
        }
    };
    if !kms.trusts(&stored.kek) {
        return Err(Error::new(
            ErrorCode::KmsDenied,
            format!(
                "environment {environment}'s integrity key is wrapped under {} key {}, not the key this vault is \
                 configured with: open it with that key (moving an environment to another key is not supported yet)",
                stored.kek.provider, stored.kek.key_id
            ),
        ));
    }
    let root = kms.unwrap_uncached(&stored.kek, &stored.wrapped, &ctx).await?;
    Ok(IntegrityKey::derive(&root, environment))
}

/// Turns authentication on for the environment the first time a vault of this version opens it:
/// MACs the rows written before (trusting them as they are, once) and records that in the log,
/// which also makes the environment's authenticated head; a fresh environment (no rows of any
/// kind) just gets its head, at seq 0. Never again afterwards: once the log
/// says so (or any row or audit row carries a MAC), a row without a MAC is tampered, not old.
pub async fn enable(store: &Arc<dyn WalletStore>, key: &IntegrityKey, actor: &str) -> Result<()> {
    let environment = key.environment();
    if store.audit_head(environment).await?.is_some() {
        return Ok(());
    }
    let state = store.integrity_state(environment).await?;
    if state.authenticated_rows || state.enabled_before {
        // The head was deleted: left missing, for `verifyAuditChain` to report.
        return Ok(());
    }
    let mut after: Option<String> = None;
    let mut authenticated = 0u64;
    loop {
        let rows = store.unauthenticated(environment, after.as_deref(), BACKFILL_PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.address_key.clone());
        let updates = rows
            .iter()
            .map(|r| {
                let digest = sealed_digest(&r.sealed);
                let mac = key.row_tag(&wallet_facts(r, &digest));
                (r.address_key.clone(), r.version, RowAuth { mac, sealed_digest: digest })
            })
            .collect();
        authenticated += store.authenticate(updates).await?;
    }
    if authenticated == 0 && !state.audit_rows {
        // A fresh environment: its head starts before the first row, with no row to say so.
        let hash = GENESIS.to_vec();
        let mac = key.head_tag(0, &hash);
        return store.create_head(&SignedHead { environment: environment.to_string(), seq: 0, hash, mac }).await;
    }
    store
        .append_audit(AuditEntry {
            at_ms: now_ms(),
            environment: environment.to_string(),
            actor: actor.to_string(),
            action: INTEGRITY_ENABLED,
            address: String::new(),
            wallet_id: None,
            purpose: Some(format!("{authenticated} existing wallet rows authenticated")),
            outcome: "ok".to_string(),
            wallet_mac: None,
        })
        .await
}

pub fn wallet_facts<'a>(r: &'a WalletRow, digest: &'a [u8]) -> RowFacts<'a> {
    RowFacts {
        environment: &r.environment,
        wallet_id: &r.wallet_id,
        address: &r.address,
        address_key: &r.address_key,
        chain_name: &r.chain_name,
        metadata_json: &r.metadata_json,
        generation: r.generation,
        version: r.version,
        sealed_digest: digest,
    }
}

/// Checks a row's MAC and that it is the latest one the vault wrote for its wallet.
fn check(key: &IntegrityKey, facts: &RowFacts<'_>, mac: Option<&[u8]>, audited: Option<&[u8]>) -> Result<()> {
    let address = facts.address;
    let Some(mac) = mac else {
        return Err(Error::tampered(format!(
            "the row of wallet {address} carries no MAC: it was written or changed outside sharevault"
        )));
    };
    if !key.row_ok(facts, mac) {
        return Err(Error::tampered(format!(
            "the row of wallet {address} does not verify: it was changed outside sharevault, or was written by a \
             vault with another key"
        )));
    }
    match audited {
        Some([]) => Err(Error::tampered(format!("wallet {address} was deleted, and its row was put back"))),
        Some(latest) if latest != mac => Err(Error::tampered(format!(
            "the row of wallet {address} is an older copy than the one sharevault last wrote (it was rolled back)"
        ))),
        _ => Ok(()),
    }
}

pub fn check_wallet(key: &IntegrityKey, r: &WalletRow) -> Result<()> {
    let digest = sealed_digest(&r.sealed);
    // The digest metadata reads check the MAC with must be this record's too.
    if r.mac.is_some() && r.sealed_digest.as_deref() != Some(digest.as_slice()) {
        return Err(Error::tampered(format!(
            "the sealed record of wallet {} does not match the digest its row carries",
            r.address
        )));
    }
    check(key, &wallet_facts(r, &digest), r.mac.as_deref(), r.audited_mac.as_deref())
}

/// The facts of a metadata row, with the sealed-record digest it stores (empty if it has none,
/// which no MAC verifies).
pub fn metadata_facts(r: &MetadataRow) -> RowFacts<'_> {
    RowFacts {
        environment: &r.environment,
        wallet_id: &r.wallet_id,
        address: &r.address,
        address_key: &r.address_key,
        chain_name: &r.chain_name,
        metadata_json: &r.metadata_json,
        generation: r.generation,
        version: r.version,
        sealed_digest: r.sealed_digest.as_deref().unwrap_or_default(),
    }
}

pub fn check_metadata(key: &IntegrityKey, r: &MetadataRow) -> Result<()> {
    check(key, &metadata_facts(r), r.mac.as_deref(), r.audited_mac.as_deref())
}
