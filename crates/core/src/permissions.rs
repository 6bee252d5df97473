//! What a vault handle may do: fixed when it is opened (`allow: [...]`), refused otherwise with
//! `ERR_FORBIDDEN` before anything is read or any key is touched, and the refusal is audited
//! (outcome `denied`). Without `allow`, a handle may do everything but the most dangerous
//! things: hand out shares for a full-key export, delete a wallet, the operator's integrity
//! steps (acknowledging a broken audit log, authenticating rows from before schema 2), and the
//! key lifecycle (rotating, retiring a key).
//!
//! A hydrate needs the permission of its purpose: `export` → `hydrate:export`, `backup` →
//! `backup`, `refresh` / `reshare` → `replace`, anything else → `hydrate:sign`. (The purpose is
//! what the caller declares; the SDK wrapper declares these for the SDK's calls.)

use crate::error::{Error, ErrorCode, Result};

/// One thing a handle may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// `storeWallet` (and recovering a new wallet's sealed state).
    Store,
    /// Hydrating for signing and every purpose not listed below.
    HydrateSign,
    /// Hydrating for a full-key export.
    HydrateExport,
    /// `mergeBackupInfo`, and hydrating for a backup.
    Backup,
    /// `replaceShares` (refresh, reshare, recovering sealed shares), and hydrating for them.
    Replace,
    /// `deleteWallet`.
    Delete,
    /// `auditLog`, `verifyAuditChain`.
    AuditRead,
    /// The operator's integrity steps: `acknowledgeAuditBreak`, `authenticateExistingRows`.
    IntegrityAdmin,
    /// The key lifecycle: `rotate` (re-wrap, re-encrypt) and `retireKey`; importing the
    /// delegation webhooks' RSA key.
    KeysAdmin,
    /// Receiving Dynamic's delegation webhooks (storing, replacing and shredding delegations as
    /// Dynamic says; a local `revokeDelegation` needs `delete`).
    DelegationWrite,
    /// Hydrating a delegation (a user's delegated share and wallet API key) for one call.
    HydrateDelegated,
}

/// Every permission, as written in `allow`.
pub const ALL: [(&str, Permission); 11] = [
    ("store", Permission::Store),
    ("hydrate:sign", Permission::HydrateSign),
    ("hydrate:export", Permission::HydrateExport),
    ("backup", Permission::Backup),
    ("replace", Permission::Replace),
    ("delete", Permission::Delete),
    ("audit:read", Permission::AuditRead),
    ("integrity:admin", Permission::IntegrityAdmin),
    ("keys:admin", Permission::KeysAdmin),
    ("delegation:write", Permission::DelegationWrite),
    ("hydrate:delegated", Permission::HydrateDelegated),
];

impl Permission {
    /// The permission that keeping an SDK call's result needs: a new `wallet` is stored
    /// (`store`), new `backup` info merged (`backup`), new `shares` written (`replace`): the
    /// same permissions `storeWallet`, `mergeBackupInfo` and `replaceShares` require.
    pub fn for_result(result: &str) -> Option<Permission> {
        match result {
            "wallet" => Some(Permission::Store),
            "backup" => Some(Permission::Backup),
            "shares" => Some(Permission::Replace),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        ALL.iter().find(|(_, p)| *p == self).map(|(n, _)| *n).unwrap_or("?")
    }

    fn bit(self) -> u16 {
        1 << (ALL.iter().position(|(_, p)| *p == self).unwrap_or(0) as u16)
    }

    /// The permission a hydrate for `purpose` needs (see the module doc).
    pub fn for_hydrate(purpose: Option<&str>) -> Permission {
        match purpose.map(|p| p.trim().to_ascii_lowercase()).as_deref() {
            Some("export") => Permission::HydrateExport,
            Some("backup") => Permission::Backup,
            Some("refresh" | "reshare") => Permission::Replace,
            _ => Permission::HydrateSign,
        }
    }
}

/// The grants of one handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permissions(u16);

impl Default for Permissions {
    /// Everything but `hydrate:export`, `delete`, `integrity:admin`, `keys:admin` and
    /// `hydrate:delegated`.
    fn default() -> Self {
        Permissions::of(&[
            Permission::Store,
            Permission::HydrateSign,
            Permission::Backup,
            Permission::Replace,
            Permission::AuditRead,
            Permission::DelegationWrite,
        ])
    }
}

impl Permissions {
    pub fn of(grants: &[Permission]) -> Permissions {
        Permissions(grants.iter().fold(0, |acc, p| acc | p.bit()))
    }

