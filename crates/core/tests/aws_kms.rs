//! The AWS KMS provider and the data-key cache against moto's KMS server, started (and its
//! venv created if missing) by the repository's `scripts/moto.sh`.

use sharevault_core::error::ErrorCode;
use sharevault_core::kms::aws::{AwsKms, AwsKmsConfig, StaticCredentials};
use sharevault_core::kms::cache::{CacheConfig, CachingKeyWrapper};
use sharevault_core::kms::{KeyContext, KeyWrapper};
use sharevault_core::stats::Stats;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

struct Moto {
    pid: String,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new(script()).args(["stop", &self.pid]).status();
    }
}

fn script() -> String {
    format!("{}/../../scripts/moto.sh", env!("CARGO_MANIFEST_DIR"))
}

fn start_moto() -> Moto {
    let out = Command::new(script()).arg("start").output().expect("scripts/moto.sh start");
    assert!(out.status.success(), "moto did not start: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (pid, endpoint) = text.trim().split_once(' ').unwrap();
    Moto { pid: pid.to_string(), endpoint: endpoint.to_string() }
}

fn create_key(m: &Moto) -> String {
    let out = Command::new(script()).args(["create-key", &m.endpoint]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn config(m: &Moto, key_id: &str) -> AwsKmsConfig {
    AwsKmsConfig {
        key_id: key_id.to_string(),
        region: Some("us-east-1".into()),
        endpoint: Some(m.endpoint.clone()),
        credentials: Some(StaticCredentials {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
            session_token: None,
        }),
        timeout: Duration::from_secs(5),
        max_attempts: 2,
    }
}

fn ctx(w: &str) -> KeyContext {
    KeyContext { environment: "test".into(), wallet_id: w.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_kms_wraps_unwraps_rewraps_and_refuses_what_it_should() {
    let moto = start_moto();
    let key = create_key(&moto);
    let stats = Arc::new(Stats::default());
    let kms = AwsKms::connect(config(&moto, &key), stats.clone()).await.unwrap();
    assert_eq!(kms.current_kek().key_id, key);

    // Round trip with the wallet's context.
    let g = kms.generate_data_key(&ctx("w1")).await.unwrap();
    let back = kms.unwrap_data_key(&g.kek, &g.wrapped, &ctx("w1")).await.unwrap();
    assert_eq!(back.expose(), g.plaintext.expose());

    // Another wallet's context: KMS refuses, and the refusal is not retried (one HTTP attempt).
    let decrypts = stats.snapshot().kms_decrypt;
    let attempts = stats.snapshot().kms_attempts;
    let e = kms.unwrap_data_key(&g.kek, &g.wrapped, &ctx("w2")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KmsDenied);
    assert_eq!(stats.snapshot().kms_decrypt, decrypts + 1);
    assert_eq!(stats.snapshot().kms_attempts, attempts + 1);

    // A record naming a key the vault was not configured with never reaches KMS.
    let mut foreign = g.kek.clone();
    foreign.key_id = create_key(&moto);
    let e = kms.unwrap_data_key(&foreign, &g.wrapped, &ctx("w1")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KmsDenied);
    assert_eq!(stats.snapshot().kms_decrypt, decrypts + 1);
    assert_eq!(stats.snapshot().kms_attempts, attempts + 1);

    // Re-wrap (ReEncrypt) keeps the data key; its plaintext never left KMS.
    let (rewrapped, kek2) = kms.rewrap_data_key(&g.kek, &g.wrapped, &ctx("w1")).await.unwrap();
    assert_ne!(rewrapped, g.wrapped);
    let again = kms.unwrap_data_key(&kek2, &rewrapped, &ctx("w1")).await.unwrap();
    assert_eq!(again.expose(), g.plaintext.expose());
    assert_eq!(stats.snapshot().kms_reencrypt, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_on_one_key_share_a_single_decrypt() {
    let moto = start_moto();
    let key = create_key(&moto);
    let stats = Arc::new(Stats::default());
    let aws: Arc<dyn KeyWrapper> = Arc::new(AwsKms::connect(config(&moto, &key), stats.clone()).await.unwrap());
    let g = aws.generate_data_key(&ctx("w1")).await.unwrap();
    let cache = Arc::new(CachingKeyWrapper::new(aws, CacheConfig::default(), stats.clone()));
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let (cache, kek, wrapped) = (cache.clone(), g.kek.clone(), g.wrapped.clone());
        tasks.push(tokio::spawn(async move { cache.unwrap_data_key(&kek, &wrapped, &ctx("w1")).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().expose(), g.plaintext.expose());
    }
    let s = stats.snapshot();
    assert_eq!(s.kms_decrypt, 1);
    assert_eq!(s.cache_hits + s.cache_misses, 500);
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn a_kms_that_never_answers_is_unavailable_after_retries_within_the_deadline() {
    // A listener that accepts connections and never answers: a hung KMS.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let mut cfg = AwsKmsConfig {
        key_id: "alias/none".into(),
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint),
        credentials: Some(StaticCredentials {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
            session_token: None,
        }),
        timeout: Duration::from_millis(1500),
        max_attempts: 3,
    };
    let stats = Arc::new(Stats::default());
    let started = std::time::Instant::now();
    let e = AwsKms::connect(cfg.clone(), stats.clone()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KmsUnavailable);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(stats.snapshot().kms_attempts >= 2, "the hung call was not retried");
    drop(listener);

    // A plain-http endpoint off loopback is refused before anything is sent.
    cfg.endpoint = Some("http://192.0.2.1:4566".into());
    let e = AwsKms::connect(cfg, Arc::default()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput);
}
