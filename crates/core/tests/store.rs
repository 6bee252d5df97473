//! The SQLite store through the vault, on a real file: group commit isolates each change, so a
//! refused change in a batch costs nothing to the others, and the audit chain stays whole.

mod support;

use sharevault_core::error::ErrorCode;
use sharevault_core::{DataKey, KmsConfig, OpenConfig, Vault};
use std::sync::Arc;
use support::{metadata, shares};

async fn open(path: &std::path::Path) -> Vault {
    sharevault_core::open(OpenConfig {
        database: format!("sqlite://{}", path.display()),
        environment: "test".into(),
        actor: Some("cargo".into()),
        kms: KmsConfig::Local(DataKey::from_bytes([7u8; 32])),
        cache: None,
        store: Default::default(),
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_in_a_batch_fail_alone_and_everything_else_commits() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Arc::new(open(&dir.path().join("v.db")).await);
    // 200 stores at once, every fourth a duplicate address of the one before it.
    let mut tasks = Vec::new();
    for n in 0..200usize {
        let i = if n % 4 == 3 { n - 1 } else { n };
        let v = vault.clone();
        tasks.push(tokio::spawn(async move {
            v.store_wallet(&metadata(i), None, &shares(&format!("secret-{n}")), None).await.map(|_| n)
        }));
    }
    let mut stored = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(n) => stored.push(n),
            Err(e) => {
                assert_eq!(e.code, ErrorCode::Conflict);
                conflicts += 1;
            }
        }
    }
    assert_eq!(conflicts, 50);
    assert_eq!(stored.len(), 150);
    let listed = vault.list_wallets(None, Some(1000), None).await.unwrap();
    assert_eq!(listed.len(), 150);
    let chain = vault.verify_audit_chain().await.unwrap();
    assert_eq!(chain.rows, 150);
    assert_eq!(chain.broken_at, None);
    vault.close().await.unwrap();

    // Reopened: everything acknowledged is there and opens.
    let again = open(&dir.path().join("v.db")).await;
    for n in stored {
        let i = if n % 4 == 3 { n - 1 } else { n };
        let h = again.hydrate(&format!("0x{i:040x}"), Some("check"), None).await.unwrap();
        assert!(!h.shares.is_empty());
    }
    again.close().await.unwrap();
}

#[tokio::test]
async fn the_database_file_is_created_private_and_refuses_a_newer_schema() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let vault = open(&path).await;
    vault.close().await.unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = sharevault_core::open(OpenConfig {
        database: path.display().to_string(),
        environment: "test".into(),
        actor: None,
        kms: KmsConfig::Local(DataKey::generate()),
        cache: None,
        store: Default::default(),
    })
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::Storage);
}