    /// Every permission (tests, tools).
    pub fn all() -> Permissions {
        Permissions::of(&ALL.map(|(_, p)| p))
    }

    /// Parses `allow`: exactly the listed permissions. An unknown one is `ERR_INVALID_INPUT` at
    /// `allow[i]` (a typo must not silently grant nothing, nor something else).
    pub fn parse<S: AsRef<str>>(allow: &[S]) -> Result<Permissions> {
        let mut grants = Vec::with_capacity(allow.len());
        for (i, item) in allow.iter().enumerate() {
            match ALL.iter().find(|(n, _)| *n == item.as_ref()) {
                Some((_, p)) => grants.push(*p),
                None => {
                    let known: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
                    return Err(Error::invalid(
                        format!("allow[{i}]"),
                        format!("{:?} is not a permission (known: {})", item.as_ref(), known.join(", ")),
                    ));
                }
            }
        }
        Ok(Permissions::of(&grants))
    }

    /// The names of the granted permissions, in `ALL`'s order.
    pub fn names(&self) -> Vec<&'static str> {
        ALL.iter().filter(|(_, p)| self.allows(*p)).map(|(n, _)| *n).collect()
    }

    pub fn allows(&self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    /// `ERR_FORBIDDEN` unless `p` is granted.
    pub fn require(&self, p: Permission) -> Result<()> {
        if self.allows(p) {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::Forbidden,
            format!(
                "this vault handle may not do that: it needs the {} permission (open it with allow including '{}')",
                p.name(),
                p.name()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_grants_everything_but_export_delete_and_the_operator_steps() {
        let d = Permissions::default();
        for (name, p) in ALL {
            let withheld = matches!(
                p,
                Permission::HydrateExport
                    | Permission::Delete
                    | Permission::IntegrityAdmin
                    | Permission::KeysAdmin
                    | Permission::HydrateDelegated
            );
            assert_eq!(d.allows(p), !withheld, "{name}");
        }
        assert_eq!(d.require(Permission::Delete).unwrap_err().code, ErrorCode::Forbidden);
    }

    #[test]
    fn a_hydrate_needs_its_purposes_permission_in_any_spelling() {
        for (purpose, p) in [
            (Some("export"), Permission::HydrateExport),
            (Some(" EXPORT "), Permission::HydrateExport),
            (Some("backup"), Permission::Backup),
            (Some("refresh"), Permission::Replace),
            (Some("Reshare"), Permission::Replace),
            (Some("sign"), Permission::HydrateSign),
            (Some("exported-backup"), Permission::HydrateSign),
            (None, Permission::HydrateSign),
        ] {
            assert_eq!(Permission::for_hydrate(purpose), p, "{purpose:?}");
        }
    }

    #[test]
    fn allow_grants_exactly_what_it_lists_and_refuses_unknown_names() {
        let signer = Permissions::parse(&["hydrate:sign"]).unwrap();
        assert!(signer.allows(Permission::HydrateSign));
        assert!(!signer.allows(Permission::Store));
        assert_eq!(Permissions::parse::<&str>(&[]).unwrap(), Permissions::of(&[]));
        let e = Permissions::parse(&["hydrate:export", "hydrate:exprot"]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput);
        assert_eq!(e.path.as_deref(), Some("allow[1]"));
        assert_eq!(Permissions::parse(&ALL.map(|(n, _)| n)).unwrap(), Permissions::all());
    }
}
