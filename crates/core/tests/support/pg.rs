//! A throwaway PostgreSQL database per test: created on the server `SHAREVAULT_PG_ADMIN_URL`
//! names (default: the local trust-auth server), dropped afterwards. Without a reachable server
//! the tests that need it say so on stderr and skip, except under `CI=true`, where they fail:
//! CI never skips them.

use sqlx::Connection;

pub struct TestDb {
    pub url: String,
    admin: String,
    name: String,
}

fn admin_url() -> String {
    std::env::var("SHAREVAULT_PG_ADMIN_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let root = base.rsplit_once('/').map_or(base, |(r, _)| r);
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

impl TestDb {
    /// A fresh database, or `None` (with a visible message) when no server is reachable outside CI.
    pub async fn create() -> Option<TestDb> {
        let admin = admin_url();
        if admin == "off" {
            // Explicitly off (the release workflow's platform jobs without a server), even in CI.
            use std::io::Write;
            let _ =
                writeln!(std::io::stderr(), "SKIPPED: the PostgreSQL part of this test (SHAREVAULT_PG_ADMIN_URL=off)");
            return None;
        }
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("PostgreSQL is not reachable at SHAREVAULT_PG_ADMIN_URL and CI=true: {e}");
                }
                // Written past the test harness's output capture, so the skip is visible.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: the PostgreSQL part of this test (no server reachable: {e}); set SHAREVAULT_PG_ADMIN_URL"
                );
                return None;
            }
        };
        let name = format!("sharevault_test_{}_{}", std::process::id(), rand_suffix());
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
        conn.close().await.ok();
        Some(TestDb { url: with_database(&admin, &name), admin, name })
    }

    pub async fn drop(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)))
                .execute(&mut conn)
                .await;
        }
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// A PostgreSQL cluster of the test's own, on a free port, that the test can stop and start
/// (outages) or configure for TLS, without touching the shared server. Needs the server binaries
/// (`initdb`, `pg_ctl`) and, when run as root, a `postgres` user to own the data directory.
pub struct TempCluster {
    pub port: u16,
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
}

fn server_bin() -> Option<std::path::PathBuf> {
    let mut versions: Vec<_> =
        std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten().map(|e| e.path().join("bin")).collect();
    versions.sort();
    versions.into_iter().rev().find(|b| b.join("initdb").exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TempCluster {
    /// A fresh cluster (trust auth on loopback), started; `None` with a visible message when the
    /// server binaries are not installed (and a panic under CI=true).
    pub fn start(extra_conf: &str, files: &[(&str, &[u8])]) -> Option<TempCluster> {
        let Some(bin) = server_bin() else {
            if std::env::var("CI").as_deref() == Ok("true") && admin_url() != "off" {
                panic!("the PostgreSQL server binaries are not installed and CI=true");
            }
            use std::io::Write;
            let _ =
                writeln!(std::io::stderr(), "SKIPPED: a test that needs its own PostgreSQL cluster (initdb not found)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let cluster = TempCluster { port: free_port(), bin, dir };
        cluster.run_as_owner("initdb", &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres", "--no-sync"]);
        for (name, bytes) in files {
            let p = data.join(name);
            std::fs::write(&p, bytes).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            cluster.chown(&p);
        }
        let conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\n{extra_conf}\n",
            cluster.port,
            cluster.dir.path().display()
        );
        let mut f = std::fs::OpenOptions::new().append(true).open(data.join("postgresql.conf")).unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        cluster.start_server();
        Some(cluster)
    }

    fn is_root() -> bool {
        std::process::Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
    }

    fn chown(&self, p: &std::path::Path) {
        if Self::is_root() {
            let ok = std::process::Command::new("chown").args(["-R", "postgres:postgres"]).arg(p).status().unwrap();
            assert!(ok.success());
        }
    }

    fn run_as_owner(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let status = if Self::is_root() {
            self.chown(self.dir.path());
            std::process::Command::new("runuser").args(["-u", "postgres", "--"]).arg(&exe).args(args).output().unwrap()
        } else {
            std::process::Command::new(&exe).args(args).output().unwrap()
        };
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        assert!(status.status.success(), "{tool} failed: {}{log}", String::from_utf8_lossy(&status.stderr));
    }

    pub fn start_server(&self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("server.log");
        self.chown(self.dir.path());
        self.run_as_owner("pg_ctl", &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-w", "start"]);
    }

    /// Stops the server (`fast`: connections are cut, as in a crash of the database host).
    pub fn stop_server(&self) {
        let data = self.dir.path().join("data");
        self.run_as_owner("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"]);
    }

    pub fn url(&self, query: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres{query}", self.port)
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let exe = self.bin.join("pg_ctl");
        let args = ["-D", data.to_str().unwrap(), "-m", "immediate", "stop"];
        let _ = if Self::is_root() {
            std::process::Command::new("runuser").args(["-u", "postgres", "--"]).arg(&exe).args(args).output()
        } else {
            std::process::Command::new(&exe).args(args).output()
        };
    }
}
