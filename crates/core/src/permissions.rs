//! What a vault may do beyond storing and hydrating for ordinary calls: granted when it is
//! opened (`allow: ['hydrate:export']`), refused otherwise with `ERR_FORBIDDEN`. Today one
//! permission: handing out shares for a full-key export, the most dangerous call there is. The
//! purpose of a hydrate is what the caller declares (`sign`, `export`, …); the SDK wrapper declares
//! `export` for `exportKey` / `exportPrivateKey`, so without the grant it never calls the SDK.

use crate::error::{Error, ErrorCode, Result};

/// The grants of one vault. The default grants nothing beyond the ordinary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Permissions {
    hydrate_export: bool,
}

/// Every permission there is, as written in `allow`.
pub const ALL: &[&str] = &["hydrate:export"];

impl Permissions {
    /// Parses `allow`; an unknown permission is `ERR_INVALID_INPUT` at `allow[i]` (a typo must
    /// not silently grant nothing, nor something else).
    pub fn parse<S: AsRef<str>>(allow: &[S]) -> Result<Permissions> {
        let mut p = Permissions::default();
        for (i, item) in allow.iter().enumerate() {
            match item.as_ref() {
                "hydrate:export" => p.hydrate_export = true,
                other => {
                    return Err(Error::invalid(
                        format!("allow[{i}]"),
                        format!("{other:?} is not a permission (known: {})", ALL.join(", ")),
                    ))
                }
            }
        }
        Ok(p)
    }

    /// Whether a hydrate for `purpose` may go ahead: `export` (in any letter case, with any
    /// surrounding space) needs `hydrate:export`.
    pub fn check_hydrate(&self, purpose: Option<&str>) -> Result<()> {
        let export = purpose.is_some_and(|p| p.trim().eq_ignore_ascii_case("export"));
        if export && !self.hydrate_export {
            return Err(Error::new(
                ErrorCode::Forbidden,
                "a hydrate for export needs the hydrate:export permission (open the vault with allow: ['hydrate:export'])",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_needs_the_grant_in_any_spelling() {
        let none = Permissions::default();
        for p in ["export", "EXPORT", " Export "] {
            assert_eq!(none.check_hydrate(Some(p)).unwrap_err().code, ErrorCode::Forbidden, "{p}");
        }
        for p in [None, Some("sign"), Some("exported-backup")] {
            assert!(none.check_hydrate(p).is_ok());
        }
        let granted = Permissions::parse(&["hydrate:export"]).unwrap();
        assert!(granted.check_hydrate(Some("export")).is_ok());
    }

    #[test]
    fn an_unknown_permission_is_refused_with_its_index() {
        let e = Permissions::parse(&["hydrate:export", "hydrate:exprot"]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput);
        assert_eq!(e.path.as_deref(), Some("allow[1]"));
    }
}
