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
