//! The key lifecycle on every backend, with the real providers (local keys, AWS KMS through
//! moto): a new primary registered at open, rotation (re-wrap and re-encrypt) under load,
//! retirement, the key status report, and what someone who can write the database but has no key
//! can and cannot do to it.

mod support;

use sharevault_core::error::ErrorCode;
use sharevault_core::store::StoreOptions;
use sharevault_core::vault::RotationPlan;
use sharevault_core::{DataKey, KmsConfig, OpenConfig, Vault};
use std::sync::Arc;
use support::{metadata, shares};

fn address(i: usize) -> String {
    format!("0x{i:040x}")
}

fn local(b: u8) -> KmsConfig {
    KmsConfig::Local(DataKey::from_bytes([b; 32]))
}

async fn open(url: &str, env: &str, kms: KmsConfig, previous: Vec<KmsConfig>) -> sharevault_core::Result<Vault> {
    sharevault_core::open(OpenConfig {
        database: url.to_string(),
        environment: env.to_string(),
        actor: None,
        kms,
        previous_kms: previous,
        local_in_production: false,
        cache: None,
        store: StoreOptions::default(),
        allow: sharevault_core::permissions::Permissions::all(),
        harden_process: false,
        audit_sink: None,
        delegation_key: None,
    })
    .await
}

/// Runs a whole rotation as the facade's `rotate()` does: batches until nothing is claimed.
async fn rotate(v: &Vault, reencrypt: bool) -> (RotationPlan, u32, u32) {
    let plan = v.begin_rotation(reencrypt, Some("ops")).await.unwrap();
    let (mut done, mut failed) = (0u32, 0u32);
    let mut after: Option<String> = None;
    loop {
        let b = v.rotate_batch(&plan, after.as_deref(), 50, 8, Some("ops")).await.unwrap();
        done += b.done;
        failed += b.failed.values().sum::<u32>();
        if b.claimed == 0 {
            break;
        }
        after = b.last;
    }
    v.finish_rotation(&plan, Some("ops")).await.unwrap();
    (plan, done, failed)
}

async fn store_many(v: &Vault, n: usize) {
    for i in 1..=n {
        v.store_wallet(&metadata(i), None, &shares(&format!("secret-{i}")), None).await.unwrap();
    }
}

