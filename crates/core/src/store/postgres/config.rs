//! The `postgres://` / `postgresql://` option: parsed with sqlx, checked for transport security,
//! and never shown with its password (no `Debug` of the URL or of sqlx's options anywhere).

use crate::error::{Error, Result};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

/// Pool settings (`pool: { maxConnections, acquireTimeoutMs, statementTimeoutMs }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    pub max_connections: u32,
    /// How long a call waits for a connection before `ERR_DB_UNAVAILABLE`.
    pub acquire_timeout: Duration,
    /// The server aborts a statement that runs longer (`statement_timeout`).
    pub statement_timeout: Duration,
}

pub const MAX_CONNECTIONS: u64 = 1000;
pub const MAX_TIMEOUT_MS: u64 = 600_000;

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

impl PoolConfig {
    /// The options as given (each optional), checked against their ranges.
    pub fn from_options(
        max_connections: Option<u64>,
        acquire_ms: Option<u64>,
        statement_ms: Option<u64>,
    ) -> Result<Self> {
        let d = PoolConfig::default();
        let max_connections = match max_connections {
            None => d.max_connections,
            Some(n) if (1..=MAX_CONNECTIONS).contains(&n) => n as u32,
            Some(_) => {
                return Err(Error::invalid(
                    "pool.maxConnections",
                    format!("must be an integer from 1 to {MAX_CONNECTIONS}"),
                ))
            }
        };
        let ms = |v: Option<u64>, path: &str, default: Duration| match v {
            None => Ok(default),
            Some(n) if (1..=MAX_TIMEOUT_MS).contains(&n) => Ok(Duration::from_millis(n)),
            Some(_) => {
                Err(Error::invalid(path, format!("must be an integer from 1 to {MAX_TIMEOUT_MS} (milliseconds)")))
            }
        };
        Ok(PoolConfig {
            max_connections,
            acquire_timeout: ms(acquire_ms, "pool.acquireTimeoutMs", d.acquire_timeout)?,
            statement_timeout: ms(statement_ms, "pool.statementTimeoutMs", d.statement_timeout)?,
        })
    }
}

