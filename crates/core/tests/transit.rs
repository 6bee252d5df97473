//! The Transit provider against a real OpenBao server (`bao server -dev`, started by
//! `scripts/openbao.sh`). What every provider must do is in `kms_conformance.rs`; this file holds
//! what is particular to Transit: its key versions and `rewrap`, `min_decryption_version`, token
//! and AppRole authentication, the key it accepts, TLS 1.3 only, and an outage.

mod support;

use sharevault_core::error::ErrorCode;
use sharevault_core::kms::transit::{TransitAuth, TransitConfig, TransitKms};
use sharevault_core::kms::{KeyContext, KeyProvider, KeyWrapping};
use sharevault_core::stats::Stats;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

fn ctx(w: &str) -> KeyContext {
    KeyContext { environment: "test".into(), wallet_id: w.into() }
}

async fn connect(cfg: TransitConfig) -> Arc<dyn KeyProvider> {
    Arc::new(TransitKms::connect(cfg, Arc::default()).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_name_the_version_transit_used_and_a_rotation_rewraps_inside_transit() {
    let bao = support::openbao::start(false);
    let key = bao.create_key("versions");
    let v1 = connect(bao.config(&key)).await;
    assert_eq!(v1.kek().key_version, "1");
    assert!(v1.kek().key_id.ends_with("/transit/versions"), "{}", v1.kek().key_id);
    let g = KeyWrapping::new(v1.clone(), None, Arc::default()).generate_data_key(&ctx("w1")).await.unwrap();
    assert_eq!(g.kek.key_version, "1");
    assert!(g.wrapped.starts_with(b"vault:v1:"));

    // The key rotates in Transit: a vault opened now wraps under version 2, and moves version 1's
    // records with `rewrap` (the data key never leaves Transit).
    bao.bao(&["write", "-f", &format!("transit/keys/{key}/rotate")]);
    let stats = Arc::new(Stats::default());
    let v2: Arc<dyn KeyProvider> = Arc::new(TransitKms::connect(bao.config(&key), stats.clone()).await.unwrap());
    assert_eq!(v2.kek().key_version, "2");
    let kms = KeyWrapping::new(v2.clone(), None, stats.clone());
    let (moved, kek) = kms.rewrap_data_key(&g.kek, &g.wrapped, &ctx("w1")).await.unwrap();
    assert_eq!(kek.key_version, "2");
    assert!(moved.starts_with(b"vault:v2:"));
    let s = stats.snapshot();
    assert_eq!((s.kms_reencrypt, s.kms_decrypt, s.kms_encrypt), (1, 0, 0), "moved by rewrap, not by unwrap and wrap");
    assert_eq!(kms.unwrap_data_key(&kek, &moved, &ctx("w1")).await.unwrap().expose(), g.plaintext.expose());
    // The row's recorded version and the ciphertext's own must agree.
    let lie = sharevault_core::envelope::KekRef { key_version: "1".into(), ..kek.clone() };
    assert_eq!(kms.unwrap_data_key(&lie, &moved, &ctx("w1")).await.unwrap_err().code, ErrorCode::Tampered);

    // Versions below min_decryption_version are withheld by Transit: a refusal, not tampering,
    // and keyStatus hears of it.
    bao.bao(&["write", &format!("transit/keys/{key}/config"), "min_decryption_version=2"]);
    let e = kms.unwrap_data_key(&g.kek, &g.wrapped, &ctx("w1")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KmsDenied, "{e}");
    assert!(e.message.contains("disallowed by policy"), "{e}");
    let r = v2.rotation_setting().await.unwrap().unwrap();
    assert_eq!(r.min_decryption_version.as_deref(), Some("2"));
    assert!(!r.enabled);
    bao.bao(&["write", &format!("transit/keys/{key}/config"), "auto_rotate_period=720h"]);
    let r = v2.rotation_setting().await.unwrap().unwrap();
    assert_eq!((r.enabled, r.period_days), (true, Some(30)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_derived_encryption_key_is_accepted_and_a_bad_token_is_denied() {
    let bao = support::openbao::start(false);
    bao.bao(&["write", "-f", "transit/keys/flat"]);
    let e = TransitKms::connect(bao.config("flat"), Arc::default()).await.unwrap_err();
    assert_eq!((e.code, e.path.as_deref()), (ErrorCode::InvalidInput, Some("kms.keyName")));
    assert!(e.message.contains("derived=true"), "{e}");
    bao.bao(&["write", "transit/keys/signing", "type=ed25519", "derived=true"]);
    let e = TransitKms::connect(bao.config("signing"), Arc::default()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput, "{e}");
    let e = TransitKms::connect(bao.config("missing"), Arc::default()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KmsDenied, "{e}");

    let key = bao.create_key("k");
    let bad = TransitConfig { auth: TransitAuth::Token(Zeroizing::new("s.not-a-token".into())), ..bao.config(&key) };
    let stats = Arc::new(Stats::default());
    let e = TransitKms::connect(bad, stats.clone()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KmsDenied, "{e}");
    assert!(!e.message.contains("s.not-a-token"), "{e}");
    assert_eq!(stats.snapshot().kms_attempts, 1, "a refusal was retried");

    for (cfg, path) in [
        (TransitConfig { address: "http://10.1.2.3:8200".into(), ..bao.config(&key) }, "kms.address"),
        (TransitConfig { key_name: "a/../b".into(), ..bao.config(&key) }, "kms.keyName"),
        (TransitConfig { mount: "".into(), ..bao.config(&key) }, "kms.mount"),
        (TransitConfig { max_attempts: 0, ..bao.config(&key) }, "kms.maxAttempts"),
        (TransitConfig { timeout: Duration::ZERO, ..bao.config(&key) }, "kms.timeoutMs"),
    ] {
        let e = TransitKms::connect(cfg, Arc::default()).await.unwrap_err();
        assert_eq!(e.path.as_deref(), Some(path), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_logs_in_and_logs_in_again_when_its_token_runs_out() {
    let bao = support::openbao::start(false);
    let key = bao.create_key("approle-key");
    let policy = format!(
        "path \"transit/keys/{key}\" {{ capabilities = [\"read\"] }}\n\
         path \"transit/datakey/plaintext/{key}\" {{ capabilities = [\"update\"] }}\n\
         path \"transit/decrypt/{key}\" {{ capabilities = [\"update\"] }}\n"
    );
    let file = std::env::temp_dir().join(format!("sharevault-policy-{}.hcl", std::process::id()));
    std::fs::write(&file, policy).unwrap();
    bao.bao(&["policy", "write", "wallets", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    bao.bao(&["auth", "enable", "approle"]);
    bao.bao(&["write", "auth/approle/role/wallets", "token_policies=wallets", "token_ttl=3s", "token_max_ttl=3s"]);
    let role_id = bao.bao(&["read", "-field=role_id", "auth/approle/role/wallets/role-id"]).trim().to_string();
    let secret_id =
        bao.bao(&["write", "-f", "-field=secret_id", "auth/approle/role/wallets/secret-id"]).trim().to_string();
    let cfg = TransitConfig {
        auth: TransitAuth::AppRole { role_id, secret_id: Zeroizing::new(secret_id.clone()), mount: "approle".into() },
        ..bao.config(&key)
    };
    assert!(!format!("{cfg:?}").contains(&secret_id));
    let transit = connect(cfg.clone()).await;
    let kms = KeyWrapping::new(transit, None, Arc::default());
    let g = kms.generate_data_key(&ctx("w1")).await.unwrap();
    // Past the token's TTL: the next call logs in again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(kms.unwrap_data_key(&g.kek, &g.wrapped, &ctx("w1")).await.unwrap().expose(), g.plaintext.expose());
    // The policy grants no encrypt: a move into this key is refused as such.
    let e = kms.wrap_uncached(&g.plaintext, &ctx("w1")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KmsDenied, "{e}");
    // A wrong secret id: denied at open.
    let wrong = TransitConfig {
        auth: TransitAuth::AppRole {
            role_id: "nope".into(),
            secret_id: Zeroizing::new("nope".into()),
            mount: "approle".into(),
        },
        ..cfg
    };
    assert_eq!(TransitKms::connect(wrong, Arc::default()).await.unwrap_err().code, ErrorCode::KmsDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_1_3_only_and_trusts_the_ca_it_is_given() {
    let bao = support::openbao::start(true);
    let key = bao.create_key("tls-key");
    let ca = bao.ca.clone().unwrap();
    let kms = KeyWrapping::new(connect(bao.config(&key)).await, None, Arc::default());
    let g = kms.generate_data_key(&ctx("w1")).await.unwrap();
    assert_eq!(kms.unwrap_data_key(&g.kek, &g.wrapped, &ctx("w1")).await.unwrap().expose(), g.plaintext.expose());

    // Without the CA, the dev server's certificate is not trusted: said, with what to set, and
    // not retried (it would fail the same way).
    let stats = Arc::new(Stats::default());
    let e = TransitKms::connect(TransitConfig { ca_file: None, ..bao.config(&key) }, stats.clone()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KmsUnavailable, "{e}");
    assert!(e.message.contains("kms.caFile"), "{e}");
    assert_eq!(stats.snapshot().kms_attempts, 1);
    let e = TransitKms::connect(
        TransitConfig { ca_file: Some("/nonexistent.pem".into()), ..bao.config(&key) },
        Arc::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.path.as_deref(), Some("kms.caFile"), "{e}");

    // A server with the same certificate that speaks TLS 1.2 only: refused, and said so.
    let dir = std::path::Path::new(&ca).parent().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = std::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-tls1_2", "-accept", &port.to_string(), "-www"])
        .arg("-cert")
        .arg(dir.join("vault-cert.pem"))
        .arg("-key")
        .arg(dir.join("vault-key.pem"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let old = TransitConfig { address: format!("https://127.0.0.1:{port}"), ..bao.config(&key) };
    let e = TransitKms::connect(old, Arc::default()).await.unwrap_err();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(e.code, ErrorCode::KmsUnavailable, "{e}");
    assert!(e.message.contains("does not offer TLS 1.3"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_is_unavailable_after_bounded_retries() {
    let bao = support::openbao::start(false);
    let key = bao.create_key("outage");
    let stats = Arc::new(Stats::default());
    let transit: Arc<dyn KeyProvider> = Arc::new(TransitKms::connect(bao.config(&key), stats.clone()).await.unwrap());
    let kms = KeyWrapping::new(transit, None, stats.clone());
    let g = kms.generate_data_key(&ctx("w1")).await.unwrap();
    bao.stop();
    std::thread::sleep(Duration::from_millis(500));
    let before = stats.snapshot().kms_attempts;
    let started = Instant::now();
    let e = kms.unwrap_data_key(&g.kek, &g.wrapped, &ctx("w1")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KmsUnavailable, "{e}");
    assert_eq!(stats.snapshot().kms_attempts - before, 2, "max_attempts 2");
    assert!(started.elapsed() < Duration::from_secs(12), "{:?}", started.elapsed());
}
