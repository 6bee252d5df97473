//! Every heap block freed while plaintext shares pass through the vault is scanned for the
//! share's bytes: none may still hold them when it is handed back to the allocator. This is
//! what "zeroized on drop, and on every reallocation" means, checked end to end.

use sharevault_core::shares::{self, Encoder};
use sharevault_core::{DataKey, KmsConfig, OpenConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const MARKER: &[u8] = b"ZQ7-SHARE-MARKER-ZQ7";

struct Scanning;
static ACTIVE: AtomicBool = AtomicBool::new(false);
static LEAKS: AtomicUsize = AtomicUsize::new(0);
static SCANNED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ACTIVE.load(Ordering::Relaxed) && layout.size() >= MARKER.len() {
            let block = std::slice::from_raw_parts(ptr, layout.size());
            SCANNED.fetch_add(1, Ordering::Relaxed);
            if block.windows(MARKER.len()).any(|w| w == MARKER) {
                LEAKS.fetch_add(1, Ordering::Relaxed);
            }
        }
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Scanning = Scanning;

fn encoded_shares() -> sharevault_core::SecretBuf {
    let mut e = Encoder::new();
    e.begin_array(1).unwrap();
    e.begin_object(3).unwrap();
    e.key("pubkey").unwrap();
    e.bytes(&[1u8; 32]).unwrap();
    e.key("secretShare").unwrap();
    // 40 KB, so the buffer grows (and reallocates) several times while it is written.
    let len = MARKER.len() * 2000;
    e.string_in_place(len, |dst| {
        for (i, b) in dst[..len].iter_mut().enumerate() {
            *b = MARKER[i % MARKER.len()];
        }
        dst[len] = 0;
        Ok(len)
    })
    .unwrap();
    // A large field after the secret, so the buffer also grows while it holds the secret.
    e.key("padding").unwrap();
    e.bytes(&vec![0u8; 256 * 1024]).unwrap();
    e.finish()
}

mod support;

/// Store once and hydrate three times with the scan on; the vault's own allocations only.
async fn store_and_hydrate(database: &str) {
    let vault = sharevault_core::open(OpenConfig {
        harden_process: false,
        audit_sink: None,
        delegation_key: None,
        allow: Default::default(),
        database: database.into(),
        environment: "test".into(),
        actor: None,
        kms: KmsConfig::Local(DataKey::generate()),
        previous_kms: Vec::new(),
        local_in_production: false,
        cache: None,
        store: Default::default(),
    })
    .await
    .unwrap();
    let meta = r#"{"walletId":"w-1","accountAddress":"SoLaNaAddr1","chainName":"SVM","thresholdSignatureScheme":"TWO_OF_TWO","externalServerKeySharesBackupInfo":{"passwordEncrypted":false,"backups":{}}}"#;

    ACTIVE.store(true, Ordering::SeqCst);
    {
        let input = encoded_shares();
        vault.store_wallet(meta, None, &input, None).await.unwrap();
        drop(input);
        for _ in 0..3 {
            let h = vault.hydrate("SoLaNaAddr1", Some("sign"), None).await.unwrap();
            let doc = shares::decode(&h.shares).unwrap();
            assert!(matches!(doc, shares::Value::Array(ref a) if a.len() == 1));
            drop(doc);
            drop(h);
        }
    }
    ACTIVE.store(false, Ordering::SeqCst);
    vault.close().await.unwrap();
}

/// On every backend: the store sees only sealed bytes, whichever driver carries them.
#[tokio::test(flavor = "current_thread")]
async fn no_freed_heap_block_holds_plaintext_after_store_and_hydrate() {
    let dir = tempfile::tempdir().unwrap();
    let (mut urls, pg) = support::databases(dir.path()).await;
    urls.push(("sqlite :memory:", ":memory:".into()));
    for (name, url) in &urls {
        // Counted per backend: each run must scan on its own.
        SCANNED.store(0, Ordering::SeqCst);
        LEAKS.store(0, Ordering::SeqCst);
        store_and_hydrate(url).await;
        assert!(SCANNED.load(Ordering::SeqCst) > 10, "{name}: the scan did not run");
        assert_eq!(LEAKS.load(Ordering::SeqCst), 0, "{name}: a freed heap block still held plaintext share bytes");
    }
    if let Some(db) = pg {
        db.drop().await;
    }
}
