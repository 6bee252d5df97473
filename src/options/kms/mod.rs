//! The `kms` option: `{ provider, ..., previous?: [{ provider, ... }], allowInProduction? }`. Each
//! provider's options are read by its own module, beside the core configuration they build; a new
//! provider is one module and one line here.

mod aws;
mod local;
mod pkcs11;
mod transit;

use super::Obj;
use sharevault_core::{Error, KmsConfig, Result};

/// The providers `kms.provider` accepts.
const PROVIDERS: &str = "'local', 'aws', 'transit' or 'pkcs11'";

/// The keys a vault opens with: the primary, the earlier keys that may still unwrap, and whether
/// the local key is accepted for an environment that looks like production.
pub struct Keys {
    pub primary: KmsConfig,
    pub previous: Vec<KmsConfig>,
    pub local_in_production: bool,
}

pub fn config(o: &Obj) -> Result<Keys> {
    let primary = one(o)?;
    let mut previous = Vec::new();
    for p in o.object_array("previous", "a key option object such as { provider: 'aws', keyId }")?.unwrap_or_default() {
        if p.get("previous")?.is_some() {
            return Err(Error::invalid(p.path_of("previous"), "is only read on the primary key"));
        }
        previous.push(one(&p)?);
    }
    let local_in_production = o.boolean("allowInProduction")?.unwrap_or(false);
    if local_in_production && !matches!(primary, KmsConfig::Local(_)) {
        return Err(Error::invalid(o.path_of("allowInProduction"), "is only for the local provider"));
    }
    Ok(Keys { primary, previous, local_in_production })
}

fn one(o: &Obj) -> Result<KmsConfig> {
    let provider =
        o.string("provider")?.ok_or_else(|| Error::invalid(o.path_of("provider"), format!("must be {PROVIDERS}")))?;
    match provider.as_str() {
        "local" => local::config(o),
        "aws" => aws::config(o),
        "transit" => transit::config(o),
        "pkcs11" => pkcs11::config(o),
        _ => Err(Error::invalid(o.path_of("provider"), format!("must be {PROVIDERS}"))),
    }
}
