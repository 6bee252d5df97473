//! What every storage backend must guarantee, run over `Arc<dyn WalletStore>` exactly as the
//! vault uses it: compare-and-swap on a row version (stale and missing), conflict on insert, a
//! change and its audit row committed together or not at all, an audit chain that verifies and
//! never forks under concurrent appends, paging, and refusal after close. A new backend adds one
//! line to `every_store`.

use sharevault_core::audit::{self, AuditEntry};
use sharevault_core::envelope::{KekRef, SealedRecord};
use sharevault_core::error::ErrorCode;
use sharevault_core::store::{
    self, Applied, AuditQuery, Change, ListQuery, RowAuth, StoreOptions, WalletRow, WalletStore,
};

mod support;
use std::sync::Arc;

/// Every backend this build has, each on a fresh database.
async fn every_store(
    dir: &std::path::Path,
    pg: Option<&support::pg::TestDb>,
) -> Vec<(&'static str, Arc<dyn WalletStore>)> {
    let o = StoreOptions::default();
    let mut stores = vec![
        ("sqlite :memory:", store::open(":memory:", &o).await.unwrap()),
        ("sqlite file", store::open(&format!("sqlite://{}", dir.join("c.db").display()), &o).await.unwrap()),
    ];
    if let Some(db) = pg {
        stores.push(("postgres", store::open(&db.url, &o).await.unwrap()));
    }
    stores
}

fn sealed(tag: u8) -> SealedRecord {
    SealedRecord {
        format: 1,
        alg: 1,
        kek: KekRef { provider: "local".into(), key_id: "k".into(), key_version: "1".into() },
        wrapped_dek: vec![tag; 60],
        nonce: vec![tag; 12],
        ciphertext: vec![tag; 48],
        wrapped_at: Some(1_700_000_000_000 + i64::from(tag)),
        sealed_at: Some(1_600_000_000_000 + i64::from(tag)),
    }
}

