//! `kms: { provider: 'transit', address, keyName, mount?, namespace?, token? | appRole?, caFile?,
//! timeoutMs?, maxAttempts? }`. Without `token` or `appRole`, the token is `VAULT_TOKEN` (or
//! `BAO_TOKEN`), as Vault's own CLI reads it.

use crate::options::Obj;
use sharevault_core::kms::transit::{
    TransitAuth, TransitConfig, DEFAULT_APPROLE_MOUNT, DEFAULT_ATTEMPTS, DEFAULT_MOUNT, DEFAULT_TIMEOUT,
};
use sharevault_core::{Error, KmsConfig, Result};
use std::time::Duration;
use zeroize::Zeroizing;

pub fn config(o: &Obj) -> Result<KmsConfig> {
    let token = o.string("token")?;
    let app_role = o.object("appRole", "{ roleId, secretId, mount? }")?;
    let auth = match (token, app_role) {
        (Some(_), Some(_)) => return Err(Error::invalid(o.path_of("appRole"), "give token or appRole, not both")),
        (Some(t), None) => TransitAuth::Token(Zeroizing::new(t)),
        (None, Some(a)) => TransitAuth::AppRole {
            role_id: a.required_string("roleId")?,
            secret_id: Zeroizing::new(a.required_string("secretId")?),
            mount: a.string("mount")?.unwrap_or_else(|| DEFAULT_APPROLE_MOUNT.to_string()),
        },
        (None, None) => match std::env::var("VAULT_TOKEN").or_else(|_| std::env::var("BAO_TOKEN")) {
            Ok(t) if !t.is_empty() => TransitAuth::Token(Zeroizing::new(t)),
            _ => {
                return Err(Error::invalid(
                    o.path_of("token"),
                    "is required (or appRole, or VAULT_TOKEN in the environment)",
                ))
            }
        },
    };
    Ok(KmsConfig::Transit(TransitConfig {
        address: o.required_string("address")?,
        key_name: o.required_string("keyName")?,
        mount: o.string("mount")?.unwrap_or_else(|| DEFAULT_MOUNT.to_string()),
        namespace: o.string("namespace")?,
        auth,
        ca_file: o.string("caFile")?,
        timeout: o.integer("timeoutMs")?.map_or(DEFAULT_TIMEOUT, Duration::from_millis),
        // Out-of-range values are refused by the core, never clamped: saturate, don't wrap.
        max_attempts: o.integer("maxAttempts")?.map_or(DEFAULT_ATTEMPTS, |n| u32::try_from(n).unwrap_or(u32::MAX)),
    }))
}
