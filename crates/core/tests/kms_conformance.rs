//! One conformance suite for every key provider, run through the key-wrapping seam the vault
//! uses: the same event gets the same error code whatever the provider. A new provider adds one
//! line to `every_provider`.

mod support;

use sharevault_core::error::ErrorCode;
use sharevault_core::kms::aws::AwsKms;
use sharevault_core::kms::local::LocalKek;
use sharevault_core::kms::pkcs11::Pkcs11Kms;
use sharevault_core::kms::transit::TransitKms;
use sharevault_core::kms::{KeyContext, KeyProvider, KeyWrapping};
use sharevault_core::stats::Stats;
use sharevault_core::DataKey;
use std::sync::Arc;

fn ctx(env: &str, w: &str) -> KeyContext {
    KeyContext { environment: env.into(), wallet_id: w.into() }
}

/// A provider under test: the vault's key, and a second key of the same provider.
struct Subject {
    name: &'static str,
    key: Arc<dyn KeyProvider>,
    other: Arc<dyn KeyProvider>,
    /// Bytes at the start of a wrapped key that name the key rather than hold ciphertext. moto's
    /// blobs begin with the key id in clear (a changed byte there names an unknown key, which moto
    /// answers as access denied); real KMS's format is opaque and answers any changed byte with
    /// `InvalidCiphertextException`. Flipping bytes past the header tests our mapping, not moto.
    header: usize,
    /// Whether the provider here answers another key's blob as KMS does. moto answers it with
    /// `AccessDeniedException` where KMS answers `IncorrectKeyException`; that code's mapping is
    /// unit-tested in `kms::aws` instead.
    faithful_foreign: bool,
}

async fn every_provider(moto: &support::moto::Moto, bao: &support::openbao::OpenBao) -> Vec<Subject> {
    let aws = |key: String| async move {
        Arc::new(AwsKms::connect(moto.config(&key), Arc::default()).await.unwrap()) as Arc<dyn KeyProvider>
    };
    let hsm = support::softhsm::hsm();
    let pkcs11 = |key: &'static str| async move {
        Arc::new(Pkcs11Kms::connect(hsm.config("sv-main", key), Arc::default()).await.unwrap()) as Arc<dyn KeyProvider>
    };
    let transit = |key: String| async move {
        Arc::new(TransitKms::connect(bao.config(&key), Arc::default()).await.unwrap()) as Arc<dyn KeyProvider>
    };
    vec![
        Subject {
            name: "local",
            key: Arc::new(LocalKek::new(DataKey::generate())),
            other: Arc::new(LocalKek::new(DataKey::generate())),
            header: 0,
            faithful_foreign: true,
        },
        Subject {
            name: "aws",
            key: aws(moto.create_key()).await,
            other: aws(moto.create_key()).await,
            header: 36,
            faithful_foreign: false,
        },
        Subject {
            name: "transit",
            key: transit(bao.create_key("conformance-a")).await,
            other: transit(bao.create_key("conformance-b")).await,
            // `vault:v1:` names the key version; the bytes after it are Transit's ciphertext.
            header: 9,
            faithful_foreign: true,
        },
        Subject {
            name: "pkcs11",
            key: pkcs11("kek-a").await,
            other: pkcs11("kek-b").await,
            header: 0,
            faithful_foreign: true,
        },
    ]
}

