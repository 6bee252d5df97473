//! The PKCS#11 provider against SoftHSM2 (a real PKCS#11 module; `scripts/softhsm.sh` makes a
//! token per test process). What every provider must do is in `kms_conformance.rs`; this file
//! holds what is particular to a token: one `C_Initialize` however many vaults, a wrong PIN or a
//! missing key denied, a key that could leave the token refused, a session whose login the token
//! dropped replaced, and records naming the token and key.

mod support;

use sharevault_core::error::ErrorCode;
use sharevault_core::kms::pkcs11::{Pkcs11Config, Pkcs11Kms, TokenRef};
use sharevault_core::kms::{KeyContext, KeyProvider, KeyWrapping};
use sharevault_core::stats::Stats;
use std::sync::Arc;
use support::softhsm::hsm;

fn ctx(w: &str) -> KeyContext {
    KeyContext { environment: "test".into(), wallet_id: w.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_vaults_share_one_initialized_module_and_records_name_token_and_key() {
    let h = hsm();
    let a: Arc<dyn KeyProvider> =
        Arc::new(Pkcs11Kms::connect(h.config("sv-main", "kek-a"), Arc::default()).await.unwrap());
    // A second connection to the same module (another vault in the process): no second C_Initialize failure.
    let b: Arc<dyn KeyProvider> =
        Arc::new(Pkcs11Kms::connect(h.config("sv-main", "kek-a"), Arc::default()).await.unwrap());
    assert_eq!(a.kek().key_id, "token=sv-main;object=kek-a");
    assert_eq!(a.kek().key_version, "1");
    let g = a.generate(&ctx("w1")).await.unwrap();
    assert_eq!(b.unwrap(&g.kek, &g.wrapped, &ctx("w1")).await.unwrap().expose(), g.plaintext.expose());
    // The same label on another token is another key: its unwrap of this record fails the tag.
    let other: Arc<dyn KeyProvider> =
        Arc::new(Pkcs11Kms::connect(h.config("sv-other", "kek-a"), Arc::default()).await.unwrap());
    assert_ne!(other.kek().key_id, a.kek().key_id);
    let kms = KeyWrapping::with_previous(other.clone(), vec![], None, Arc::default());
    let e = kms.unwrap_data_key(other.kek(), &g.wrapped, &ctx("w1")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Tampered, "{e}");
    // By slot id too.
    let slot = {
        let p = cryptoki::context::Pkcs11::new(&h.module).unwrap();
        let slots = p.get_slots_with_token().unwrap();
        slots.into_iter().find(|s| p.get_token_info(*s).unwrap().label() == "sv-main").unwrap().id()
    };
    let by_slot = Pkcs11Kms::connect(
        Pkcs11Config { token: TokenRef::Slot(slot), ..h.config("sv-main", "kek-a") },
        Arc::default(),
    )
    .await
    .unwrap();
    assert_eq!(by_slot.kek().key_id, a.kek().key_id);
    assert_eq!(by_slot.unwrap(&g.kek, &g.wrapped, &ctx("w1")).await.unwrap().expose(), g.plaintext.expose());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_a_missing_key_or_token_is_denied_and_an_extractable_key_refused() {
    let h = hsm();
    let wrong = Pkcs11Config { pin: "0000".into(), ..h.config("sv-main", "kek-a") };
    let e = Pkcs11Kms::connect(wrong, Arc::default()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KmsDenied, "{e}");
    assert!(!e.message.contains("0000"), "{e}");
    // With the token logged in by a vault holding the right PIN, a wrong one is still refused
    // (PKCS#11 logs in the application: without the check it would ride on that login).
    let _right = Pkcs11Kms::connect(h.config("sv-main", "kek-a"), Arc::default()).await.unwrap();
    let riding =
        Pkcs11Kms::connect(Pkcs11Config { pin: "0000".into(), ..h.config("sv-main", "kek-a") }, Arc::default())
            .await
            .unwrap_err();
    assert_eq!(riding.code, ErrorCode::KmsDenied, "{riding}");
    let e = Pkcs11Kms::connect(h.config("sv-main", "no-such-key"), Arc::default()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KmsDenied, "{e}");
    assert!(e.message.contains("no-such-key"), "{e}");
    let e = Pkcs11Kms::connect(h.config("no-such-token", "kek-a"), Arc::default()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KmsDenied, "{e}");
    let e = Pkcs11Kms::connect(h.config("sv-main", "extractable"), Arc::default()).await.unwrap_err();
    assert_eq!((e.code, e.path.as_deref()), (ErrorCode::InvalidInput, Some("kms.keyLabel")), "{e}");
    assert!(e.message.contains("non-extractable"), "{e}");
    let e = Pkcs11Kms::connect(
        Pkcs11Config { module: "/nonexistent/libpkcs11.so".into(), ..h.config("sv-main", "kek-a") },
        Arc::default(),
    )
    .await
    .unwrap_err();
    assert_eq!((e.code, e.path.as_deref()), (ErrorCode::InvalidInput, Some("kms.module")), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_login_the_token_dropped_is_replaced_and_logged_in_again() {
    let h = hsm();
    let stats = Arc::new(Stats::default());
    let p: Arc<dyn KeyProvider> =
        Arc::new(Pkcs11Kms::connect(h.config("sv-main", "kek-b"), stats.clone()).await.unwrap());
    let g = p.generate(&ctx("w1")).await.unwrap();
    // The login dropped under the vault (PKCS#11 logins are the application's, for every
    // session: what a token that restarts or times out a login does).
    let ctx_ = cryptoki::context::Pkcs11::new(&h.module).unwrap();
    let slot = ctx_
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx_.get_token_info(*s).unwrap().label() == "sv-main")
        .unwrap();
    ctx_.open_ro_session(slot).unwrap().logout().unwrap();
    let before = stats.snapshot().kms_attempts;
    assert_eq!(p.unwrap(&g.kek, &g.wrapped, &ctx("w1")).await.unwrap().expose(), g.plaintext.expose());
    assert_eq!(
        stats.snapshot().kms_attempts - before,
        2,
        "one failed attempt on the logged-out session, one on a new one"
    );
    // Many at once: a session each, from the pool.
    let mut tasks = Vec::new();
    for i in 0..32 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let c = ctx(&format!("w{i}"));
            let g = p.generate(&c).await.unwrap();
            assert_eq!(p.unwrap(&g.kek, &g.wrapped, &c).await.unwrap().expose(), g.plaintext.expose());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
