//! Where a SQLite database lives, parsed strictly from the `database` option, and how its files
//! and connections are set up: created 0600, WAL, `synchronous=FULL`, `secure_delete`.

use super::db_err;
use crate::error::{Error, Result};
use rusqlite::Connection;
use std::path::PathBuf;

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An absolute path: SQLite interprets a file name as a URI only when it starts with
    /// `file:` (the bundled library is built with `SQLITE_USE_URI`, so not asking for URIs is not
    /// enough), and an absolute path never does. It also keeps the reader connections on the
    /// same file if the process changes directory.
    File(PathBuf),
    Memory,
}

/// The scheme of a URL-looking string (`file:…`, `postgres://…`), if it has one. A one-letter
/// "scheme" is a Windows drive letter, not a scheme.
fn url_scheme(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    (valid && scheme.len() > 1).then_some(scheme)
}

impl Location {
    /// `sqlite://path`, `sqlite:path`, a plain path, or `:memory:`. `file:` URIs and every other
    /// scheme are refused, never taken for a file name.
    pub fn parse(database: &str) -> Result<Location> {
        let bad = |m: String| Error::invalid("database", m);
        if database.contains('\0') {
            return Err(bad("contains a NUL byte".into()));
        }
        let lower = database.to_ascii_lowercase();
        let rest = if lower.starts_with("sqlite://") {
            &database[9..]
        } else if lower.starts_with("sqlite:") {
            &database[7..]
        } else {
            database
        };
        let is_url = rest.len() != database.len();
        if rest.is_empty() {
            return Err(bad("must name a file, or ':memory:'".into()));
        }
        if rest == ":memory:" {
            return Ok(Location::Memory);
        }
        if let Some(scheme) = url_scheme(rest) {
            return Err(bad(if scheme.eq_ignore_ascii_case("file") {
                "file: URIs are not accepted (SQLite would read them as URIs: ':memory:' variants and \
                 query parameters silently change where data goes); use sqlite://path, a plain path, or ':memory:'"
                    .into()
            } else if is_url {
                format!("names a file that looks like a '{scheme}:' URL; use sqlite://path or a plain path")
            } else {
                format!("'{scheme}:' databases are not supported; use sqlite://path, a plain path, or ':memory:'")
            }));
        }
        if is_url && (rest.contains('?') || rest.contains('#')) {
            return Err(bad("sqlite:// URLs take no query parameters or fragments".into()));
        }
        let path = std::path::absolute(rest).map_err(|e| bad(format!("is not a usable path: {e}")))?;
        Ok(Location::File(path))
    }
}

pub(super) fn configure(conn: &Connection, writer: bool) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db_err("setting the busy timeout"))?;
    conn.pragma_update(None, "secure_delete", "ON").map_err(db_err("enabling secure_delete"))?;
    if writer {
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db_err("enabling WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(db_err("setting synchronous=FULL"))?;
    }
    Ok(())
}

#[cfg(unix)]
pub(super) fn create_private_file(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::db_unavailable("creating the database file", e)),
    }
}

#[cfg(not(unix))]
pub(super) fn create_private_file(_path: &std::path::Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_options_are_parsed_strictly() {
        assert_eq!(Location::parse(":memory:").unwrap(), Location::Memory);
        assert_eq!(Location::parse("sqlite://:memory:").unwrap(), Location::Memory);
        assert_eq!(Location::parse("sqlite::memory:").unwrap(), Location::Memory);
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(Location::parse("vault.db").unwrap(), Location::File(cwd.join("vault.db")));
        assert_eq!(Location::parse("sqlite://./vault.db").unwrap(), Location::File(cwd.join("./vault.db")));
        assert_eq!(Location::parse("sqlite:///tmp/v.db").unwrap(), Location::File(PathBuf::from("/tmp/v.db")));
        for bad in [
            "",
            "sqlite://",
            "file::memory:",
            "file:vault.db",
            "FILE:vault.db",
            "file:///tmp/vault.db",
            "sqlite://file:vault.db",
            "sqlite://vault.db?mode=memory",
            "postgres://localhost/db",
            "mysql://localhost/db",
            "vault\0.db",
        ] {
            let e = Location::parse(bad).unwrap_err();
            assert_eq!(e.path.as_deref(), Some("database"), "{bad:?} was accepted");
        }
    }
}
