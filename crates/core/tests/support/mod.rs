//! Shared set-up for the integration tests (each test file compiles what it uses).
#![allow(dead_code)]

pub mod moto;
pub mod openbao;
pub mod pg;
pub mod softhsm;

use sharevault_core::shares::Encoder;
use sharevault_core::SecretBuf;

/// One share with this `secretShare`, encoded as the binding would.
pub fn shares(secret: &str) -> SecretBuf {
    let mut e = Encoder::new();
    e.begin_array(1).unwrap();
    e.begin_object(1).unwrap();
    e.key("secretShare").unwrap();
    e.string(secret).unwrap();
    e.finish()
}

/// The metadata of EVM 2/2 wallet number `i` (address `0x` + `i` as 40 hex digits).
pub fn metadata(i: usize) -> String {
    format!(
        r#"{{"walletId":"w-{i}","accountAddress":"0x{i:040x}","chainName":"EVM","thresholdSignatureScheme":"TWO_OF_TWO","externalServerKeySharesBackupInfo":{{"passwordEncrypted":false,"backups":{{}}}},"extra":{i}}}"#
    )
}

/// A fresh database on every backend this machine has: a SQLite file in `dir`, and a throwaway
/// PostgreSQL database when the server is reachable (see `pg::TestDb`; drop it when done).
pub async fn databases(dir: &std::path::Path) -> (Vec<(&'static str, String)>, Option<pg::TestDb>) {
    let mut urls = vec![("sqlite", format!("sqlite://{}", dir.join("v.db").display()))];
    let pg = pg::TestDb::create().await;
    if let Some(db) = &pg {
        urls.push(("postgres", db.url.clone()));
    }
    (urls, pg)
}

/// SQL run as someone with write access to the database and no key: a connection of its own.
pub mod sql {
    fn sqlite_path(url: &str) -> Option<&str> {
        url.strip_prefix("sqlite://")
    }

    fn conn(path: &str) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(path).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        c
    }

    pub async fn exec(url: &str, sql: &str) {
        match sqlite_path(url) {
            Some(path) => conn(path).execute_batch(sql).unwrap(),
            None => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }

    pub async fn count_rows(url: &str) -> u64 {
        match sqlite_path(url) {
            Some(path) => rusqlite::Connection::open(path)
                .unwrap()
                .query_row("SELECT count(*) FROM wallets", [], |r| r.get::<_, i64>(0))
                .unwrap() as u64,
            None => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM wallets").fetch_one(&pool).await.unwrap();
                pool.close().await;
                n as u64
            }
        }
    }

    /// Rotation leases still held (SQLite: rows of `rotation_claims`; PostgreSQL: the in-row lease).
    pub async fn leases(url: &str) -> u64 {
        match sqlite_path(url) {
            Some(path) => {
                conn(path).query_row("SELECT count(*) FROM rotation_claims", [], |r| r.get::<_, i64>(0)).unwrap() as u64
            }
            None => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM wallets WHERE rotation_claim IS NOT NULL")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                n as u64
            }
        }
    }

    /// Every row's wrapped data key and ciphertext.
    pub async fn sealed_bytes(url: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        match sqlite_path(url) {
            Some(path) => {
                let c = conn(path);
                let mut s = c.prepare("SELECT wrapped_dek, ciphertext FROM wallets").unwrap();
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
            }
            None => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let rows: Vec<(Vec<u8>, Vec<u8>)> =
                    sqlx::query_as("SELECT wrapped_dek, ciphertext FROM wallets").fetch_all(&pool).await.unwrap();
                pool.close().await;
                rows
            }
        }
    }
}
