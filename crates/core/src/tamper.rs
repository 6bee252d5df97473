//! Tamper evidence at the vault: where the integrity key comes from, turning authentication on
//! for an environment (once), and the checks every read of a wallet row goes through. The MACs
//! themselves are `integrity`'s; what the store keeps is the store's.
//!
//! What is detected (see the README's "What tampering is detected"):
//! - any change to a wallet row's columns, or a row copied to another address or environment:
//!   its MAC, checked before anything else is concluded from the row;
//! - an older copy of one wallet's row put back while the log moved on: the latest write of the
//!   wallet in its environment's audit log records the row MAC it wrote, that audit row must
//!   verify under the environment's key, and the row must carry that MAC;
//! - a deleted wallet's row put back: its latest write is the delete; a row deleted (or moved
//!   away) that the log says exists: `ERR_TAMPERED`, not `ERR_NOT_FOUND`;
//! - audit rows changed, deleted in the middle or at the end, or rehashed: the hash links, each
//!   row's MAC, and the environment's authenticated head (`verifyAuditChain`); a write extends
//!   the log only from that head, found intact (`head_intact`), so a cut is never healed by the
//!   next write: it stays until an operator acknowledges it, in an audited row;
//! - the whole database rolled back to an earlier consistent copy: only against a checkpoint
//!   kept outside it (`verifyAuditChain({ since })`).
//!
//! Nothing is ever authenticated implicitly: rows without a MAC (a database from before rows were
//! authenticated, or rows stripped of theirs) are refused until an operator authenticates them
//! explicitly (`Vault::authenticate_existing_rows`, audited).

use crate::audit::{AuditRecord, ChainHead, SignedHead, GENESIS};
use crate::error::{Error, ErrorCode, Result};
use crate::integrity::{sealed_digest, IntegrityKey, RowFacts};
use crate::kms::{KeyContext, KeyWrapping};
use crate::secret::DataKey;
use crate::store::{HeadRepair, MetadataRow, WalletRow, WalletStore, WrappedKey};
use std::sync::Arc;

/// The key context of an environment's stored integrity key. Not a wallet id the SDK makes
/// (those are UUIDs), and bound by the provider like any data key's context.
pub(crate) const INTEGRITY_CONTEXT: &str = "sharevault:integrity-key";

/// The environment's integrity key: derived from the provider's own key where it has one in
/// the process, otherwise from a data key made once, stored wrapped, and unwrapped at each open
/// (one KMS call), so the database alone can never produce it. Returns the key, the stored
/// record, and the root it was derived from (for moving it under a new primary).
pub async fn integrity_key(
    store: &Arc<dyn WalletStore>,
    kms: &KeyWrapping,
    environment: &str,
) -> Result<(IntegrityKey, WrappedKey, DataKey)> {
    let ctx = KeyContext { environment: environment.to_string(), wallet_id: INTEGRITY_CONTEXT.to_string() };
    let stored = match store.integrity_key(environment).await? {
        Some(k) => k,
        None => {
            // A provider whose key is in the process derives the integrity key from it: what is
            // stored then names that key only (nothing wrapped), so a vault opened with another
            // key is told so at open rather than finding every row's MAC failing.
            let record = if kms.primary_derives_integrity() {
                WrappedKey { kek: kms.current_kek().clone(), wrapped: Vec::new() }
            } else {
                let fresh = kms.generate_uncached(&ctx).await?;
                WrappedKey { kek: fresh.kek, wrapped: fresh.wrapped }
            };
            store.put_integrity_key(environment, &record).await?;
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
                "environment {environment}'s integrity key is wrapped under {} key {}, which this vault was not opened \
                 with: open it with that key as kms, or, to move the environment to a new key, with the new key as \
                 kms and this one in kms.previous",
                stored.kek.provider, stored.kek.key_id
            ),
        ));
    }
    let root = if stored.wrapped.is_empty() {
        kms.integrity_root(&stored.kek).ok_or_else(|| {
            Error::tampered(format!(
                "environment {environment}'s integrity key record names {} key {} with nothing wrapped, and that \
                 provider derives no integrity key: the record was changed",
                stored.kek.provider, stored.kek.key_id
            ))
        })?
    } else {
        kms.unwrap_uncached(&stored.kek, &stored.wrapped, &ctx).await?
    };
    let key = IntegrityKey::derive(&root, environment);
    Ok((key, stored, root))
}