/// A parsed PostgreSQL target. Holds the password (inside sqlx's options), so its `Debug` shows
/// only host, port and database.
#[derive(Clone)]
pub struct PgTarget {
    pub(super) options: PgConnectOptions,
    host: String,
    port: u16,
    database: String,
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgTarget {{ postgres://{}:{}/{} }}", self.host, self.port, self.database)
    }
}

impl PartialEq for PgTarget {
    fn eq(&self, other: &Self) -> bool {
        (&self.host, self.port, &self.database) == (&other.host, other.port, &other.database)
    }
}

impl Eq for PgTarget {}

/// Whether a connection to `host` never leaves the machine: a Unix socket, `localhost`, or a
/// loopback address.
fn is_local(host: &str) -> bool {
    host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuses a URL whose user name or password holds a character that ends the authority
/// (`/`, `?`, `#`) or a second `@` unencoded: the URL parser would take part of the password for
/// the host, port or database, which messages name. Says so without echoing any part of it.
fn check_userinfo(database: &str) -> Result<()> {
    let rest = database.split_once("://").map_or(database, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(end);
    if authority.matches('@').count() > 1 || after.contains('@') {
        return Err(Error::invalid(
            "database",
            "is not a valid postgres:// URL: its user name or password holds a reserved character (/ ? # @ :) that is \
             not percent-encoded (write it as %2F %3F %23 %40 %3A); the URL is not repeated here because it holds the \
             password",
        ));
    }
    Ok(())
}

impl PgTarget {
    /// Parses a `postgres://` or `postgresql://` URL. Without TLS that is required (`sslmode`
    /// `require`, `verify-ca` or `verify-full`), a host that is not loopback is refused unless
    /// `allow_insecure_transport`: `prefer` (the default) silently falls back to plain text.
    pub fn parse(database: &str, allow_insecure_transport: bool) -> Result<PgTarget> {
        check_userinfo(database)?;
        // sqlx's parse errors can quote the URL: never pass one on.
        let options = PgConnectOptions::from_str(database)
            .map_err(|_| Error::invalid("database", "is not a valid postgres:// URL"))?;
        let host = options.get_host().to_string();
        let port = options.get_port();
        let db = options.get_database().unwrap_or("").to_string();
        let tls_required =
            matches!(options.get_ssl_mode(), PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull);
        if !tls_required && !is_local(&host) && !allow_insecure_transport {
            return Err(Error::invalid(
                "database",
                format!(
                    "connects to {host} without requiring TLS; add sslmode=verify-full (with sslrootcert=<CA file>) \
                     to the URL, or set allowInsecureTransport: true if the network is trusted"
                ),
            ));
        }
        Ok(PgTarget { options: options.application_name("sharevault"), host, port, database: db })
    }

    /// Host, port and database, for messages (never the user or password).
    pub fn describe(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_to_a_remote_host_is_refused_unless_allowed() {
        for ok in [
            "postgres://u:p@127.0.0.1/db",
            "postgresql://u@localhost:5433/db",
            "postgres://u@[::1]/db",
            "postgres://u@db.example.com/db?sslmode=require",
            "postgres://u@db.example.com/db?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        ] {
            PgTarget::parse(ok, false).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "postgres://u@db.example.com/db",
            "postgres://u@10.0.0.5/db?sslmode=prefer",
            "postgres://u@h/db?sslmode=disable",
        ] {
            let e = PgTarget::parse(bad, false).unwrap_err();
            assert_eq!(e.path.as_deref(), Some("database"), "{bad}");
            PgTarget::parse(bad, true).unwrap();
        }
    }

    #[test]
    fn the_password_is_never_shown() {
        let t = PgTarget::parse("postgres://alice:hunter2-secret@127.0.0.1:5432/vault", false).unwrap();
        assert!(!format!("{t:?} {}", t.describe()).contains("hunter2"));
        let e = PgTarget::parse("postgres://alice:hunter2-secret@db.example.com/vault", false).unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
        let e = PgTarget::parse("postgres://alice:hunter2-secret@127.0.0.1:notaport/vault", false).unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn no_reserved_character_in_the_user_or_password_lets_it_into_a_message() {
        for c in ['/', '@', ':', '?', '#', '[', ']', '%', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ' '] {
            for url in [
                format!("postgres://app{c}u:S3cr{c}etPw@db.internal:5432/wallets?sslmode=require"),
                format!("postgres://app:2024{c}Spring@db.internal/wallets"),
                format!("postgres://app:2024{c}Spring@127.0.0.1/wallets"),
            ] {
                let shown = match PgTarget::parse(&url, false) {
                    Ok(t) => format!("{t:?} {}", t.describe()),
                    Err(e) => e.to_string(),
                };
                for secret in ["S3cr", "etPw", "2024", "Spring"] {
                    assert!(!shown.contains(secret), "{c:?}: {shown}");
                }
            }
            // Percent-encoded, the same password is accepted.
            let encoded: String = format!("2024{c}Spring").bytes().map(|b| format!("%{b:02X}")).collect();
            let t = PgTarget::parse(&format!("postgres://app:{encoded}@127.0.0.1/wallets"), false).unwrap();
            assert_eq!(t.describe(), "127.0.0.1:5432/wallets");
        }
    }

    #[test]
    fn pool_options_are_checked() {
        assert_eq!(PoolConfig::from_options(None, None, None).unwrap(), PoolConfig::default());
        assert_eq!(
            PoolConfig::from_options(Some(0), None, None).unwrap_err().path.as_deref(),
            Some("pool.maxConnections")
        );
        assert_eq!(
            PoolConfig::from_options(None, Some(0), None).unwrap_err().path.as_deref(),
            Some("pool.acquireTimeoutMs")
        );
        assert_eq!(
            PoolConfig::from_options(None, None, Some(600_001)).unwrap_err().path.as_deref(),
            Some("pool.statementTimeoutMs")
        );
    }
}