async fn conforms(s: Subject, cache: bool) {
    let name = s.name;
    let stats = Arc::new(Stats::default());
    let cfg = cache.then(Default::default);
    let kms = KeyWrapping::new(s.key.clone(), cfg, stats.clone());
    let here = ctx("test", "w1");

    // Round trip with the wallet's context.
    let g = kms.generate_data_key(&here).await.unwrap();
    let back = kms.unwrap_data_key(&g.kek, &g.wrapped, &here).await.unwrap();
    assert_eq!(back.expose(), g.plaintext.expose(), "{name}");

    // Moved to another wallet, or to another environment: tampered, whatever the provider.
    for moved in [ctx("test", "w2"), ctx("prod", "w1")] {
        let e = kms.unwrap_data_key(&g.kek, &g.wrapped, &moved).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Tampered, "{name}: {e}");
    }

    // Any changed byte of the wrapped key: tampered.
    for i in [s.header, (s.header + g.wrapped.len()) / 2, g.wrapped.len() - 1] {
        let mut bad = g.wrapped.clone();
        bad[i] ^= 0x01;
        let e = kms.unwrap_data_key(&g.kek, &bad, &here).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Tampered, "{name}: byte {i}: {e}");
    }

    // A wrapped key made by another key of the same provider, claiming to be this key's.
    let foreign = s.other.generate(&here).await.unwrap();
    if s.faithful_foreign {
        let e = kms.unwrap_data_key(&g.kek, &foreign.wrapped, &here).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Tampered, "{name}: {e}");
    }

    // A record naming a key the vault does not trust never reaches the provider.
    let calls = stats.snapshot().kms_decrypt;
    let e = kms.unwrap_data_key(&foreign.kek, &foreign.wrapped, &here).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KmsDenied, "{name}: {e}");
    assert_eq!(stats.snapshot().kms_decrypt, calls, "{name}: an untrusted key reached the provider");

    // Re-wrap keeps the data key.
    let (rewrapped, kek2) = kms.rewrap_data_key(&g.kek, &g.wrapped, &here).await.unwrap();
    assert_ne!(rewrapped, g.wrapped, "{name}");
    let again = kms.unwrap_data_key(&kek2, &rewrapped, &here).await.unwrap();
    assert_eq!(again.expose(), g.plaintext.expose(), "{name}");
    let e = kms.rewrap_data_key(&foreign.kek, &foreign.wrapped, &here).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KmsDenied, "{name}: {e}");

    // Moving to another key of the same provider (a rotation): the data key is the same under the
    // new key, still bound to its wallet; an existing key wrapped under it opens too.
    let moving = KeyWrapping::with_previous(s.other.clone(), vec![s.key.clone()], None, Arc::default());
    let (moved, new_kek) = moving.rewrap_data_key(&g.kek, &g.wrapped, &here).await.unwrap();
    assert!(new_kek.same_key(s.other.kek()), "{name}");
    assert_eq!(moving.unwrap_data_key(&new_kek, &moved, &here).await.unwrap().expose(), g.plaintext.expose(), "{name}");
    let e = moving.unwrap_data_key(&new_kek, &moved, &ctx("test", "w2")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Tampered, "{name}: {e}");
    let (wrapped, k) = moving.wrap_uncached(&g.plaintext, &here).await.unwrap();
    assert_eq!(moving.unwrap_uncached(&k, &wrapped, &here).await.unwrap().expose(), g.plaintext.expose(), "{name}");
    // A key the keyring retired unwraps nothing, and is never asked.
    moving.set_trusted(sharevault_core::kms::Trusted {
        usable: vec![s.other.kek().clone()],
        retired: vec![g.kek.clone()],
    });
    let e = moving.unwrap_data_key(&g.kek, &g.wrapped, &here).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KmsDenied, "{name}: {e}");
    assert!(e.message.contains("retired"), "{name}: {e}");

    // Closing the seam zeroizes the cache.
    kms.close();
    assert_eq!(kms.cached_keys(), 0, "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_maps_the_same_events_to_the_same_codes_without_a_cache() {
    let (moto, bao) = (support::moto::start(), support::openbao::start(false));
    for s in every_provider(&moto, &bao).await {
        conforms(s, false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_maps_the_same_events_to_the_same_codes_behind_the_cache() {
    let (moto, bao) = (support::moto::start(), support::openbao::start(false));
    for s in every_provider(&moto, &bao).await {
        conforms(s, true).await;
    }
}
