//! The AWS KMS provider and the data-key cache against moto's KMS server, started (and its
//! venv created if missing) by the repository's `scripts/moto.sh`. What every provider must do
//! is in `kms_conformance.rs`; this file holds what is particular to AWS.

mod support;

use sharevault_core::error::ErrorCode;
use sharevault_core::kms::aws::{AwsKms, AwsKmsConfig, StaticCredentials};
use sharevault_core::kms::cache::CacheConfig;
use sharevault_core::kms::{KeyContext, KeyProvider, KeyWrapping};
use sharevault_core::stats::Stats;
use std::sync::Arc;
use std::time::Duration;

fn ctx(w: &str) -> KeyContext {
    KeyContext { environment: "test".into(), wallet_id: w.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_by_kms_is_not_retried_and_records_name_the_key_by_its_arn() {
    let moto = support::moto::start();
    let key = moto.create_key();
    let stats = Arc::new(Stats::default());
    let aws: Arc<dyn KeyProvider> = Arc::new(AwsKms::connect(moto.config(&key), stats.clone()).await.unwrap());
    assert_eq!(aws.kek().key_id, key);
    let kms = KeyWrapping::new(aws, None, stats.clone());
    let g = kms.generate_data_key(&ctx("w1")).await.unwrap();
    let attempts = stats.snapshot().kms_attempts;
    let e = kms.unwrap_data_key(&g.kek, &g.wrapped, &ctx("w2")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Tampered);
    assert_eq!(stats.snapshot().kms_attempts, attempts + 1, "a refusal was retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_on_one_key_share_a_single_decrypt() {
    let moto = support::moto::start();
    let key = moto.create_key();
    let stats = Arc::new(Stats::default());
    let aws: Arc<dyn KeyProvider> = Arc::new(AwsKms::connect(moto.config(&key), stats.clone()).await.unwrap());
    let g = aws.generate(&ctx("w1")).await.unwrap();
    let kms = Arc::new(KeyWrapping::new(aws, Some(CacheConfig::default()), stats.clone()));
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let (kms, kek, wrapped) = (kms.clone(), g.kek.clone(), g.wrapped.clone());
        tasks.push(tokio::spawn(async move { kms.unwrap_data_key(&kek, &wrapped, &ctx("w1")).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().expose(), g.plaintext.expose());
    }
    let s = stats.snapshot();
    assert_eq!(s.kms_decrypt, 1);
    assert_eq!(s.cache_hits + s.cache_misses, 500);
    assert_eq!(kms.cached_keys(), 1);
}

#[tokio::test]
async fn option_bounds_are_refused_not_clamped() {
    let base = AwsKmsConfig {
        key_id: "alias/x".into(),
        region: Some("us-east-1".into()),
        endpoint: Some("http://127.0.0.1:9".into()),
        credentials: None,
        timeout: Duration::from_secs(5),
        max_attempts: 3,
    };
    for (cfg, path) in [
        (AwsKmsConfig { max_attempts: 0, ..base.clone() }, "kms.maxAttempts"),
        (AwsKmsConfig { max_attempts: 11, ..base.clone() }, "kms.maxAttempts"),
        (AwsKmsConfig { timeout: Duration::ZERO, ..base.clone() }, "kms.timeoutMs"),
        (AwsKmsConfig { key_id: " ".into(), ..base.clone() }, "kms.keyId"),
    ] {
        let e = AwsKms::connect(cfg, Arc::default()).await.unwrap_err();
        assert_eq!(e.path.as_deref(), Some(path));
    }
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
