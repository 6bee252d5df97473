//! Shared set-up for the integration tests (each test file compiles what it uses).
#![allow(dead_code)]

pub mod moto;
pub mod pg;

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
