//! PostgreSQL going away mid-run: its own cluster is stopped and started again (and every
//! connection cut with `pg_terminate_backend`) while a vault has calls in flight. Calls fail with
//! `ERR_DB_UNAVAILABLE` within the acquire timeout and never hang, nothing acknowledged is lost,
//! no batch is half applied (the audit chain verifies), and the same vault recovers by itself.

mod support;

use sharevault_core::error::ErrorCode;
use sharevault_core::store::postgres::PoolConfig;
use sharevault_core::store::StoreOptions;
use sharevault_core::{DataKey, KmsConfig, OpenConfig, Vault};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{metadata, shares};

const ACQUIRE: Duration = Duration::from_millis(1500);

async fn open(url: &str) -> Vault {
    sharevault_core::open(OpenConfig {
        harden_process: false,
        audit_sink: None,
        delegation_key: None,
        allow: Default::default(),
        database: url.into(),
        environment: "test".into(),
        actor: None,
        kms: KmsConfig::Local(DataKey::from_bytes([3u8; 32])),
        previous_kms: Vec::new(),
        local_in_production: false,
        cache: Some(Default::default()),
        store: StoreOptions {
            allow_insecure_transport: false,
            pool: PoolConfig { acquire_timeout: ACQUIRE, ..PoolConfig::default() },
            ..StoreOptions::default()
        },
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_and_restarted_server_fails_fast_loses_nothing_and_recovers_without_reopening() {
    let Some(cluster) = support::pg::TempCluster::start("", &[]) else { return };
    let vault = Arc::new(open(&cluster.url("")).await);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    // Writers and readers running throughout.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (v, acked, next, stop) = (vault.clone(), acked.clone(), next.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            let mut unavailable = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let t = Instant::now();
                match v.store_wallet(&metadata(i), None, &shares(&format!("s-{i}")), None).await {
                    Ok(_) => acked.lock().unwrap().push(i),
                    Err(e) => {
                        assert_eq!(e.code, ErrorCode::DbUnavailable, "{e}");
                        unavailable += 1;
                    }
                }
                slowest = slowest.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (slowest, unavailable)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.stop_server();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // While it is down, a read fails fast too.
    let t = Instant::now();
    let e = vault.get_metadata(&format!("0x{:040x}", 0)).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::DbUnavailable, "{e}");
    assert!(
        t.elapsed() < ACQUIRE + Duration::from_secs(2),
        "a read took {:?} while the database was down",
        t.elapsed()
    );
    cluster.start_server();
    // The same vault recovers by itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let before = acked.lock().unwrap().len();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if acked.lock().unwrap().len() > before + 5 {
            break;
        }
        assert!(Instant::now() < deadline, "the vault did not recover after the server came back");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total_unavailable = 0;
    for t in tasks {
        let (slowest, unavailable) = t.await.unwrap();
        assert!(slowest < ACQUIRE + Duration::from_secs(5), "a call hung for {slowest:?}");
        total_unavailable += unavailable;
    }
    assert!(total_unavailable > 0, "the outage was never observed");

    // Every acknowledged store is there and opens; the chain has no half-applied batch.
    let acked = acked.lock().unwrap().clone();
    for i in &acked {
        let h = vault.hydrate(&format!("0x{i:040x}"), Some("check"), None).await.unwrap();
        assert!(!h.shares.is_empty());
    }
    let chain = vault.verify_audit_chain(None).await.unwrap();
    assert_eq!(chain.broken_at, None);
    assert!(chain.rows as usize >= acked.len() * 2);
    vault.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_are_replaced_without_reopening() {
    let Some(db) = support::pg::TestDb::create().await else { return };
    let vault = open(&db.url).await;
    for i in 0..5 {
        vault.store_wallet(&metadata(i), None, &shares("s"), None).await.unwrap();
    }
    let admin = sqlx::PgPool::connect(&db.url).await.unwrap();
    let name: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&admin).await.unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&name)
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
    // Every call afterwards either works or is ERR_DB_UNAVAILABLE, and soon they all work.
    let mut ok = 0;
    for i in 5..40 {
        match vault.store_wallet(&metadata(i), None, &shares("s"), None).await {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code, ErrorCode::DbUnavailable, "{e}"),
        }
        vault
            .hydrate(&format!("0x{:040x}", 0), None, None)
            .await
            .map(|_| ())
            .or_else(|e| {
                assert_eq!(e.code, ErrorCode::DbUnavailable, "{e}");
                Ok::<_, ()>(())
            })
            .unwrap();
    }
    assert!(ok >= 30, "only {ok} of 35 stores went through after the connections were cut");
    assert_eq!(vault.verify_audit_chain(None).await.unwrap().broken_at, None);
    vault.close().await.unwrap();
    db.drop().await;
}
