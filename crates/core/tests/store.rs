//! The stores through the vault, on every backend (a SQLite file; PostgreSQL when reachable):
//! group commit isolates each change, so a refused change in a batch costs nothing to the
//! others, and the audit chain stays whole; a newer schema is refused; with migrations off,
//! opening runs no DDL and refuses a schema that is missing or old, and `migrate` brings it up.

mod support;

use sharevault_core::error::ErrorCode;
use sharevault_core::store::{self, Migrated, Migrations, StoreOptions};
use sharevault_core::{DataKey, KmsConfig, OpenConfig, Result, Vault};
use std::sync::Arc;
use support::{databases, metadata, shares};

async fn open_with(url: &str, store: StoreOptions) -> Result<Vault> {
    sharevault_core::open(OpenConfig {
        harden_process: false,
        audit_sink: None,
        delegation_key: None,
        allow: sharevault_core::permissions::Permissions::all(),
        database: url.into(),
        environment: "test".into(),
        actor: Some("cargo".into()),
        kms: KmsConfig::Local(DataKey::from_bytes([7u8; 32])),
        previous_kms: Vec::new(),
        local_in_production: false,
        cache: None,
        store,
    })
    .await
}

async fn open(url: &str) -> Vault {
    open_with(url, StoreOptions::default()).await.unwrap()
}

fn no_migrations() -> StoreOptions {
    StoreOptions { migrations: Migrations::Never, ..StoreOptions::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_in_a_batch_fail_alone_and_everything_else_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (urls, pg) = databases(dir.path()).await;
    for (name, url) in urls {
        let vault = Arc::new(open(&url).await);
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
                    assert_eq!(e.code, ErrorCode::Conflict, "{name}");
                    conflicts += 1;
                }
            }
        }
        assert_eq!(conflicts, 50, "{name}");
        assert_eq!(stored.len(), 150, "{name}");
        let listed = vault.list_wallets(None, Some(1000), None).await.unwrap();
        assert_eq!(listed.len(), 150, "{name}");
        let chain = vault.verify_audit_chain(None).await.unwrap();
        // The 150 stores, and the keyring's registration of the vault's key at the first open.
        assert_eq!(chain.rows, 151, "{name}");
        assert_eq!(chain.broken_at, None, "{name}");
        vault.close().await.unwrap();

        // Reopened: everything acknowledged is there and opens.
        let again = open(&url).await;
        for n in stored {
            let i = if n % 4 == 3 { n - 1 } else { n };
            let h = again.hydrate(&format!("0x{i:040x}"), Some("check"), None).await.unwrap();
            assert!(!h.shares.is_empty(), "{name}");
        }
        again.close().await.unwrap();
    }
    if let Some(db) = pg {
        db.drop().await;
    }
}

#[tokio::test]
async fn the_database_file_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    open(&path.display().to_string()).await.close().await.unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

/// Records schema version 99 the way each backend does.
async fn record_newer_schema(name: &str, url: &str) {
    if name == "sqlite" {
        let conn = rusqlite::Connection::open(url.trim_start_matches("sqlite://")).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query("INSERT INTO sharevault_schema (version) VALUES (99)").execute(&pool).await.unwrap();
        pool.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_by_open_and_by_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let (urls, pg) = databases(dir.path()).await;
    for (name, url) in urls {
        open(&url).await.close().await.unwrap();
        record_newer_schema(name, &url).await;
        for options in [StoreOptions::default(), no_migrations()] {
            let err = open_with(&url, options).await.err().unwrap();
            assert_eq!(err.code, ErrorCode::Storage, "{name}");
            assert!(err.message.contains("newer than this sharevault"), "{name}: {}", err.message);
        }
        let err = store::migrate(&url, &StoreOptions::default()).await.unwrap_err();
        assert!(err.message.contains("newer than this sharevault"), "{name}: {}", err.message);
    }
    if let Some(db) = pg {
        db.drop().await;
    }
}

/// What the tables of a database are (to show that a refused open created nothing).
async fn tables(name: &str, url: &str) -> Vec<String> {
    if name == "sqlite" {
        let path = url.trim_start_matches("sqlite://");
        if !std::path::Path::new(path).exists() {
            return Vec::new();
        }
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut s = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").unwrap();
        let names = s.query_map([], |r| r.get(0)).unwrap().collect::<rusqlite::Result<Vec<String>>>().unwrap();
        names
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let names =
            sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
                .fetch_all(&pool)
                .await
                .unwrap();
        pool.close().await;
        names
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_migrations_off_open_creates_nothing_until_migrate_has_run() {
    let dir = tempfile::tempdir().unwrap();
    let (urls, pg) = databases(dir.path()).await;
    for (name, url) in urls {
        // Nothing there yet: refused with a message that says what to do, and nothing created.
        let err = open_with(&url, no_migrations()).await.err().unwrap();
        assert_eq!(err.code, ErrorCode::Storage, "{name}");
        assert!(err.message.contains("sharevault migrate"), "{name}: {}", err.message);
        assert!(err.message.contains("schema version 0"), "{name}: {}", err.message);
        assert!(tables(name, &url).await.is_empty(), "{name}: a refused open created tables");

        // Five migrations at once (instances deploying together): one creates the schema, the
        // others find it current; none fails.
        let runs = (0..5).map(|_| {
            let url = url.clone();
            tokio::spawn(async move { store::migrate(&url, &StoreOptions::default()).await })
        });
        // SQLite's schema 5 moves rotation leases out of the wallet row (PostgreSQL keeps them
        // there), so the webhook events table is SQLite's 6 and PostgreSQL's 5.
        let current = if name == "sqlite" { 6 } else { 5 };
        let mut created = 0;
        for r in runs {
            match r.await.unwrap().unwrap() {
                Migrated { from: 0, to } if to == current => created += 1,
                Migrated { from, to } if from == current && to == current => {}
                other => panic!("{name}: unexpected {other:?}"),
            }
        }
        assert_eq!(created, 1, "{name}: the schema was created {created} times");
        let again = store::migrate(&url, &StoreOptions::default()).await.unwrap();
        assert_eq!(again, Migrated { from: current, to: current });

        // Now the vault opens without migrating and works.
        let vault = open_with(&url, no_migrations()).await.unwrap();
        vault.store_wallet(&metadata(1), None, &shares("s"), None).await.unwrap();
        assert!(!vault.hydrate(&format!("0x{:040x}", 1), Some("sign"), None).await.unwrap().shares.is_empty());
        vault.close().await.unwrap();
    }
    if let Some(db) = pg {
        db.drop().await;
    }
}

/// With migrations off, an existing file that is not a current sharevault database is left
/// exactly as it was: not turned into a database, not switched to WAL, no side files.
#[tokio::test]
async fn with_migrations_off_an_unmigrated_file_is_not_touched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    let err = open_with(&format!("sqlite://{}", path.display()), no_migrations()).await.err().unwrap();
    assert_eq!(err.code, ErrorCode::Storage);
    assert!(err.message.contains("sharevault migrate"), "{}", err.message);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "the file was written");
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["empty.db"], "side files were created");
    // A missing file stays missing.
    let missing = dir.path().join("missing.db");
    let err = open_with(&format!("sqlite://{}", missing.display()), no_migrations()).await.err().unwrap();
    assert_eq!(err.code, ErrorCode::Storage);
    assert!(!missing.exists());
}