fn row(i: u32, env: &str, chain: &str) -> WalletRow {
    WalletRow {
        address: format!("0x{i:040X}"),
        address_key: format!("0x{i:040x}"),
        wallet_id: format!("w-{i}"),
        chain_name: chain.into(),
        environment: env.into(),
        metadata_json: format!(r#"{{"walletId":"w-{i}"}}"#),
        version: 1,
        generation: 1,
        sealed: sealed(i as u8),
        mac: None,
        sealed_digest: None,
        state: None,
    }
}

/// A row MAC as the store sees it: bytes to keep (the vault computes and checks them).
fn auth() -> RowAuth {
    RowAuth { mac: vec![0xAA; 32], sealed_digest: vec![0xBB; 32] }
}

fn entry(action: &'static str, address: &str) -> AuditEntry {
    entry_in("test", action, address)
}

fn entry_in(environment: &str, action: &'static str, address: &str) -> AuditEntry {
    AuditEntry {
        at_ms: 1_700_000_000_000,
        environment: environment.into(),
        actor: "cargo".into(),
        action,
        address: address.into(),
        wallet_id: None,
        purpose: Some("conformance".into()),
        outcome: "ok".into(),
        wallet_mac: None,
    }
}

/// The whole audit log, read a page at a time.
async fn audit_all(s: &Arc<dyn WalletStore>) -> Vec<audit::AuditRecord> {
    let mut rows: Vec<audit::AuditRecord> = Vec::new();
    loop {
        let page = s.audit_page(rows.last().map_or(0, |r| r.seq), 100).await.unwrap();
        if page.is_empty() {
            return rows;
        }
        rows.extend(page);
    }
}

async fn audit_rows(s: &Arc<dyn WalletStore>) -> usize {
    audit_all(s).await.len()
}

async fn conforms(name: &str, s: Arc<dyn WalletStore>) {
    let w = row(1, "test", "EVM");
    let key = w.address_key.clone();

    // Insert, read back whole.
    assert_eq!(
        s.apply(Change::Insert { row: Box::new(w.clone()), auth: auth(), state_seq: None }, entry("store", &key))
            .await
            .unwrap(),
        Applied::Done,
        "{name}"
    );
    let got = s.get("test", &key).await.unwrap().expect(name);
    assert_eq!(
        (got.version, got.generation, &got.metadata_json, &got.sealed),
        (1, 1, &w.metadata_json, &w.sealed),
        "{name}"
    );
    assert_eq!(s.get_metadata("test", &key).await.unwrap().expect(name).wallet_id, "w-1", "{name}");
    assert!(s.get("test", "0xnone").await.unwrap().is_none(), "{name}");

    // A second insert of the address conflicts, and its audit row is not written.
    let e = s
        .apply(Change::Insert { row: Box::new(w.clone()), auth: auth(), state_seq: None }, entry("store", &key))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict, "{name}");
    assert_eq!(audit_rows(&s).await, 1, "{name}: a refused change left an audit row");

    // Compare-and-swap: the current version applies, a stale one does not, a missing row says so.
    let update = |v: i64, k: &str| Change::UpdateMetadata {
        address_key: k.into(),
        expected_version: v,
        metadata_json: format!(r#"{{"v":{v}}}"#),
        auth: auth(),
    };
    assert_eq!(s.apply(update(1, &key), entry("merge_backup_info", &key)).await.unwrap(), Applied::Done, "{name}");
    assert_eq!(s.apply(update(1, &key), entry("merge_backup_info", &key)).await.unwrap(), Applied::Stale, "{name}");
    assert_eq!(
        s.apply(update(1, "0xnone"), entry("merge_backup_info", "0xnone")).await.unwrap(),
        Applied::NotFound,
        "{name}"
    );
    assert_eq!(audit_rows(&s).await, 2, "{name}: a stale or missing change left an audit row");
    let replace = |v: i64| Change::ReplaceShares {
        address_key: key.clone(),
        expected_version: v,
        metadata_json: r#"{"replaced":true}"#.into(),
        generation: 2,
        sealed: sealed(0xEE),
        auth: auth(),
    };
    assert_eq!(s.apply(replace(1), entry("replace_shares", &key)).await.unwrap(), Applied::Stale, "{name}");
    assert_eq!(s.apply(replace(2), entry("replace_shares", &key)).await.unwrap(), Applied::Done, "{name}");
    let got = s.get("test", &key).await.unwrap().unwrap();
    assert_eq!((got.version, got.generation, got.sealed), (3, 2, sealed(0xEE)), "{name}");
    assert_eq!(got.metadata_json, r#"{"replaced":true}"#, "{name}");

    // Listing: this environment only, by chain, in address order, paged.
    for (i, env, chain) in [(2, "test", "SVM"), (3, "test", "EVM"), (4, "prod", "EVM"), (1, "prod", "EVM")] {
        let r = row(i, env, chain);
        let k = r.address_key.clone();
        // Addresses are unique per environment: another environment's wallet at the first one's
        // address is another wallet, and each environment reads only its own.
        s.apply(Change::Insert { row: Box::new(r), auth: auth(), state_seq: None }, entry_in(env, "store", &k))
            .await
            .unwrap();
    }
    assert_eq!(s.get("prod", &key).await.unwrap().expect(name).environment, "prod", "{name}");
    assert_eq!(s.get("test", &key).await.unwrap().expect(name).environment, "test", "{name}");
    let list = |chain: Option<&str>, after: Option<String>, limit| ListQuery {
        environment: "test".into(),
        chain_name: chain.map(str::to_string),
        after,
        limit,
        prefix: None,
    };
    let keys =
        |rows: Vec<sharevault_core::store::MetadataRow>| rows.into_iter().map(|r| r.address_key).collect::<Vec<_>>();
    let all = keys(s.list(list(None, None, 10)).await.unwrap());
    assert_eq!(all, [row(1, "", "").address_key, row(2, "", "").address_key, row(3, "", "").address_key], "{name}");
    assert_eq!(keys(s.list(list(Some("EVM"), None, 10)).await.unwrap()).len(), 2, "{name}");
    assert_eq!(keys(s.list(list(None, Some(all[0].clone()), 1)).await.unwrap()), [all[1].clone()], "{name}");

    // Delete: once, then not found; the audit trail of the wallet stays.
    assert_eq!(
        s.apply(Change::Delete { address_key: key.clone() }, entry("delete", &key)).await.unwrap(),
        Applied::Done,
        "{name}"
    );
    assert_eq!(
        s.apply(Change::Delete { address_key: key.clone() }, entry("delete", &key)).await.unwrap(),
        Applied::NotFound,
        "{name}"
    );
    assert!(s.get("test", &key).await.unwrap().is_none(), "{name}");
    assert!(s.get("prod", &key).await.unwrap().is_some(), "{name}: another environment's wallet went too");

    // Audit rows on their own, concurrently: the chain never forks and has no gaps.
    let mut tasks = Vec::new();
    for n in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.append_audit(entry("hydrate", &format!("0xother-{n}"))).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let rows = audit_all(&s).await;
    // store, merge, replace of the first wallet; four more stores; one delete; 200 on their own.
    assert_eq!(rows.len(), 3 + 4 + 1 + 200, "{name}");
    assert!(rows.iter().enumerate().all(|(i, r)| r.seq == i as i64 + 1), "{name}: sequence has gaps");
    assert_eq!(
        audit::verify(&rows),
        audit::ChainCheck { rows: rows.len() as u64, broken_at: None, reason: None, acknowledged: Vec::new() },
        "{name}"
    );
    let by_wallet = s
        .audit_log(AuditQuery {
            environment: "test".into(),
            address_key: Some(key.clone()),
            after_seq: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(
        by_wallet.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
        ["store", "merge_backup_info", "replace_shares", "delete"],
        "{name}"
    );
    let page = s
        .audit_log(AuditQuery { environment: "test".into(), address_key: None, after_seq: Some(5), limit: 3 })
        .await
        .unwrap();
    // Another environment's reader sees none of these rows.
    let other = s
        .audit_log(AuditQuery { environment: "staging".into(), address_key: None, after_seq: None, limit: 1000 })
        .await
        .unwrap();
    assert!(other.is_empty(), "{name}: another environment's audit rows were readable");
    // (Rows 6 and 7 are the other environment's.)
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [8, 9, 10], "{name}");

    // After close every call is refused as closed, and a second close is fine.
    s.close().await.unwrap();
    assert_eq!(s.get("test", &all[1]).await.unwrap_err().code, ErrorCode::Closed, "{name}");
    assert_eq!(s.append_audit(entry("hydrate", "x")).await.unwrap_err().code, ErrorCode::Closed, "{name}");
    s.close().await.unwrap();
}

/// An entry recording a wallet's state (`wallet_mac`, empty for a delete), as the vault writes it.
fn state_entry(action: &'static str, address: &str, mac: &[u8]) -> AuditEntry {
    AuditEntry { wallet_mac: Some(mac.to_vec()), ..entry(action, address) }
}

async fn state_seq(s: &Arc<dyn WalletStore>, key: &str) -> Option<i64> {
    s.latest_state("test", key).await.unwrap().map(|r| r.seq)
}

/// An insert applies only over the history its caller checked: a delete or store committed in
/// between (another process's, or earlier in the same batch) makes it `Stale`, with nothing
/// written, so a vault's "deleted, may not come back" or "never stored" still holds at insert.
async fn inserts_over_the_checked_history(name: &str, s: Arc<dyn WalletStore>) {
    let w = row(7, "test", "EVM");
    let key = w.address_key.clone();
    let insert = |seq: Option<i64>| Change::Insert { row: Box::new(w.clone()), auth: auth(), state_seq: seq };
    let delete = || Change::Delete { address_key: key.clone() };
    assert_eq!(s.apply(insert(None), state_entry("store", &key, b"m1")).await.unwrap(), Applied::Done, "{name}");
    let stored = state_seq(&s, &key).await;
    assert!(stored.is_some(), "{name}");
    assert_eq!(s.apply(delete(), state_entry("delete", &key, b"")).await.unwrap(), Applied::Done, "{name}");
    let deleted = state_seq(&s, &key).await;
    assert_ne!(deleted, stored, "{name}");
    let before = audit_rows(&s).await;
    // Checked before the delete (or before anything was stored): stale, nothing written.
    for seen in [stored, None] {
        assert_eq!(s.apply(insert(seen), state_entry("store", &key, b"m2")).await.unwrap(), Applied::Stale, "{name}");
    }
    assert!(s.get("test", &key).await.unwrap().is_none(), "{name}: a stale insert wrote the row");
    assert_eq!(audit_rows(&s).await, before, "{name}: a stale insert left an audit row");
    // Checked after it: applies.
    assert_eq!(s.apply(insert(deleted), state_entry("store", &key, b"m3")).await.unwrap(), Applied::Done, "{name}");
    // A delete and an insert checked before it, queued together (one batch where the writer
    // batches): the insert sees the delete, whichever transaction it lands in.
    let checked = state_seq(&s, &key).await;
    let (d, i) = tokio::join!(
        s.apply(delete(), state_entry("delete", &key, b"")),
        s.apply(insert(checked), state_entry("store", &key, b"m4"))
    );
    assert_eq!((d.unwrap(), i.unwrap()), (Applied::Done, Applied::Stale), "{name}");
    assert!(s.get("test", &key).await.unwrap().is_none(), "{name}: a deleted wallet came back");
    s.close().await.unwrap();
}

/// A webhook event is recorded once, with its change, in one transaction: a second record of
/// it (queued beside the first, or later) is `Stale` and writes nothing; a change that is stale
/// leaves no record of the event behind. The vault's own rows (reserved addresses) are listed
/// only by their prefix, and never counted or listed as wallets.
async fn records_each_event_once(name: &str, s: Arc<dyn WalletStore>) {
    let mut d = row(9, "test", "EVM");
    d.address = "sharevault:delegation:w-9".into();
    d.address_key = d.address.clone();
    let key = d.address_key.clone();
    let event = |id: &str, then: Option<Change>| Change::Event {
        event_id: id.into(),
        outcome: format!("first {id}"),
        mac: vec![7; 32],
        then: then.map(Box::new),
    };
    let insert = || Change::Insert { row: Box::new(d.clone()), auth: auth(), state_seq: None };
    assert_eq!(
        s.apply(event("e0", Some(insert())), state_entry("delegation_created", &key, b"m1")).await.unwrap(),
        Applied::Done,
        "{name}"
    );
    // The same event twice at once, with no change of its own to be stale: the event's own
    // record decides (queued together, they land in one batch where the writer batches).
    let (a, b) = tokio::join!(
        s.apply(event("e1", None), entry("webhook", &key)),
        s.apply(event("e1", None), entry("webhook", &key))
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| *o != Applied::Done);
    assert_eq!(outcomes, [Applied::Done, Applied::Stale], "{name}");
    assert_eq!(s.webhook_event("test", "e1").await.unwrap(), Some(("first e1".to_string(), vec![7; 32])), "{name}");
    assert_eq!(s.webhook_event("prod", "e1").await.unwrap(), None, "{name}: another environment saw the event");
    let before = audit_rows(&s).await;
    assert_eq!(s.apply(event("e1", None), entry("webhook", &key)).await.unwrap(), Applied::Stale, "{name}");
    // A stale change (a version that moved): no record of the event.
    let stale = Change::UpdateMetadata {
        address_key: key.clone(),
        expected_version: 99,
        metadata_json: "{}".into(),
        auth: auth(),
    };
    assert_eq!(s.apply(event("e2", Some(stale)), entry("webhook", &key)).await.unwrap(), Applied::Stale, "{name}");
    assert_eq!(s.webhook_event("test", "e2").await.unwrap(), None, "{name}: a stale change left its event recorded");
    assert_eq!(audit_rows(&s).await, before, "{name}: a refused event left an audit row");
    // An event with no change of its own is recorded with its audit row.
    assert_eq!(s.apply(event("e3", None), entry("webhook", &key)).await.unwrap(), Applied::Done, "{name}");
    assert_eq!(audit_rows(&s).await, before + 1, "{name}");
    // Listing: wallets without the reserved row, the reserved row by its prefix.
    let w = row(10, "test", "EVM");
    let wk = w.address_key.clone();
    s.apply(Change::Insert { row: Box::new(w), auth: auth(), state_seq: None }, entry("store", &wk)).await.unwrap();
    let list = |prefix: Option<&str>| ListQuery {
        environment: "test".into(),
        chain_name: None,
        after: None,
        limit: 10,
        prefix: prefix.map(str::to_string),
    };
    let keys =
        |rows: Vec<sharevault_core::store::MetadataRow>| rows.into_iter().map(|r| r.address_key).collect::<Vec<_>>();
    assert_eq!(keys(s.list(list(None)).await.unwrap()), vec![wk.clone()], "{name}");
    assert_eq!(keys(s.list(list(Some("sharevault:delegation:"))).await.unwrap()), vec![key.clone()], "{name}");
    assert_eq!(s.wallets_by_chain("test").await.unwrap(), [("EVM".to_string(), 1)], "{name}");
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_records_each_webhook_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let pg = support::pg::TestDb::create().await;
    for (name, s) in every_store(dir.path(), pg.as_ref()).await {
        records_each_event_once(name, s).await;
    }
    if let Some(db) = pg {
        db.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let pg = support::pg::TestDb::create().await;
    for (name, s) in every_store(dir.path(), pg.as_ref()).await {
        conforms(name, s).await;
    }
    if let Some(db) = pg {
        db.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_inserts_only_over_the_history_its_caller_checked() {
    let dir = tempfile::tempdir().unwrap();
    let pg = support::pg::TestDb::create().await;
    for (name, s) in every_store(dir.path(), pg.as_ref()).await {
        inserts_over_the_checked_history(name, s).await;
    }
    if let Some(db) = pg {
        db.drop().await;
    }
}

/// The grants the README lists are enough to run every operation once `migrate` has created the
/// schema: a service role opening with migrations off needs no DDL, and cannot rewrite the
/// audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runs_with_the_least_privileges_the_readme_lists() {
    use sharevault_core::shares::Encoder;
    use sharevault_core::{DataKey, KmsConfig, OpenConfig};
    let Some(db) = support::pg::TestDb::create().await else { return };
    let config = |url: &str| OpenConfig {
        harden_process: false,
        audit_sink: None,
        delegation_key: None,
        allow: sharevault_core::permissions::Permissions::all(),
        database: url.into(),
        environment: "test".into(),
        actor: None,
        kms: KmsConfig::Local(DataKey::from_bytes([9u8; 32])),
        previous_kms: Vec::new(),
        local_in_production: false,
        cache: None,
        store: StoreOptions { migrations: store::Migrations::Never, ..StoreOptions::default() },
    };
    // The owner creates the schema (`sharevault migrate`); the service opens with migrate: false.
    store::migrate(&db.url, &StoreOptions::default()).await.unwrap();
    let role = format!("sv_app_{}", std::process::id());
    let admin = sqlx::PgPool::connect(&db.url).await.unwrap();
    let name: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&admin).await.unwrap();
    for sql in [
        format!("DROP ROLE IF EXISTS {role}"),
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT CONNECT ON DATABASE {name} TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON wallets TO {role}"),
        format!("GRANT SELECT, INSERT ON audit TO {role}"),
        format!("GRANT SELECT, UPDATE ON audit_head TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE ON audit_heads TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE ON integrity_keys TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE ON keyring TO {role}"),
        format!("GRANT SELECT, INSERT ON webhook_events TO {role}"),
        format!("GRANT SELECT ON sharevault_schema TO {role}"),
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_string(),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&admin).await.unwrap();
    }
    let app_url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    let vault = sharevault_core::open(config(&app_url)).await.unwrap();
    let mut e = Encoder::new();
    e.begin_array(1).unwrap();
    e.begin_object(1).unwrap();
    e.key("secretShare").unwrap();
    e.string("s").unwrap();
    let shares = e.finish();
    let meta = r#"{"walletId":"w-1","accountAddress":"0x1111111111111111111111111111111111111111","chainName":"EVM","thresholdSignatureScheme":"TWO_OF_TWO","externalServerKeySharesBackupInfo":{"passwordEncrypted":false,"backups":{}}}"#;
    let address = "0x1111111111111111111111111111111111111111";
    vault.store_wallet(meta, None, &shares, None).await.unwrap();
    vault.hydrate(address, Some("sign"), None).await.unwrap();
    vault.merge_backup_info(address, r#"{"passwordEncrypted":false,"backups":{}}"#, None).await.unwrap();
    vault.replace_shares(address, &shares, r#"{"passwordEncrypted":false,"backups":{}}"#, None, None).await.unwrap();
    vault.list_wallets(None, Some(10), None).await.unwrap();
    vault.audit_log(None, None, Some(10)).await.unwrap();
    assert_eq!(vault.verify_audit_chain(None).await.unwrap().broken_at, None);
    vault.delete_wallet(address, None).await.unwrap();
    vault.close().await.unwrap();
    // The service role cannot rewrite history, even without the trigger's help.
    let app = sqlx::PgPool::connect(&app_url).await.unwrap();
    let denied = sqlx::query("DELETE FROM audit").execute(&app).await.unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    app.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("REASSIGN OWNED BY {role} TO postgres; DROP OWNED BY {role}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    db.drop().await;
    let cleanup = sqlx::PgPool::connect(
        &std::env::var("SHAREVAULT_PG_ADMIN_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    )
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}"))).execute(&cleanup).await.unwrap();
}

/// Three instances (as three processes would) on one database, each appending audit rows and
/// inserting wallets at once: every append lands once, in one chain without gaps or forks,
/// whichever instance last moved the head (PostgreSQL appends audit-only batches optimistically
/// from the head it last wrote, and must notice another instance has moved it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_one_database_append_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (urls, pg) = support::databases(dir.path()).await;
    for (name, url) in urls {
        let o = StoreOptions::default();
        let mut instances = Vec::new();
        for _ in 0..3 {
            instances.push(store::open(&url, &o).await.unwrap());
        }
        let mut tasks = Vec::new();
        for (i, s) in instances.iter().enumerate() {
            for n in 0..150u32 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    if n % 10 == 0 {
                        let w = row(i as u32 * 1000 + n, "test", "EVM");
                        let address = w.address.clone();
                        assert!(matches!(
                            s.apply(
                                Change::Insert { row: Box::new(w), auth: auth(), state_seq: None },
                                entry("store", &address)
                            )
                            .await
                            .unwrap(),
                            Applied::Done
                        ));
                    } else {
                        s.append_audit(entry("hydrate", &format!("0x{i}-{n}"))).await.unwrap();
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let rows = audit_all(&instances[0]).await;
        assert_eq!(rows.len(), 3 * 150, "{name}");
        assert!(rows.iter().enumerate().all(|(i, r)| r.seq == i as i64 + 1), "{name}: sequence has gaps");
        assert_eq!(
            audit::verify(&rows),
            audit::ChainCheck { rows: rows.len() as u64, broken_at: None, reason: None, acknowledged: Vec::new() },
            "{name}"
        );
        // Each instance goes on appending after the others moved the head.
        for s in &instances {
            s.append_audit(entry("hydrate", "0xafter")).await.unwrap();
        }
        let rows = audit_all(&instances[2]).await;
        assert_eq!(rows.len(), 3 * 150 + 3, "{name}");
        assert_eq!(audit::verify(&rows).broken_at, None, "{name}");
        for s in instances {
            s.close().await.unwrap();
        }
    }
    if let Some(db) = pg {
        db.drop().await;
    }
}
