//! Transport security against a TLS-only PostgreSQL cluster of the test's own, with a server
//! certificate from a throwaway CA (made with the `openssl` CLI): `verify-full` with that CA
//! connects; with another CA, or to a host name the certificate does not name, it is refused;
//! plain text is refused by the server; the URL's password never appears in an error.

mod support;

use sharevault_core::error::ErrorCode;
use sharevault_core::store::StoreOptions;
use sharevault_core::{DataKey, KmsConfig, OpenConfig};
use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`<name>.pem`, `<name>.key`) and, when `server`, a server certificate it signs for
/// `localhost` only.
fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

fn server_cert(dir: &Path, ca_name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca_name}.pem"),
            "-CAkey",
            &format!("{ca_name}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.crt",
        ],
    );
}

async fn open(url: &str) -> sharevault_core::Result<sharevault_core::Vault> {
    open_with(url, false).await
}

async fn open_with(url: &str, allow_tls12: bool) -> sharevault_core::Result<sharevault_core::Vault> {
    sharevault_core::open(OpenConfig {
        harden_process: false,
        audit_sink: None,
        delegation_key: None,
        allow: Default::default(),
        database: url.into(),
        environment: "test".into(),
        actor: None,
        kms: KmsConfig::Local(DataKey::from_bytes([5u8; 32])),
        previous_kms: Vec::new(),
        local_in_production: false,
        cache: None,
        store: StoreOptions { allow_tls12, ..StoreOptions::default() },
    })
    .await
}

/// A cluster that speaks TLS with a certificate from `ca`, and the `verify-full` URL for it.
fn tls_cluster(certs: &Path, extra_conf: &str) -> Option<(support::pg::TempCluster, String)> {
    let read = |f: &str| std::fs::read(certs.join(f)).unwrap();
    let (crt, key) = (read("server.crt"), read("server.key"));
    let cluster = support::pg::TempCluster::start(
        &format!("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n{extra_conf}"),
        &[
            ("server.crt", &crt),
            ("server.key", &key),
            ("pg_hba.conf", b"local all all trust\nhostssl all all 127.0.0.1/32 trust\n"),
        ],
    )?;
    let url = format!(
        "postgres://postgres:hunter2-secret@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        cluster.port,
        certs.join("ca.pem").display()
    );
    Some((cluster, url))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_offers_only_tls_1_2_is_refused_unless_allowed_and_stats_say_what_was_negotiated() {
    let certs = tempfile::tempdir().unwrap();
    ca(certs.path(), "ca");
    server_cert(certs.path(), "ca");
    let Some((_cluster, url)) = tls_cluster(certs.path(), "ssl_max_protocol_version = 'TLSv1.2'\n") else { return };
    let e = open(&url).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput, "{e}");
    assert!(e.message.contains("TLSv1.2") && e.message.contains("allowTls12"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    // Allowed by name: it connects, and says so.
    let vault = open_with(&url, true).await.unwrap();
    assert_eq!(vault.stats().database_tls.as_deref(), Some("TLSv1.2"));
    vault.close().await.unwrap();
    // `sharevault migrate` holds to the same rule.
    let e = sharevault_core::store::migrate(&url, &StoreOptions::default()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_connects_only_with_the_right_ca_and_host_and_never_in_plain_text() {
    let certs = tempfile::tempdir().unwrap();
    ca(certs.path(), "ca");
    ca(certs.path(), "other");
    server_cert(certs.path(), "ca");
    let Some((cluster, _)) = tls_cluster(certs.path(), "") else { return };
    let ca_file = certs.path().join("ca.pem");
    let other_file = certs.path().join("other.pem");
    let url = |host: &str, mode: &str, root: &Path| {
        format!(
            "postgres://postgres:hunter2-secret@{host}:{}/postgres?sslmode={mode}&sslrootcert={}",
            cluster.port,
            root.display()
        )
    };

    // The right CA and the name on the certificate: connects, and works.
    let vault = open(&url("localhost", "verify-full", &ca_file)).await.unwrap();
    assert!(vault.list_wallets(None, Some(10), None).await.unwrap().is_empty());
    assert_eq!(vault.stats().database_tls.as_deref(), Some("TLSv1.3"));
    assert!(!format!("{vault:?}").contains("hunter2"));
    vault.close().await.unwrap();

    // Another CA: refused. A host name the certificate does not name: refused.
    for bad in [url("localhost", "verify-full", &other_file), url("127.0.0.1", "verify-full", &ca_file)] {
        let e = open(&bad).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::DbUnavailable, "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    // Plain text: the server refuses it (its only host rule is hostssl).
    let e = open(&format!("postgres://postgres:hunter2-secret@127.0.0.1:{}/postgres?sslmode=disable", cluster.port))
        .await
        .unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}