async fn all_hydrate(v: &Vault, n: usize) {
    for i in 1..=n {
        let h = v.hydrate(&address(i), Some("check"), None).await.unwrap();
        assert_eq!(h.shares.as_slice(), shares(&format!("secret-{i}")).as_slice(), "wallet {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_key_rotated_to_another_leaves_every_wallet_readable_with_only_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let (urls, pg) = support::databases(dir.path()).await;
    for (name, url) in urls {
        let a = open(&url, "test", local(1), vec![]).await.unwrap();
        store_many(&a, 30).await;
        a.close().await.unwrap();
        // Only the new key: the integrity key is wrapped under the old one, which is not named.
        let e = open(&url, "test", local(2), vec![]).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::KmsDenied, "{name}: {e}");
        assert!(e.message.contains("kms.previous"), "{name}: {e}");
        let b = open(&url, "test", local(2), vec![local(1)]).await.unwrap();
        let before = b.key_status(None).await.unwrap();
        let states: Vec<(&str, u64)> = before.keys.iter().map(|k| (k.state.as_str(), k.records)).collect();
        assert_eq!(states, [("decrypt-only", 30), ("primary", 0)], "{name}");
        assert_eq!(before.behind, 30, "{name}");
        // Readable while behind (through the old key), then moved.
        all_hydrate(&b, 30).await;
        let old_wrapped = support::sql::sealed_bytes(&url).await;
        let (_, done, failed) = rotate(&b, false).await;
        assert_eq!((done, failed), (30, 0), "{name}");
        // Each committed re-wrap ends its own lease: none is left to hold a row from the next run.
        assert_eq!(support::sql::leases(&url).await, 0, "{name}");
        if name == "sqlite" {
            // A re-wrap is shredded by the writer's next checkpoint, within a second: after that no
            // old wrapped key is in the database, its WAL or its shm file.
            tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
            let files: Vec<Vec<u8>> =
                std::fs::read_dir(dir.path()).unwrap().map(|f| std::fs::read(f.unwrap().path()).unwrap()).collect();
            for (w, _) in &old_wrapped {
                assert!(
                    files.iter().all(|f| !f.windows(w.len()).any(|x| x == w.as_slice())),
                    "an old wrapped key stayed"
                );
            }
        }
        let after = b.key_status(None).await.unwrap();
        let states: Vec<(&str, u64)> = after.keys.iter().map(|k| (k.state.as_str(), k.records)).collect();
        assert_eq!(states, [("decrypt-only", 0), ("primary", 30)], "{name}");
        assert_eq!(after.behind, 0, "{name}");
        assert!(after.keys[1].integrity_key && !after.keys[0].integrity_key, "{name}: {after:?}");
        // A second run finds nothing to do.
        let (_, again, _) = rotate(&b, false).await;
        assert_eq!(again, 0, "{name}");
        b.close().await.unwrap();
        // Only the new key now works; the old one alone is refused (it is no longer the primary).
        let b = open(&url, "test", local(2), vec![]).await.unwrap();
        all_hydrate(&b, 30).await;
        b.close().await.unwrap();
        let e = open(&url, "test", local(1), vec![]).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::KmsDenied, "{name}: {e}");
        // A process deployed with the old configuration (old primary, new key in previous) is
        // refused too, and changes nothing: it must not undo the rotation.
        let e = open(&url, "test", local(1), vec![local(2)]).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::KmsDenied, "{name}: {e}");
        assert!(e.message.contains("no longer"), "{name}: {e}");
        let b = open(&url, "test", local(2), vec![]).await.unwrap();
        let status = b.key_status(None).await.unwrap();
        let states: Vec<&str> = status.keys.iter().map(|k| k.state.as_str()).collect();
        assert_eq!(states, ["decrypt-only", "primary"], "{name}");
        b.close().await.unwrap();
    }
    if let Some(pg) = pg {
        pg.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_concurrent_hydrates_and_replaces_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (urls, pg) = support::databases(dir.path()).await;
    for (name, url) in urls {
        let a = open(&url, "test", local(1), vec![]).await.unwrap();
        store_many(&a, 60).await;
        a.close().await.unwrap();
        let v = Arc::new(open(&url, "test", local(2), vec![local(1)]).await.unwrap());
        let load = {
            let v = v.clone();
            tokio::spawn(async move {
                let mut replaced = Vec::new();
                for round in 0..3 {
                    for i in 1..=60usize {
                        v.hydrate(&address(i), Some("sign"), None).await.unwrap();
                        if i % 3 == 0 {
                            let s = shares(&format!("replaced-{i}-{round}"));
                            v.replace_shares(
                                &address(i),
                                &s,
                                r#"{"passwordEncrypted":false,"backups":{}}"#,
                                None,
                                None,
                            )
                            .await
                            .unwrap();
                            replaced.push((i, round));
                        }
                    }
                }
                replaced
            })
        };
        let (_, _, failed) = rotate(&v, false).await;
        let replaced = load.await.unwrap();
        assert_eq!(failed, 0, "{name}");
        assert_eq!(replaced.len(), 60, "{name}");
        // Every replace is there (none overwritten by a rotation's stale copy), every row moved.
        for i in 1..=60usize {
            let want = if i % 3 == 0 { format!("replaced-{i}-2") } else { format!("secret-{i}") };
            let h = v.hydrate(&address(i), Some("check"), None).await.unwrap();
            assert_eq!(h.shares.as_slice(), shares(&want).as_slice(), "{name}: wallet {i}");
        }
        // Rows the load replaced were written under the primary; a rerun moves what is left.
        rotate(&v, false).await;
        assert_eq!(v.key_status(None).await.unwrap().behind, 0, "{name}");
        assert_eq!(v.verify_audit_chain(None).await.unwrap().broken_at, None, "{name}");
        v.close().await.unwrap();
    }
    if let Some(pg) = pg {
        pg.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_retired_only_when_nothing_needs_it_and_then_nothing_under_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (urls, pg) = support::databases(dir.path()).await;
    for (name, url) in urls {
        let a = open(&url, "test", local(1), vec![]).await.unwrap();
        store_many(&a, 5).await;
        let old_key = a.key_status(None).await.unwrap().keys[0].kek.clone();
        a.close().await.unwrap();
        // The row as an old backup holds it.
        support::sql::exec(
            &url,
            &format!("CREATE TABLE saved_row AS SELECT * FROM wallets WHERE address_key = '{}'", address(1)),
        )
        .await;
        let v = open(&url, "test", local(2), vec![local(1)]).await.unwrap();
        let e = v.retire_key(&old_key.provider, &old_key.key_id, None).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict, "{name}: {e}");
        assert!(e.message.contains("5 record(s)"), "{name}: {e}");
        let primary = v.key_status(None).await.unwrap().keys[1].kek.clone();
        let e = v.retire_key(&primary.provider, &primary.key_id, None).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict, "{name}: retiring the primary");
        assert_eq!(v.retire_key("local", "nope", None).await.unwrap_err().code, ErrorCode::NotFound);
        rotate(&v, false).await;
        v.retire_key(&old_key.provider, &old_key.key_id, Some("ops")).await.unwrap();
        let status = v.key_status(None).await.unwrap();
        assert_eq!(status.keys[0].state, "retired", "{name}");
        all_hydrate(&v, 5).await;
        // The old row put back, with its MAC: refused for the retired key, named.
        support::sql::exec(
            &url,
            &format!(
                "DELETE FROM wallets WHERE address_key = '{}'; INSERT INTO wallets SELECT * FROM saved_row",
                address(1)
            ),
        )
        .await;
        let e = v.hydrate(&address(1), Some("sign"), None).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::KmsDenied, "{name}: {e}");
        assert!(e.message.contains(&old_key.key_id) && e.message.contains("retired"), "{name}: {e}");
        v.close().await.unwrap();
        // A retired key is never a primary again, and a retired key named in previous unwraps nothing.
        let e = open(&url, "test", local(1), vec![local(2)]).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::KmsDenied, "{name}: {e}");
        let v = open(&url, "test", local(2), vec![local(1)]).await.unwrap();
        assert_eq!(v.hydrate(&address(1), Some("sign"), None).await.unwrap_err().code, ErrorCode::KmsDenied);
        v.close().await.unwrap();
    }
    if let Some(pg) = pg {
        pg.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_serves_one_environment_and_the_local_key_is_refused_for_production() {
    let dir = tempfile::tempdir().unwrap();
    let (urls, pg) = support::databases(dir.path()).await;
    for (name, url) in urls {
        let a = open(&url, "test", local(1), vec![]).await.unwrap();
        let e = open(&url, "staging", local(1), vec![]).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::EnvironmentMismatch, "{name}: {e}");
        assert!(e.message.contains("test") && e.message.contains("staging"), "{name}: {e}");
        open(&url, "staging", local(3), vec![]).await.unwrap().close().await.unwrap();
        a.close().await.unwrap();
        for env in ["production", "eu-prod", "live"] {
            let e = open(&url, env, local(4), vec![]).await.unwrap_err();
            assert_eq!((e.code, e.path.as_deref()), (ErrorCode::InvalidInput, Some("kms.allowInProduction")), "{env}");
        }
        let mut config = OpenConfig {
            database: url.clone(),
            environment: "production".into(),
            actor: None,
            kms: local(4),
            previous_kms: vec![],
            local_in_production: true,
            cache: None,
            store: StoreOptions::default(),
            allow: Default::default(),
            harden_process: false,
            audit_sink: None,
            delegation_key: None,
        };
        sharevault_core::open(config).await.unwrap().close().await.unwrap();
        // The same key twice in one open is refused before anything is opened.
        config = OpenConfig {
            database: url.clone(),
            environment: "test".into(),
            actor: None,
            kms: local(1),
            previous_kms: vec![local(1)],
            local_in_production: false,
            cache: None,
            store: StoreOptions::default(),
            allow: Default::default(),
            harden_process: false,
            audit_sink: None,
            delegation_key: None,
        };
        let e = sharevault_core::open(config).await.unwrap_err();
        assert_eq!(e.path.as_deref(), Some("kms.previous[0]"), "{name}: {e}");
    }
    if let Some(pg) = pg {
        pg.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_status_counts_the_rows_and_an_edited_wrap_time_is_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let (urls, pg) = support::databases(dir.path()).await;
    for (name, url) in urls {
        let v = open(&url, "test", local(1), vec![]).await.unwrap();
        store_many(&v, 12).await;
        v.delete_wallet(&address(12), None).await.unwrap();
        let s = v.key_status(Some(90)).await.unwrap();
        assert_eq!(s.keys.len(), 1, "{name}");
        let k = &s.keys[0];
        assert_eq!(k.records, support::sql::count_rows(&url).await, "{name}");
        assert_eq!((k.records, k.state.as_str(), k.due, s.behind), (11, "primary", false, 0), "{name}: {k:?}");
        assert!(k.oldest_wrap.unwrap() <= k.newest_wrap.unwrap(), "{name}");
        assert!(k.integrity_key && k.configured, "{name}");
        // A writer without the key makes one wrap look older (or newer): the row no longer verifies.
        support::sql::exec(&url, &format!("UPDATE wallets SET wrapped_at = 1 WHERE address_key = '{}'", address(3)))
            .await;
        let e = v.hydrate(&address(3), Some("sign"), None).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Tampered, "{name}: {e}");
        let s = v.key_status(None).await.unwrap();
        assert_eq!((s.keys[0].records, s.tampered), (10, 1), "{name}");
        v.close().await.unwrap();
    }
    if let Some(pg) = pg {
        pg.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyring_entry_edited_or_put_back_trusts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (urls, pg) = support::databases(dir.path()).await;
    for (name, url) in urls {
        let a = open(&url, "test", local(1), vec![]).await.unwrap();
        store_many(&a, 2).await;
        a.close().await.unwrap();
        let v = open(&url, "test", local(2), vec![local(1)]).await.unwrap();
        rotate(&v, false).await;
        let old = v.key_status(None).await.unwrap().keys[0].kek.clone();
        support::sql::exec(
            &url,
            &format!("CREATE TABLE saved_key AS SELECT * FROM keyring WHERE kek_key_id = '{}'", old.key_id),
        )
        .await;
        v.retire_key(&old.provider, &old.key_id, None).await.unwrap();
        v.close().await.unwrap();
        // The retired key's entry put back to its decrypt-only copy (authentic, but not the last).
        support::sql::exec(
            &url,
            &format!(
                "DELETE FROM keyring WHERE kek_key_id = '{}'; INSERT INTO keyring SELECT * FROM saved_key",
                old.key_id
            ),
        )
        .await;
        let v = open(&url, "test", local(2), vec![local(1)]).await.unwrap();
        let s = v.key_status(None).await.unwrap();
        let k = s.keys.iter().find(|k| k.kek.key_id == old.key_id).unwrap();
        assert!(k.tampered.as_deref().unwrap_or("").contains("earlier copy"), "{name}: {k:?}");
        v.close().await.unwrap();
        // And its state edited outright: fails its MAC.
        support::sql::exec(&url, &format!("UPDATE keyring SET state = 'primary' WHERE kek_key_id = '{}'", old.key_id))
            .await;
        let v = open(&url, "test", local(2), vec![local(1)]).await.unwrap();
        let s = v.key_status(None).await.unwrap();
        let k = s.keys.iter().find(|k| k.kek.key_id == old.key_id).unwrap();
        assert!(k.tampered.as_deref().unwrap_or("").contains("does not verify"), "{name}: {k:?}");
        all_hydrate(&v, 2).await;
        v.close().await.unwrap();
    }
    if let Some(pg) = pg {
        pg.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reencryption_gives_every_wallet_a_new_data_key_and_leaves_no_old_bytes_in_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let (urls, pg) = support::databases(dir.path()).await;
    for (name, url) in urls {
        let v = open(&url, "test", local(1), vec![]).await.unwrap();
        store_many(&v, 20).await;
        let old: Vec<(Vec<u8>, Vec<u8>)> = support::sql::sealed_bytes(&url).await;
        let (plan, done, failed) = rotate(&v, true).await;
        assert!(plan.reencrypt_before.is_some(), "{name}");
        assert_eq!((done, failed), (20, 0), "{name}");
        all_hydrate(&v, 20).await;
        let new = support::sql::sealed_bytes(&url).await;
        for (w, c) in &old {
            assert!(new.iter().all(|(nw, nc)| nw != w && nc != c), "{name}: a record kept its data key or ciphertext");
        }
        // Finished: recorded, so a second run re-encrypts nothing.
        assert_eq!(v.key_status(None).await.unwrap().reencrypt_before, None, "{name}");
        assert_eq!(rotate(&v, true).await.1, 20, "{name}: a new re-encryption starts afresh");
        let rows = v.audit_log(None, None, Some(1000)).await.unwrap();
        assert_eq!(rows.iter().filter(|r| r.action == "reencrypt").count(), 40, "{name}");
        assert_eq!(rows.iter().filter(|r| r.action == "reencrypt_finished").count(), 2, "{name}");
        v.close().await.unwrap();
        if name == "sqlite" {
            // Not a byte of any old wrapped key or ciphertext in the database, its WAL or shm file.
            let mut files = Vec::new();
            for f in std::fs::read_dir(dir.path()).unwrap() {
                files.push(std::fs::read(f.unwrap().path()).unwrap());
            }
            for (w, c) in &old {
                for f in &files {
                    assert!(!f.windows(w.len()).any(|x| x == w.as_slice()), "an old wrapped key is in a file");
                    assert!(!f.windows(32).any(|x| x == &c[..32]), "an old ciphertext is in a file");
                }
            }
        }
    }
    if let Some(pg) = pg {
        pg.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_to_aws_rotation_moves_data_keys_inside_kms_and_local_to_aws_wraps_them_there() {
    let moto = support::moto::start();
    let (key_a, key_b) = (moto.create_key(), moto.create_key());
    let dir = tempfile::tempdir().unwrap();
    let (urls, pg) = support::databases(dir.path()).await;
    for (name, url) in urls {
        // Local to AWS: each data key unwrapped here and wrapped by KMS (Encrypt).
        let a = open(&url, "test", local(1), vec![]).await.unwrap();
        store_many(&a, 10).await;
        a.close().await.unwrap();
        let v = open(&url, "test", KmsConfig::Aws(moto.config(&key_a)), vec![local(1)]).await.unwrap();
        let s0 = v.stats();
        let (_, done, _) = rotate(&v, false).await;
        let s1 = v.stats();
        assert_eq!(done, 10, "{name}");
        assert_eq!((s1.kms_encrypt - s0.kms_encrypt, s1.kms_reencrypt - s0.kms_reencrypt), (10, 0), "{name}");
        all_hydrate(&v, 10).await;
        v.close().await.unwrap();
        // AWS key A to key B: ReEncrypt only; no Decrypt, so no data key left KMS.
        let v = open(&url, "test", KmsConfig::Aws(moto.config(&key_b)), vec![KmsConfig::Aws(moto.config(&key_a))])
            .await
            .unwrap();
        let s0 = v.stats();
        let (_, done, failed) = rotate(&v, false).await;
        let s1 = v.stats();
        assert_eq!((done, failed), (10, 0), "{name}");
        assert_eq!(s1.kms_reencrypt - s0.kms_reencrypt, 10, "{name}");
        assert_eq!((s1.kms_decrypt - s0.kms_decrypt, s1.kms_encrypt - s0.kms_encrypt), (0, 0), "{name}");
        let status = v.key_status(None).await.unwrap();
        let b = status.keys.iter().find(|k| k.kek.key_id == key_b).unwrap();
        assert_eq!((b.state.as_str(), b.records, b.integrity_key), ("primary", 10, true), "{name}: {status:?}");
        // What AWS says about its own rotation of the key is reported.
        assert!(b.provider_rotation.is_some(), "{name}");
        v.close().await.unwrap();
        let v = open(&url, "test", KmsConfig::Aws(moto.config(&key_b)), vec![]).await.unwrap();
        all_hydrate(&v, 10).await;
        v.close().await.unwrap();
    }
    if let Some(pg) = pg {
        pg.drop().await;
    }
}

/// KMS calls a rotation made: (reencrypt, decrypt, encrypt).
type Calls = (u64, u64, u64);

/// Transit in every direction: from the local key (wrapped by Transit's `encrypt`), to the same
/// Transit key's newer version after it rotates in Transit (`rewrap`: the data key never leaves
/// it), to AWS and back to another Transit key (unwrapped here, wrapped there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transit_rotations_to_and_from_every_other_provider() {
    let (moto, bao) = (support::moto::start(), support::openbao::start(false));
    let aws = moto.create_key();
    let dir = tempfile::tempdir().unwrap();
    let (urls, pg) = support::databases(dir.path()).await;
    for (name, url) in urls {
        let (ka, kb) = (bao.create_key(&format!("{name}-a")), bao.create_key(&format!("{name}-b")));
        let transit = |k: &str| KmsConfig::Transit(bao.config(k));
        let a = open(&url, "test", local(1), vec![]).await.unwrap();
        store_many(&a, 10).await;
        a.close().await.unwrap();
        // (from, to, expected (reencrypt, decrypt, encrypt) calls for 10 records); a newer version
        // of the primary's own key needs no `previous`.
        let steps: Vec<(Option<KmsConfig>, KmsConfig, Calls)> = vec![
            (Some(local(1)), transit(&ka), (0, 10, 10)),
            (None, transit(&ka), (10, 0, 0)),
            (Some(transit(&ka)), KmsConfig::Aws(moto.config(&aws)), (0, 10, 10)),
            (Some(KmsConfig::Aws(moto.config(&aws))), transit(&kb), (0, 10, 10)),
        ];
        for (i, (from, to, calls)) in steps.into_iter().enumerate() {
            if i == 1 {
                // The key rotates in Transit: a vault opened now has version 2 as its primary.
                bao.bao(&["write", "-f", &format!("transit/keys/{ka}/rotate")]);
            }
            let v = open(&url, "test", to, from.into_iter().collect()).await.unwrap();
            let s0 = v.stats();
            let (_, done, failed) = rotate(&v, false).await;
            let s1 = v.stats();
            assert_eq!((done, failed), (10, 0), "{name} step {i}");
            let seen =
                (s1.kms_reencrypt - s0.kms_reencrypt, s1.kms_decrypt - s0.kms_decrypt, s1.kms_encrypt - s0.kms_encrypt);
            assert_eq!(seen, calls, "{name} step {i}");
            all_hydrate(&v, 10).await;
            let status = v.key_status(None).await.unwrap();
            assert_eq!(status.behind, 0, "{name} step {i}");
            if i == 1 {
                let k = status.keys.iter().find(|k| k.state == "primary").unwrap();
                assert_eq!(
                    (k.kek.provider.as_str(), k.kek.key_version.as_str(), k.records),
                    ("transit", "2", 10),
                    "{name}: {status:?}"
                );
                assert_eq!(
                    k.by_version.iter().map(|v| (v.version.as_str(), v.records)).collect::<Vec<_>>(),
                    vec![("2", 10)],
                    "{name}"
                );
                let r = k.provider_rotation.as_ref().unwrap();
                assert_eq!(r.min_decryption_version.as_deref(), Some("1"), "{name}");
            }
            v.close().await.unwrap();
        }
        // Only the last key is needed now.
        let v = open(&url, "test", transit(&kb), vec![]).await.unwrap();
        all_hydrate(&v, 10).await;
        v.close().await.unwrap();
    }
    if let Some(pg) = pg {
        pg.drop().await;
    }
}

/// Found by the fault soak (bench/soak.js, PostgreSQL, seed 5): a process that read the keyring
/// while another changed it saw the entry of one moment and the audit row of the next, took the
/// entry for tampered, and from then on refused every record as under a retired key. The keyring
/// and its audit rows are now read in one snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyring_read_while_another_process_changes_it_sees_no_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let (urls, pg) = support::databases(dir.path()).await;
    for (name, url) in urls {
        let changer = Arc::new(open(&url, "test", local(1), vec![]).await.unwrap());
        let reader = open(&url, "test", local(1), vec![]).await.unwrap();
        store_many(&changer, 3).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Every begin and finish of a re-encryption changes the primary's keyring entry (with
        // its audit row, in one transaction).
        let churn = {
            let (v, stop) = (changer.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    rotate(&v, true).await;
                    n += 1;
                }
                n
            })
        };
        let mut reads = 0;
        let until = std::time::Instant::now() + std::time::Duration::from_secs(4);
        while std::time::Instant::now() < until {
            let s = reader.key_status(None).await.unwrap();
            for k in &s.keys {
                assert!(k.tampered.is_none(), "{name}: read {reads}: {:?}", k.tampered);
            }
            reads += 1;
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let changes = churn.await.unwrap();
        assert!(changes > 10 && reads > 10, "{name}: {changes} keyring changes, {reads} reads");
        // And the reader still reads every record.
        all_hydrate(&reader, 3).await;
        reader.close().await.unwrap();
        changer.close().await.unwrap();
    }
    if let Some(pg) = pg {
        pg.drop().await;
    }
}

/// The sibling of the keyring's read skew, on wallet rows: a hydrate that found no row, then read
/// the address's audit state after a concurrent store had committed, took the missing row for a
/// deleted one (`ERR_TAMPERED`). It is `ERR_NOT_FOUND` (the wallet was not there when read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hydrate_racing_the_first_store_of_its_wallet_is_not_found_never_tampered() {
    let dir = tempfile::tempdir().unwrap();
    let (urls, pg) = support::databases(dir.path()).await;
    for (name, url) in urls {
        let writer = Arc::new(open(&url, "test", local(1), vec![]).await.unwrap());
        let reader = open(&url, "test", local(1), vec![]).await.unwrap();
        let stored = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        const N: usize = 300;
        let stores = {
            let (v, stored) = (writer.clone(), stored.clone());
            tokio::spawn(async move {
                for i in 1..=N {
                    v.store_wallet(&metadata(i), None, &shares(&format!("secret-{i}")), None).await.unwrap();
                    stored.store(i, std::sync::atomic::Ordering::SeqCst);
                }
            })
        };
        let (mut not_found, mut found) = (0, 0);
        while stored.load(std::sync::atomic::Ordering::SeqCst) < N {
            let next = stored.load(std::sync::atomic::Ordering::SeqCst) + 1;
            match reader.hydrate(&address(next), Some("check"), None).await {
                Ok(_) => found += 1,
                Err(e) if e.code == ErrorCode::NotFound => not_found += 1,
                Err(e) => panic!("{name}: wallet {next}, being stored: {e}"),
            }
        }
        stores.await.unwrap();
        assert!(not_found > 0, "{name}: {found} found, {not_found} not found");
        reader.close().await.unwrap();
        writer.close().await.unwrap();
    }
    if let Some(pg) = pg {
        pg.drop().await;
    }
}