/// Gives a new environment (no wallet or audit row of it anywhere) its authenticated head: the
/// log's last row as it is now (no row of its own: every row the environment writes comes
/// after it, so a head put back later can never vouch for a log cut into the environment's
/// rows). An environment with rows but no head is left without one: its head was deleted, or
/// its rows are from before rows were authenticated; every write is refused until an operator
/// acknowledges the break or authenticates the rows.
pub async fn enable(store: &Arc<dyn WalletStore>, key: &IntegrityKey) -> Result<()> {
    let environment = key.environment();
    if store.audit_head(environment).await?.is_some() || store.environment_has_rows(environment).await? {
        return Ok(());
    }
    match store.repair_head(None, HeadRepair::Create).await {
        // Another process made it first.
        Err(e) if e.code == ErrorCode::Conflict => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Whether the log, whose last row is `tip`, still holds the environment's authenticated head:
/// `at_head` is the hash of the log's row at the head's seq, as read from the log (`None`: no
/// such row); `rows_after`, whether any row of the environment follows the head (the head always
/// moves with the environment's own rows, so one that follows it means the head was put back to
/// an earlier, authentic value). A write extends the log only from there; anything else is a
/// break, refused with `ERR_TAMPERED` until an operator acknowledges it.
pub fn head_intact(
    key: &IntegrityKey,
    head: Option<&SignedHead>,
    tip: &ChainHead,
    at_head: Option<&[u8]>,
    rows_after: bool,
) -> Result<()> {
    let broken = |why: String| {
        Error::tampered(format!(
            "the audit log of environment {} is broken: {why}. Nothing is written (no hydrate, no change) until an \
             operator has checked it (verifyAuditChain) and acknowledged it (acknowledgeAuditBreak)",
            key.environment()
        ))
    };
    let Some(h) = head else {
        return Err(broken(
            "its authenticated head is missing (deleted; or, right after an upgrade from schema 1, not made yet: then \
             an operator runs authenticateExistingRows, which refuses if the log says rows were authenticated before)"
                .into(),
        ));
    };
    if !key.head_ok(&h.environment, h.seq, &h.hash, &h.mac) {
        return Err(broken("its authenticated head fails its MAC (changed or forged)".into()));
    }
    if tip.seq < h.seq {
        return Err(broken(format!(
            "the log ends at row {} but the authenticated head is row {}: rows were deleted",
            tip.seq, h.seq
        )));
    }
    if rows_after {
        return Err(broken(format!(
            "rows of the environment follow its authenticated head (row {}): the head was put back",
            h.seq
        )));
    }
    let found = if h.seq == 0 { Some(&GENESIS[..]) } else { at_head };
    if found != Some(h.hash.as_slice()) {
        return Err(broken(format!(
            "row {} is not the row the authenticated head names: the log was rewritten",
            h.seq
        )));
    }
    Ok(())
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

/// The wallet MAC an environment's own, authenticated audit row records as a wallet's latest
/// state (empty: deleted). A row that does not verify is a forgery.
pub fn audited_state<'a>(key: &IntegrityKey, address: &str, state: &'a AuditRecord) -> Result<&'a [u8]> {
    let authentic = state.environment == key.environment()
        && state.computed_hash() == state.hash.as_slice()
        && state.mac.as_deref().is_some_and(|m| key.audit_row_ok(&state.environment, state.seq, &state.hash, m));
    match state.wallet_mac.as_deref() {
        Some(mac) if authentic => Ok(mac),
        _ => Err(Error::tampered(format!(
            "the audit row (seq {}) that records wallet {address}'s latest state does not verify: it was forged or changed",
            state.seq
        ))),
    }
}

/// Checks a row's MAC and that it is the latest one the vault wrote for its wallet, by the
/// environment's own authenticated history.
fn check(key: &IntegrityKey, facts: &RowFacts<'_>, mac: Option<&[u8]>, state: Option<&AuditRecord>) -> Result<()> {
    let address = facts.address;
    let Some(mac) = mac else {
        return Err(Error::tampered(format!(
            "the row of wallet {address} carries no MAC: it was written or changed outside sharevault (if this \
             database was upgraded from schema 1, an operator authenticates its rows once: authenticateExistingRows)"
        )));
    };
    if !key.row_ok(facts, mac) {
        return Err(Error::tampered(format!(
            "the row of wallet {address} does not verify: it was changed outside sharevault, or was written by a \
             vault with another key"
        )));
    }
    let Some(state) = state else {
        return Err(Error::tampered(format!(
            "wallet {address} has no write in this environment's audit log: its history was deleted, or the row was \
             put there from elsewhere"
        )));
    };
    match audited_state(key, address, state)? {
        [] => Err(Error::tampered(format!("wallet {address} was deleted, and its row was put back"))),
        latest if latest != mac => Err(Error::tampered(format!(
            "the row of wallet {address} is an older copy than the one sharevault last wrote (it was rolled back)"
        ))),
        _ => Ok(()),
    }
}

/// Whether a wallet row carries a MAC that verifies for it as it is (an authentic row, though
/// perhaps not the latest one).
pub fn row_mac_ok(key: &IntegrityKey, r: &WalletRow) -> bool {
    let digest = sealed_digest(&r.sealed);
    r.sealed_digest.as_deref() == Some(digest.as_slice())
        && r.mac.as_deref().is_some_and(|m| key.row_ok(&wallet_facts(r, &digest), m))
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
    check(key, &wallet_facts(r, &digest), r.mac.as_deref(), r.state.as_ref())
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
    check(key, &metadata_facts(r), r.mac.as_deref(), r.state.as_ref())
}

/// No row at `address`: `ERR_NOT_FOUND` if the environment's authenticated history agrees (never
/// stored, or deleted), `ERR_TAMPERED` if it says the wallet exists (its row was deleted or moved
/// away outside sharevault) or the row recording its state does not verify.
pub fn check_absent(key: &IntegrityKey, address: &str, state: Option<&AuditRecord>) -> Result<Error> {
    match state.map(|s| audited_state(key, address, s)).transpose()? {
        Some(mac) if !mac.is_empty() => Err(Error::tampered(format!(
            "wallet {address} has no row, but this environment's audit log records it as stored (seq {}): its row \
             was deleted or moved outside sharevault",
            state.map(|s| s.seq).unwrap_or_default()
        ))),
        _ => Ok(Error::not_found(address)),
    }
}
