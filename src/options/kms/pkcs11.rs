//! `kms: { provider: 'pkcs11', module, tokenLabel | slot, keyLabel, pin? }`. Without `pin`, the
//! PIN is `SHAREVAULT_PKCS11_PIN` from the environment (so it stays out of the code and config).

use crate::options::Obj;
use sharevault_core::kms::pkcs11::{Pkcs11Config, TokenRef, PIN_VARIABLE};
use sharevault_core::{Error, KmsConfig, Result};

pub fn config(o: &Obj) -> Result<KmsConfig> {
    let token = match (o.string("tokenLabel")?, o.integer("slot")?) {
        (Some(_), Some(_)) => return Err(Error::invalid(o.path_of("slot"), "give tokenLabel or slot, not both")),
        (Some(label), None) => TokenRef::Label(label),
        (None, Some(slot)) => TokenRef::Slot(slot),
        (None, None) => return Err(Error::invalid(o.path_of("tokenLabel"), "is required (or slot)")),
    };
    let pin = match o.string("pin")? {
        Some(p) => p,
        None => std::env::var(PIN_VARIABLE).ok().filter(|p| !p.is_empty()).ok_or_else(|| {
            Error::invalid(o.path_of("pin"), format!("is required (or {PIN_VARIABLE} in the environment)"))
        })?,
    };
    Ok(KmsConfig::Pkcs11(Pkcs11Config {
        module: o.required_string("module")?,
        token,
        key_label: o.required_string("keyLabel")?,
        pin: pin.into(),
    }))
}
