//! The `kms` option: `{ provider, ... }`. Each provider's options are read by its own module,
//! beside the core configuration they build; a new provider is one module and one line here.

mod aws;
mod local;

use super::Obj;
use sharevault_core::{Error, KmsConfig, Result};

/// The providers `kms.provider` accepts.
const PROVIDERS: &str = "'local' or 'aws'";

pub fn config(o: &Obj) -> Result<KmsConfig> {
    let provider =
        o.string("provider")?.ok_or_else(|| Error::invalid(o.path_of("provider"), format!("must be {PROVIDERS}")))?;
    match provider.as_str() {
        "local" => local::config(o),
        "aws" => aws::config(o),
        _ => Err(Error::invalid(o.path_of("provider"), format!("must be {PROVIDERS}"))),
    }
}