fn address(i: usize) -> String {
    format!("0x{i:040x}")
}

/// A store racing the delete of the same address, by another instance: it conflicts (it came
/// first) or stores (it came after), and is never `ERR_NOT_FOUND`. It read the address's state
/// ("stored") and then the row (gone, deleted in between), and answered for the missing row
/// (`ERR_NOT_FOUND`) before the insert checked the history it had read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_racing_the_delete_of_its_address_conflicts_or_stores_never_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let (urls, pg) = databases(dir.path()).await;
    for (name, url) in urls {
        let (a, b) = (open(&url).await, open(&url).await);
        let (mut stored, mut conflicts) = (0, 0);
        for i in 0..300 {
            let (addr, meta, again_shares) = (address(i), metadata(i), shares("again"));
            a.store_wallet(&meta, None, &shares("first"), None).await.unwrap();
            let (deleted, again) =
                tokio::join!(a.delete_wallet(&addr, None), b.store_wallet(&meta, None, &again_shares, None));
            deleted.unwrap();
            match again {
                Ok(_) => {
                    stored += 1;
                    assert_eq!(
                        a.hydrate(&address(i), Some("check"), None).await.unwrap().shares.as_slice(),
                        shares("again").as_slice(),
                        "{name}"
                    );
                }
                Err(e) if e.code == ErrorCode::Conflict => {
                    conflicts += 1;
                    assert_eq!(
                        a.hydrate(&address(i), Some("check"), None).await.unwrap_err().code,
                        ErrorCode::NotFound,
                        "{name}"
                    );
                }
                Err(e) => panic!("{name}: wallet {i}, stored again while deleted: {e}"),
            }
        }
        assert_eq!(stored + conflicts, 300, "{name}");
        a.close().await.unwrap();
        b.close().await.unwrap();
    }
    if let Some(pg) = pg {
        pg.drop().await;
    }
}

/// Deletion is final, even for the recovery of a first store whose answer was lost, racing the
/// delete from another instance: the recovery finds the wallet stored (and succeeds, then the
/// delete removes it) or finds it deleted (and refuses); it never stores it again. It checked
/// "not deleted" and then stored with a check of its own, which a delete in between passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_racing_the_delete_of_its_wallet_never_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let (urls, pg) = databases(dir.path()).await;
    for (name, url) in urls {
        let (a, b) = (open(&url).await, open(&url).await);
        let (mut recovered, mut refused) = (0, 0);
        for i in 0..300 {
            let secret = shares(&format!("secret-{i}"));
            a.store_wallet(&metadata(i), None, &secret, None).await.unwrap();
            let blob = a.seal_unpersisted(&metadata(i), 0, &secret, None, None).await.unwrap();
            let addr = address(i);
            let (deleted, recovery) = tokio::join!(a.delete_wallet(&addr, None), b.recover_sealed(&blob, None));
            deleted.unwrap();
            match recovery {
                Ok(_) => recovered += 1,
                Err(e) if e.code == ErrorCode::Conflict => refused += 1,
                Err(e) => panic!("{name}: wallet {i}, recovered while deleted: {e}"),
            }
            let back = b.hydrate(&address(i), Some("check"), None).await;
            assert_eq!(back.err().map(|e| e.code), Some(ErrorCode::NotFound), "{name}: deleted wallet {i} came back");
        }
        assert_eq!(recovered + refused, 300, "{name}");
        a.close().await.unwrap();
        b.close().await.unwrap();
    }
    if let Some(pg) = pg {
        pg.drop().await;
    }
}
