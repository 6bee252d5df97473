//! Someone with write access to the database but no key (a leaked admin credential, a restored
//! backup, a compromised migration job), acting as the assurance issue's attacker did: with plain
//! SQL on the side, while the vault runs. Every scenario runs on a SQLite file and on PostgreSQL.

mod support;

use sharevault_core::audit::{row_hash, AuditRecord};
use sharevault_core::error::ErrorCode;
use sharevault_core::permissions::{Permission, Permissions};
use sharevault_core::{DataKey, KmsConfig, OpenConfig, Vault};
use support::{metadata, shares};

const BACKUP: &str = r#"{"passwordEncrypted":false,"backups":{}}"#;

/// A database on one backend, reachable both through the vault and with raw SQL.
struct Db {
    name: &'static str,
    url: String,
    pg: Option<support::pg::TestDb>,
}

impl Db {
    async fn every(dir: &std::path::Path, tag: &str) -> Vec<Db> {
        let mut out =
            vec![Db { name: "sqlite", url: format!("sqlite://{}", dir.join(format!("{tag}.db")).display()), pg: None }];
        if let Some(pg) = support::pg::TestDb::create().await {
            out.push(Db { name: "postgres", url: pg.url.clone(), pg: Some(pg) });
        }
        out
    }

    fn is_pg(&self) -> bool {
        self.pg.is_some()
    }

    async fn open(&self) -> Vault {
        open_env(&self.url, "test").await.unwrap()
    }

    /// Runs SQL as the attacker: a connection of its own, no vault involved.
    async fn sql(&self, sql: &str) {
        if self.is_pg() {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&pool).await.unwrap();
            pool.close().await;
        } else {
            let path = self.url.trim_start_matches("sqlite://").to_string();
            let c = rusqlite::Connection::open(path).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
            c.execute_batch(sql).unwrap();
        }
    }

    /// A byte-string literal in this backend's SQL.
    fn blob(&self, b: &[u8]) -> String {
        if self.is_pg() {
            format!("'\\x{}'::bytea", hex::encode(b))
        } else {
            format!("X'{}'", hex::encode(b))
        }
    }

    fn drop_audit_triggers(&self) -> &'static str {
        if self.is_pg() {
            "DROP TRIGGER IF EXISTS audit_append_only ON audit; DROP TRIGGER IF EXISTS audit_no_truncate ON audit;"
        } else {
            "DROP TRIGGER IF EXISTS audit_append_only_update; DROP TRIGGER IF EXISTS audit_append_only_delete;"
        }
    }

    async fn done(self) {
        if let Some(pg) = self.pg {
            pg.drop().await;
        }
    }
}

/// Each environment's own local key (one key for two environments is refused).
fn env_key(environment: &str) -> DataKey {
    let mut b = [7u8; 32];
    for (i, c) in environment.bytes().enumerate() {
        b[(i + 1) % 32] ^= c;
    }
    DataKey::from_bytes(b)
}

async fn open_env(url: &str, environment: &str) -> sharevault_core::Result<Vault> {
    open_with(url, environment, Permissions::all()).await
}

async fn open_with(url: &str, environment: &str, allow: Permissions) -> sharevault_core::Result<Vault> {
    sharevault_core::open(OpenConfig {
        harden_process: false,
        audit_sink: None,
        delegation_key: None,
        allow,
        database: url.into(),
        environment: environment.into(),
        actor: Some("cargo".into()),
        kms: KmsConfig::Local(env_key(environment)),
        previous_kms: Vec::new(),
        local_in_production: false,
        cache: None,
        store: Default::default(),
    })
    .await
}

fn address(i: usize) -> String {
    format!("0x{i:040x}")
}

async fn all_rows(v: &Vault) -> Vec<AuditRecord> {
    v.audit_log(None, None, Some(1000)).await.unwrap()
}

fn tampered<T: std::fmt::Debug>(r: sharevault_core::Result<T>, what: &str) -> String {
    let e = r.expect_err(what);
    assert_eq!(e.code, ErrorCode::Tampered, "{what}: {e:?}");
    e.message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_wallet_row_is_refused_by_every_read_and_write() {
    let dir = tempfile::tempdir().unwrap();
    for db in Db::every(dir.path(), "columns").await {
        let v = db.open().await;
        for i in [1, 2] {
            v.store_wallet(&metadata(i), None, &shares("s"), None).await.unwrap();
        }
        let (a, b) = (address(1), address(2));
        // `true`: a column every read returns or relies on, checked by every read and write.
        // `false`: a column of the sealed record, checked (against the digest the row MAC covers)
        // wherever the record is used: hydrate and replace; metadata reads return none of it.
        let changes = [
            (
                true,
                "the scheme inside the metadata",
                "metadata = replace(metadata, 'TWO_OF_TWO', 'TWO_OF_THREE')".into(),
            ),
            (true, "the display address, pointed at another wallet's", format!("address = '{b}'")),
            (true, "the chain", "chain_name = 'SVM'".to_string()),
            (true, "the share generation", "generation = generation + 1".to_string()),
            (true, "the row version", "version = version + 5".to_string()),
            (true, "the stored digest of the sealed record", format!("sealed_digest = {}", db.blob(&[1u8; 32]))),
            (false, "the key version", "kek_key_version = '2'".to_string()),
            (false, "the wrapped data key", format!("wrapped_dek = {}", db.blob(&[0u8; 60]))),
            (false, "the nonce", format!("nonce = {}", db.blob(&[0u8; 12]))),
        ];
        for (every_read, what, set) in changes {
            let name = format!("{}: {what}", db.name);
            db.sql(&format!(
                "CREATE TABLE saved AS SELECT * FROM wallets WHERE address_key = '{a}'; \
                 UPDATE wallets SET {set} WHERE address_key = '{a}';"
            ))
            .await;
            tampered(v.hydrate(&a, Some("sign"), None).await, &name);
            tampered(v.replace_shares(&a, &shares("t"), BACKUP, None, None).await, &name);
            if every_read {
                tampered(v.get_metadata(&a).await, &name);
                tampered(v.list_wallets(None, None, None).await, &name);
                tampered(v.merge_backup_info(&a, BACKUP, None).await, &name);
            }
            // The other wallet is untouched and still served.
            v.hydrate(&b, Some("sign"), None).await.unwrap();
            db.sql(&format!(
                "DELETE FROM wallets WHERE address_key = '{a}'; INSERT INTO wallets SELECT * FROM saved; DROP TABLE saved;"
            ))
            .await;
            v.hydrate(&a, Some("sign"), None).await.unwrap_or_else(|e| panic!("{name}: after the undo: {e:?}"));
        }
        // A row copied to another address (B's row content under A's key) fails too.
        db.sql(&format!(
            "CREATE TABLE saved AS SELECT * FROM wallets WHERE address_key = '{b}'; \
             UPDATE saved SET address_key = 'x'; \
             UPDATE wallets SET metadata = (SELECT metadata FROM saved), mac = (SELECT mac FROM saved), \
             wallet_id = (SELECT wallet_id FROM saved) WHERE address_key = '{a}'; DROP TABLE saved;"
        ))
        .await;
        tampered(v.get_metadata(&a).await, "a row moved to another address");
        // A row whose MAC was removed is tampered, now and after reopening: it is never
        // authenticated again.
        db.sql(&format!("UPDATE wallets SET mac = NULL WHERE address_key = '{b}'")).await;
        tampered(v.hydrate(&b, Some("sign"), None).await, "a row without its MAC");
        v.close().await.unwrap();
        let v = db.open().await;
        tampered(v.hydrate(&b, Some("sign"), None).await, "a row without its MAC, reopened");
        v.close().await.unwrap();
        db.done().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_copy_of_one_wallets_row_is_refused_at_its_next_hydrate() {
    let dir = tempfile::tempdir().unwrap();
    for db in Db::every(dir.path(), "rollback").await {
        let v = db.open().await;
        for i in [1, 2, 3] {
            v.store_wallet(&metadata(i), None, &shares("first"), None).await.unwrap();
        }
        let (a, c) = (address(1), address(3));
        // Generation 1 saved, the shares refreshed, the old row put back.
        db.sql(&format!("CREATE TABLE saved AS SELECT * FROM wallets WHERE address_key = '{a}'")).await;
        v.replace_shares(&a, &shares("second"), BACKUP, None, None).await.unwrap();
        v.hydrate(&address(2), Some("sign"), None).await.unwrap(); // the rest moves on
        db.sql(&format!(
            "DELETE FROM wallets WHERE address_key = '{a}'; INSERT INTO wallets SELECT * FROM saved; DROP TABLE saved;"
        ))
        .await;
        let why = tampered(v.hydrate(&a, Some("sign"), None).await, db.name);
        assert!(why.contains("older copy"), "{why}");
        tampered(v.get_metadata(&a).await, db.name);
        tampered(v.merge_backup_info(&a, BACKUP, None).await, db.name);
        // Merges roll back too: the metadata version is covered as well as the shares.
        db.sql(&format!("CREATE TABLE saved AS SELECT * FROM wallets WHERE address_key = '{}'", address(2))).await;
        v.merge_backup_info(&address(2), BACKUP, None).await.unwrap();
        db.sql(&format!(
            "DELETE FROM wallets WHERE address_key = '{0}'; INSERT INTO wallets SELECT * FROM saved; DROP TABLE saved;",
            address(2)
        ))
        .await;
        tampered(v.hydrate(&address(2), Some("sign"), None).await, db.name);
        // A deleted wallet's row put back.
        db.sql(&format!("CREATE TABLE saved AS SELECT * FROM wallets WHERE address_key = '{c}'")).await;
        v.delete_wallet(&c, None).await.unwrap();
        db.sql("INSERT INTO wallets SELECT * FROM saved; DROP TABLE saved;").await;
        let why = tampered(v.hydrate(&c, Some("sign"), None).await, db.name);
        assert!(why.contains("deleted"), "{why}");
        // The log itself was not touched: it verifies. The wallets are what is reported.
        assert_eq!(v.verify_audit_chain(None).await.unwrap().broken_at, None, "{}", db.name);
        v.close().await.unwrap();
        db.done().await;
    }
}

/// A vault with one wallet (stored at seq 1) and `hydrates` hydrates after it.
async fn with_log(db: &Db, hydrates: usize) -> Vault {
    let v = db.open().await;
    v.store_wallet(&metadata(1), None, &shares("s"), None).await.unwrap();
    for n in 0..hydrates {
        v.hydrate(&address(1), Some(&format!("sign-{n}")), Some("batch-job")).await.unwrap();
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_or_rewritten_audit_log_is_reported_with_its_first_bad_row() {
    let dir = tempfile::tempdir().unwrap();
    for (case, db) in ["tail", "all", "rehash", "middle", "head"].iter().flat_map(|c| {
        // One fresh database per case.
        let dir = dir.path().join(c);
        std::fs::create_dir_all(&dir).unwrap();
        futures_block(Db::every(&dir, c)).into_iter().map(move |db| (*c, db))
    }) {
        let v = with_log(&db, 8).await; // rows 1..=10: the keyring's registration of the key, the store, 8 hydrates
        assert_eq!(v.verify_audit_chain(None).await.unwrap().broken_at, None);
        let check = match case {
            "tail" => {
                db.sql(&format!("{} DELETE FROM audit WHERE seq > 6;", db.drop_audit_triggers())).await;
                v.verify_audit_chain(None).await.unwrap()
            }
            "all" => {
                db.sql(&format!("{} DELETE FROM audit;", db.drop_audit_triggers())).await;
                v.verify_audit_chain(None).await.unwrap()
            }
            "middle" => {
                db.sql(&format!("{} DELETE FROM audit WHERE seq IN (4, 5);", db.drop_audit_triggers())).await;
                v.verify_audit_chain(None).await.unwrap()
            }
            "head" => {
                db.sql("DELETE FROM audit_heads;").await;
                let check = v.verify_audit_chain(None).await.unwrap();
                // Nothing is appended without the head, and no new head adopts the log as it is
                // now: not by a write, not by reopening.
                let why = tampered(v.hydrate(&address(1), Some("sign"), None).await, "a write without the head");
                assert!(why.contains("head is missing"), "{why}");
                v.close().await.unwrap();
                let v = db.open().await;
                tampered(v.hydrate(&address(1), Some("sign"), None).await, "a write without the head, reopened");
                let again = v.verify_audit_chain(None).await.unwrap();
                assert!(again.broken_at.is_some(), "{}: a deleted head came back: {again:?}", db.name);
                v.close().await.unwrap();
                check
            }
            _ => {
                // Row 5 (a hydrate by batch-job) rewritten as mallory's export, and every hash
                // from there recomputed (plain SHA-256: anyone can).
                let rows = all_rows(&v).await;
                let mut prev = rows[3].hash.clone();
                let mut sql = db.drop_audit_triggers().to_string();
                for r in &rows[4..] {
                    let (actor, purpose) =
                        if r.seq == 5 { ("mallory", Some("export")) } else { (r.actor.as_str(), r.purpose.as_deref()) };
                    let hash = row_hash(
                        &prev,
                        r.seq,
                        r.at_ms,
                        &r.environment,
                        actor,
                        &r.action,
                        &r.address,
                        r.wallet_id.as_deref(),
                        purpose,
                        &r.outcome,
                        r.wallet_mac.as_deref(),
                    );
                    sql += &format!(
                        "UPDATE audit SET actor = '{actor}', purpose = '{}', prev_hash = {}, hash = {} WHERE seq = {};",
                        purpose.unwrap_or(""),
                        db.blob(&prev),
                        db.blob(&hash),
                        r.seq
                    );
                    prev = hash.to_vec();
                }
                db.sql(&sql).await;
                v.verify_audit_chain(None).await.unwrap()
            }
        };
        let expected = match case {
            "tail" => 7,
            "all" => 1,
            // Where the log may have been cut: after its last row.
            "head" => 11,
            "middle" => 4,
            _ => 5,
        };
        let name = format!("{} {case}", db.name);
        assert_eq!(check.broken_at, Some(expected), "{name}: {check:?}");
        assert!(check.reason.is_some(), "{name}");
        if case != "head" {
            v.close().await.unwrap();
        }
        db.done().await;
    }
}

/// `Db::every` from a synchronous iterator adaptor (the test runtime is multi-threaded).
fn futures_block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_of_the_whole_log_is_seen_only_against_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    for db in Db::every(dir.path(), "checkpoint").await {
        let v = with_log(&db, 2).await;
        let early = v.checkpoint().await.unwrap();
        // The keyring's registration, the store, two hydrates.
        assert_eq!(early.seq, 4, "{}", db.name);
        // What a restore of an earlier copy does to the log: its rows and head as they were.
        db.sql("CREATE TABLE saved_head AS SELECT * FROM audit_heads").await;
        for n in 0..3 {
            v.hydrate(&address(1), Some(&format!("later-{n}")), None).await.unwrap();
        }
        let late = v.checkpoint().await.unwrap();
        assert_eq!(late.seq, 7, "{}", db.name);
        assert_eq!(v.verify_audit_chain(Some(&early)).await.unwrap().broken_at, None, "{}", db.name);
        assert_eq!(v.verify_audit_chain(Some(&late)).await.unwrap().broken_at, None, "{}", db.name);
        let global_head = if db.is_pg() {
            format!("UPDATE audit_head SET seq = 4, hash = {};", db.blob(&early.hash))
        } else {
            String::new()
        };
        db.sql(&format!(
            "{} DELETE FROM audit WHERE seq > 4; DELETE FROM audit_heads; \
             INSERT INTO audit_heads SELECT * FROM saved_head; DROP TABLE saved_head; {global_head}",
            db.drop_audit_triggers()
        ))
        .await;
        // Consistent in itself: nothing inside the database can tell (the README says so)...
        assert_eq!(v.verify_audit_chain(None).await.unwrap().broken_at, None, "{}", db.name);
        // ...but the checkpoint kept outside it can.
        let check = v.verify_audit_chain(Some(&late)).await.unwrap();
        assert_eq!(check.broken_at, Some(5), "{}: {check:?}", db.name);
        assert!(check.reason.unwrap().contains("rolled back"));
        // A forged checkpoint, or another environment's, is refused.
        let mut forged = late.clone();
        forged.seq = 4;
        let e = v.verify_audit_chain(Some(&forged)).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Tampered);
        let other = open_env(&db.url, "other").await.unwrap();
        let e = other.verify_audit_chain(Some(&late)).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::EnvironmentMismatch);
        let theirs = other.checkpoint().await.unwrap();
        assert_eq!(v.verify_audit_chain(Some(&theirs)).await.unwrap_err().code, ErrorCode::EnvironmentMismatch);
        other.close().await.unwrap();
        v.close().await.unwrap();
        db.done().await;
    }
}

/// The database put back into schema 1's shape: no MAC columns or tables, audit rows hashed as
/// that version did, `user_version` 1 (what an upgrade from it finds, and what an attacker who
/// wants the one-time authentication run again would make).
async fn as_schema_1(db: &Db, wallets: &[usize]) {
    let mut head = sharevault_core::audit::ChainHead::genesis();
    let mut inserts = String::new();
    for &i in wallets {
        let e = sharevault_core::audit::AuditEntry {
            at_ms: 1_700_000_000_000,
            environment: "test".into(),
            actor: "cargo".into(),
            action: "store",
            address: address(i),
            wallet_id: Some(format!("w-{i}")),
            purpose: None,
            outcome: "ok".into(),
            wallet_mac: None,
        };
        let link = head.link(&e);
        inserts += &format!(
            "INSERT INTO audit (seq, at, environment, actor, action, address, wallet_id, purpose, outcome, \
             prev_hash, hash) VALUES ({}, {}, 'test', 'cargo', 'store', '{}', 'w-{i}', NULL, 'ok', {}, {});",
            link.seq,
            e.at_ms,
            e.address,
            db.blob(&link.prev_hash),
            db.blob(&link.hash)
        );
        head = link.head();
    }
    let v1 = if db.is_pg() {
        format!(
            "{} DROP TABLE audit_heads; DROP TABLE integrity_keys; DROP TABLE keyring; DROP TABLE webhook_events; \
             DELETE FROM audit; \
             ALTER TABLE wallets DROP COLUMN mac, DROP COLUMN sealed_digest, DROP COLUMN wrapped_at, \
             DROP COLUMN sealed_at, DROP COLUMN rotation_claim; \
             ALTER TABLE audit DROP COLUMN wallet_mac, DROP COLUMN mac; {inserts} \
             UPDATE audit_head SET seq = {}, hash = {}; DELETE FROM sharevault_schema WHERE version >= 2; \
             CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit \
             FOR EACH ROW EXECUTE FUNCTION sharevault_audit_append_only(); \
             CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit \
             FOR EACH STATEMENT EXECUTE FUNCTION sharevault_audit_append_only();",
            db.drop_audit_triggers(),
            head.seq,
            db.blob(&head.hash)
        )
    } else {
        format!(
            "{} DROP INDEX audit_wallet_states; DROP TABLE audit_heads; \
             DROP TABLE integrity_keys; DROP TABLE keyring; DELETE FROM audit; ALTER TABLE wallets DROP COLUMN mac; \
             ALTER TABLE wallets DROP COLUMN wrapped_at; ALTER TABLE wallets DROP COLUMN sealed_at; \
             DROP TABLE rotation_claims; DROP TABLE webhook_events; \
             ALTER TABLE wallets DROP COLUMN sealed_digest; ALTER TABLE audit DROP COLUMN wallet_mac; \
             ALTER TABLE audit DROP COLUMN mac; {inserts} PRAGMA user_version = 1;",
            db.drop_audit_triggers()
        )
    };
    db.sql(&v1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_from_before_authentication_are_served_only_after_an_operator_authenticates_them() {
    let dir = tempfile::tempdir().unwrap();
    for db in Db::every(dir.path(), "upgrade").await {
        let v = db.open().await;
        for i in [1, 2] {
            v.store_wallet(&metadata(i), None, &shares("s"), None).await.unwrap();
        }
        v.close().await.unwrap();
        as_schema_1(&db, &[1, 2]).await;
        // Opened by this version: migrated, and nothing authenticated by itself. Reads are
        // refused with a message that says what to do; so are writes (no head to extend from).
        let v = db.open().await;
        let why = tampered(v.hydrate(&address(1), Some("sign"), None).await, db.name);
        assert!(why.contains("authenticateExistingRows"), "{why}");
        tampered(v.get_metadata(&address(2)).await, db.name);
        tampered(v.list_wallets(None, None, None).await, db.name);
        tampered(v.store_wallet(&metadata(3), None, &shares("s"), None).await, db.name);
        // Only the operator's permission may authenticate them.
        let service = open_with(&db.url, "test", Permissions::default()).await.unwrap();
        assert_eq!(service.authenticate_existing_rows(false, None).await.unwrap_err().code, ErrorCode::Forbidden);
        service.close().await.unwrap();
        assert_eq!(v.authenticate_existing_rows(false, Some("ops")).await.unwrap(), (2, 0), "{}", db.name);
        for i in [1, 2] {
            v.hydrate(&address(i), Some("sign"), None).await.unwrap();
        }
        let rows = all_rows(&v).await;
        let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(
            actions,
            // The keyring registers the key once writes are possible again.
            [
                "store",
                "store",
                "integrity_enabled",
                "authenticate",
                "authenticate",
                "key_registered",
                "hydrate",
                "hydrate"
            ],
            "{}",
            db.name
        );
        assert!(rows[2..].iter().all(|r| r.actor == "ops" || r.action == "hydrate"), "{}", db.name);
        let check = v.verify_audit_chain(None).await.unwrap();
        assert_eq!((check.rows, check.broken_at), (8, None), "{}: {check:?}", db.name);
        // Once: in an authenticated environment it is refused, unless forced after checking.
        assert_eq!(v.authenticate_existing_rows(false, None).await.unwrap_err().code, ErrorCode::Conflict);
        v.close().await.unwrap();
        // A MAC removed afterwards is not put back by the next open, nor by the operator step
        // even when forced: the row's write is on record, so it was stripped, not old.
        db.sql(&format!("UPDATE wallets SET mac = NULL WHERE address_key = '{}'", address(1))).await;
        let v = db.open().await;
        tampered(v.hydrate(&address(1), Some("sign"), None).await, db.name);
        assert_eq!(v.authenticate_existing_rows(true, None).await.unwrap(), (0, 1), "{}", db.name);
        tampered(v.hydrate(&address(1), Some("sign"), None).await, db.name);
        v.hydrate(&address(2), Some("sign"), None).await.unwrap();
        v.close().await.unwrap();
        db.done().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_the_evidence_of_authentication_never_gets_rows_authenticated_again() {
    let dir = tempfile::tempdir().unwrap();
    let strip = "UPDATE wallets SET mac = NULL, sealed_digest = NULL, \
                 metadata = replace(metadata, 'TWO_OF_TWO', 'TWO_OF_TWO ');";
    for (case, db) in ["deleted", "renamed", "schema-1"].iter().flat_map(|c| {
        let dir = dir.path().join(c);
        std::fs::create_dir_all(&dir).unwrap();
        futures_block(Db::every(&dir, c)).into_iter().map(move |db| (*c, db))
    }) {
        let v = db.open().await;
        for i in [1, 2] {
            v.store_wallet(&metadata(i), None, &shares("s"), None).await.unwrap();
        }
        v.close().await.unwrap();
        let name = format!("{} {case}", db.name);
        match case {
            // The environment's audit rows, its head and the wallet MACs deleted; or its audit
            // rows renamed to another environment; or the file turned back into schema 1. Each
            // time with the metadata edited.
            "deleted" => {
                db.sql(&format!("{} DELETE FROM audit; DELETE FROM audit_heads; {strip}", db.drop_audit_triggers()))
                    .await
            }
            "renamed" => {
                db.sql(&format!(
                    "{} UPDATE audit SET environment = 'elsewhere'; DELETE FROM audit_heads; {strip}",
                    db.drop_audit_triggers()
                ))
                .await
            }
            _ => {
                as_schema_1(&db, &[1, 2]).await;
                db.sql("UPDATE wallets SET metadata = replace(metadata, 'TWO_OF_TWO', 'TWO_OF_TWO ');").await;
            }
        }
        let v = db.open().await;
        for i in [1, 2] {
            tampered(v.hydrate(&address(i), Some("sign"), None).await, &name);
            tampered(v.get_metadata(&address(i)).await, &name);
        }
        v.close().await.unwrap();
        db.done().await;
    }
}

/// Appends an audit row as someone without the key can: hashed in plain SHA-256 after `tip` (the
/// log's last row), no MAC, and on PostgreSQL the chain head moved to it. Returns the new tip.
async fn forge_row(
    db: &Db,
    tip: (i64, Vec<u8>),
    environment: &str,
    address: &str,
    wallet_mac: &[u8],
) -> (i64, Vec<u8>) {
    let seq = tip.0 + 1;
    let hash =
        row_hash(&tip.1, seq, 1, environment, "mallory", "replace_shares", address, None, None, "ok", Some(wallet_mac));
    let mut sql = format!(
        "INSERT INTO audit (seq, at, environment, actor, action, address, wallet_id, purpose, outcome, wallet_mac, \
         prev_hash, hash) VALUES ({seq}, 1, '{environment}', 'mallory', 'replace_shares', '{address}', NULL, NULL, \
         'ok', {}, {}, {});",
        db.blob(wallet_mac),
        db.blob(&tip.1),
        db.blob(&hash)
    );
    if db.is_pg() {
        sql += &format!("UPDATE audit_head SET seq = {seq}, hash = {};", db.blob(&hash));
    }
    db.sql(&sql).await;
    (seq, hash.to_vec())
}

fn tip(rows: &[AuditRecord]) -> (i64, Vec<u8>) {
    let last = rows.last().unwrap();
    (last.seq, last.hash.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_audit_rows_never_vouch_for_a_restored_row() {
    let dir = tempfile::tempdir().unwrap();
    for db in Db::every(dir.path(), "forged").await {
        let v = db.open().await;
        for i in [1, 2, 3] {
            v.store_wallet(&metadata(i), None, &shares("first"), None).await.unwrap();
        }
        let (a, c) = (address(1), address(3));
        db.sql(&format!("CREATE TABLE saved AS SELECT * FROM wallets WHERE address_key IN ('{a}', '{c}')")).await;
        v.replace_shares(&a, &shares("second"), BACKUP, None, None).await.unwrap();
        v.delete_wallet(&c, None).await.unwrap();
        db.sql(&format!(
            "DELETE FROM wallets WHERE address_key = '{a}'; INSERT INTO wallets SELECT * FROM saved; DROP TABLE saved;"
        ))
        .await;
        tampered(v.hydrate(&a, Some("sign"), None).await, db.name);
        // The old rows' MACs, as their stores recorded them.
        let rows = all_rows(&v).await;
        let mac_of = |addr: &str| {
            rows.iter().find(|r| r.action == "store" && r.address == addr).unwrap().wallet_mac.clone().unwrap()
        };
        let (old_a, old_c) = (mac_of(&a), mac_of(&c));
        // One row of an environment nobody uses, naming each old MAC as the latest state.
        let t = forge_row(&db, tip(&rows), "zz-unused", &a, &old_a).await;
        let t = forge_row(&db, t, "zz-unused", &c, &old_c).await;
        for (what, r) in [
            ("the older shares", v.hydrate(&a, Some("sign"), None).await.map(|_| ())),
            ("the deleted wallet", v.hydrate(&c, Some("sign"), None).await.map(|_| ())),
            ("the deleted wallet's metadata", v.get_metadata(&c).await.map(|_| ())),
            ("the list", v.list_wallets(None, None, None).await.map(|_| ())),
            ("a write on the older row", v.merge_backup_info(&a, BACKUP, None).await.map(|_| ())),
        ] {
            tampered(r, &format!("{}: {what}", db.name));
        }
        // The same forgery in the wallet's own environment, without the key, is a forgery. (The
        // refused reads above were audited: the log's last rows are this environment's again.)
        let t = tip(&all_rows(&v).await).max(t);
        let forged_seq = forge_row(&db, t, "test", &a, &old_a).await.0;
        let why = tampered(v.hydrate(&a, Some("sign"), None).await, db.name);
        assert!(why.contains("does not verify"), "{why}");
        let check = v.verify_audit_chain(None).await.unwrap();
        assert_eq!(check.broken_at, Some(forged_seq), "{}: {check:?}", db.name);
        v.close().await.unwrap();
        db.done().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_log_is_never_healed_by_the_next_write_only_by_an_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    for db in Db::every(dir.path(), "healed").await {
        let v = with_log(&db, 4).await; // rows 1..=6: the keyring's registration, the store, 4 hydrates
        let rows = all_rows(&v).await;
        // The tail cut (on PostgreSQL with the chain head moved back, as the cut's author would).
        let cut = |keep: i64, hash: Vec<u8>| {
            let global = if db.is_pg() {
                format!("UPDATE audit_head SET seq = {keep}, hash = {};", db.blob(&hash))
            } else {
                String::new()
            };
            format!("{} DELETE FROM audit WHERE seq > {keep}; {global}", db.drop_audit_triggers())
        };
        db.sql(&cut(4, rows[3].hash.clone())).await;
        for _ in 0..2 {
            let why = tampered(v.hydrate(&address(1), Some("sign"), None).await, db.name);
            assert!(why.contains("rows were deleted"), "{why}");
            tampered(v.store_wallet(&metadata(2), None, &shares("s"), None).await, db.name);
            assert_eq!(v.verify_audit_chain(None).await.unwrap().broken_at, Some(5), "{}", db.name);
        }
        // Only an operator, explicitly: a default handle may not; a log that is whole has nothing
        // to acknowledge.
        let service = open_with(&db.url, "test", Permissions::default()).await.unwrap();
        let e = service.acknowledge_audit_break("no", None).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden, "{}", db.name);
        service.close().await.unwrap();
        let seq = v.acknowledge_audit_break("INC-7: rows 5-6 lost in a restore", Some("ops")).await.unwrap();
        assert_eq!(seq, 5, "{}", db.name);
        v.hydrate(&address(1), Some("sign"), None).await.unwrap();
        let check = v.verify_audit_chain(None).await.unwrap();
        assert_eq!((check.broken_at, check.acknowledged.clone()), (None, vec![5]), "{}: {check:?}", db.name);
        let ack = &all_rows(&v).await[4];
        assert_eq!((ack.action.as_str(), ack.actor.as_str()), ("audit_break_acknowledged", "ops"));
        assert!(ack.purpose.as_deref().unwrap().contains("row 6, which the log no longer holds"), "{ack:?}");
        assert_eq!(v.acknowledge_audit_break("again", None).await.unwrap_err().code, ErrorCode::Conflict);
        // The head rewritten to the log's end with a made-up MAC, or with the MAC of the audit row
        // there (a row's MAC is not a head's): refused every time, never healed by a later write.
        // (A hydrate first, so on PostgreSQL the next audit-only batch may take the one-statement
        // path from the head this process wrote: that path must see the forgery too.)
        v.hydrate(&address(1), Some("sign"), None).await.unwrap();
        let rows = all_rows(&v).await;
        let last = rows.last().unwrap().clone();
        for mac in [vec![0u8; 32], last.mac.clone().unwrap()] {
            let global = if db.is_pg() {
                format!("UPDATE audit_head SET seq = {}, hash = {};", last.seq, db.blob(&last.hash))
            } else {
                String::new()
            };
            db.sql(&format!(
                "{global} UPDATE audit_heads SET seq = {}, hash = {}, mac = {};",
                last.seq,
                db.blob(&last.hash),
                db.blob(&mac)
            ))
            .await;
            for _ in 0..3 {
                let why = tampered(v.hydrate(&address(1), Some("sign"), None).await, db.name);
                assert!(why.contains("fails its MAC"), "{why}");
            }
        }
        v.acknowledge_audit_break("INC-8: head rewritten", Some("ops")).await.unwrap();
        // Cutting the acknowledgement away is a new break, refused and reported again.
        let rows = all_rows(&v).await;
        db.sql(&cut(4, rows[3].hash.clone())).await;
        tampered(v.hydrate(&address(1), Some("sign"), None).await, db.name);
        assert_eq!(v.verify_audit_chain(None).await.unwrap().broken_at, Some(5), "{}", db.name);
        v.close().await.unwrap();
        db.done().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_row_with_the_log_cut_behind_it_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    for db in Db::every(dir.path(), "combined").await {
        let v = db.open().await;
        v.store_wallet(&metadata(1), None, &shares("first"), None).await.unwrap();
        let a = address(1);
        let before = all_rows(&v).await;
        db.sql(&format!("CREATE TABLE saved AS SELECT * FROM wallets WHERE address_key = '{a}'")).await;
        v.replace_shares(&a, &shares("second"), BACKUP, None, None).await.unwrap();
        v.hydrate(&a, Some("sign"), Some("insider")).await.unwrap();
        // The older row back, and the replace and the insider's read deleted from the log.
        let last = before.last().unwrap();
        let global = if db.is_pg() {
            format!("UPDATE audit_head SET seq = {}, hash = {};", last.seq, db.blob(&last.hash))
        } else {
            String::new()
        };
        db.sql(&format!(
            "{} DELETE FROM audit WHERE seq > {}; {global} DELETE FROM wallets WHERE address_key = '{a}'; \
             INSERT INTO wallets SELECT * FROM saved; DROP TABLE saved;",
            db.drop_audit_triggers(),
            last.seq
        ))
        .await;
        // The row itself verifies against what is left of the log, but nothing is handed out:
        // the hydrate's audit row cannot be written after a cut.
        tampered(v.hydrate(&a, Some("sign"), None).await, db.name);
        assert!(v.verify_audit_chain(None).await.unwrap().broken_at.is_some(), "{}", db.name);
        v.close().await.unwrap();
        db.done().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_edit_a_row_cannot_survive_is_reported_as_tampering() {
    let dir = tempfile::tempdir().unwrap();
    for db in Db::every(dir.path(), "codes").await {
        let v = db.open().await;
        for i in 1..=5 {
            v.store_wallet(&metadata(i), None, &shares("s"), None).await.unwrap();
        }
        let edits = [
            (1, "the environment column", "environment = 'other'".to_string()),
            (2, "the key id", "kek_key_id = 'someone-elses-key'".to_string()),
            (3, "the key provider", "kek_provider = 'aws'".to_string()),
            (4, "the address key", "address_key = 'moved'".to_string()),
        ];
        for (i, what, set) in edits {
            db.sql(&format!("UPDATE wallets SET {set} WHERE address_key = '{}'", address(i))).await;
            let name = format!("{}: {what}", db.name);
            tampered(v.hydrate(&address(i), Some("sign"), None).await, &name);
            tampered(v.replace_shares(&address(i), &shares("t"), BACKUP, None, None).await, &name);
        }
        // A row deleted outside sharevault: the log says the wallet exists.
        db.sql(&format!("DELETE FROM wallets WHERE address_key = '{}'", address(5))).await;
        let why = tampered(v.hydrate(&address(5), Some("sign"), None).await, db.name);
        assert!(why.contains("records it as stored"), "{why}");
        tampered(v.get_metadata(&address(5)).await, db.name);
        // Storing it again does not paper over the deletion.
        tampered(v.store_wallet(&metadata(5), None, &shares("s"), None).await, db.name);
        // Never stored, or deleted through the vault: not found, as before.
        assert_eq!(v.get_metadata(&address(9)).await.unwrap_err().code, ErrorCode::NotFound);
        v.close().await.unwrap();
        db.done().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_environment_sees_nothing_of_anothers_wallets() {
    let dir = tempfile::tempdir().unwrap();
    for db in Db::every(dir.path(), "isolation").await {
        let a = db.open().await;
        let b = open_env(&db.url, "staging").await.unwrap();
        a.store_wallet(&metadata(1), None, &shares("a"), None).await.unwrap();
        // Not even that the address is taken: not found, and B may store its own wallet there.
        assert_eq!(b.get_metadata(&address(1)).await.unwrap_err().code, ErrorCode::NotFound);
        assert_eq!(b.hydrate(&address(1), Some("sign"), None).await.unwrap_err().code, ErrorCode::NotFound);
        assert!(b.list_wallets(None, None, None).await.unwrap().is_empty());
        b.store_wallet(&metadata(1), None, &shares("b"), None).await.unwrap();
        assert_eq!(a.hydrate(&address(1), Some("sign"), None).await.unwrap().shares.as_slice(), shares("a").as_slice());
        assert_eq!(b.hydrate(&address(1), Some("sign"), None).await.unwrap().shares.as_slice(), shares("b").as_slice());
        b.delete_wallet(&address(1), None).await.unwrap();
        a.hydrate(&address(1), Some("sign"), None).await.unwrap();
        for v in [a, b] {
            assert_eq!(v.verify_audit_chain(None).await.unwrap().broken_at, None, "{}", db.name);
            v.close().await.unwrap();
        }
        db.done().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_never_brings_back_a_deleted_wallet_and_is_refused_before_any_key_use() {
    let dir = tempfile::tempdir().unwrap();
    for db in Db::every(dir.path(), "recovery").await {
        let v = db.open().await;
        let sealed = v.seal_unpersisted(&metadata(1), 0, &shares("s"), None, None).await.unwrap();
        v.recover_sealed(&sealed, None).await.unwrap();
        v.recover_sealed(&sealed, None).await.unwrap(); // twice is harmless
        v.delete_wallet(&address(1), None).await.unwrap();
        let e = v.recover_sealed(&sealed, None).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict, "{}: {e:?}", db.name);
        assert!(e.message.contains("deleted"), "{}", e.message);
        assert_eq!(v.get_metadata(&address(1)).await.unwrap_err().code, ErrorCode::NotFound);
        // A handle that may not store refuses before the key is touched.
        let signer = open_with(&db.url, "test", Permissions::of(&[Permission::HydrateSign])).await.unwrap();
        let sealed2 = v.seal_unpersisted(&metadata(2), 0, &shares("s"), None, None).await.unwrap();
        let before = signer.stats().kms_decrypt;
        assert_eq!(signer.recover_sealed(&sealed2, None).await.unwrap_err().code, ErrorCode::Forbidden);
        assert_eq!(signer.stats().kms_decrypt, before, "{}: a refused recovery unwrapped a key", db.name);
        // A result the vault cannot store as it is, sealed as it came: recovery refuses it (naming
        // the way out), only a handle that may export reads it back, before any key use.
        let raw = sharevault_core::SecretBuf::from_vec(b"v8-serialized result".to_vec());
        let sealed3 = v.seal_unpersisted_raw(&metadata(3), 0, &raw, None, None).await.unwrap();
        let e = v.recover_sealed(&sealed3, None).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput, "{e:?}");
        assert!(e.message.contains("openSealed"), "{}", e.message);
        let before = signer_stats(&db).await;
        assert_eq!(before.0, ErrorCode::Forbidden, "{}", db.name);
        assert_eq!(before.1, 0, "{}: a refused open unwrapped a key", db.name);
        let (state, plaintext) = v.open_sealed(&sealed3, Some("ops")).await.unwrap();
        assert_eq!((state.raw, plaintext.as_slice()), (true, &b"v8-serialized result"[..]));
        assert_eq!(v.open_sealed(&sealed2, None).await.unwrap_err().code, ErrorCode::InvalidInput);
        let rows = all_rows(&v).await;
        assert!(rows.iter().any(|r| r.action == "open_sealed" && r.actor == "ops"), "{}", db.name);
        signer.close().await.unwrap();
        v.close().await.unwrap();
        db.done().await;
    }
}

/// A signing handle's attempt to open `sealed3`-like raw state: its error code and its decrypts.
async fn signer_stats(db: &Db) -> (ErrorCode, u64) {
    let v = db.open().await;
    let raw = sharevault_core::SecretBuf::from_vec(b"x".to_vec());
    let sealed = v.seal_unpersisted_raw(&metadata(4), 0, &raw, None, None).await.unwrap();
    v.close().await.unwrap();
    let signer = open_with(&db.url, "test", Permissions::of(&[Permission::HydrateSign])).await.unwrap();
    let code = signer.open_sealed(&sealed, None).await.unwrap_err().code;
    let decrypts = signer.stats().kms_decrypt;
    signer.close().await.unwrap();
    (code, decrypts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_environments_first_head_put_back_later_vouches_for_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for db in Db::every(dir.path(), "first-head").await {
        // Opened on an empty log: the head names its start (after the keyring's registration of
        // the key, the environment's first row). Kept by the attacker.
        let v = db.open().await;
        db.sql("CREATE TABLE first_head AS SELECT * FROM audit_heads").await;
        v.store_wallet(&metadata(1), None, &shares("first"), None).await.unwrap();
        let stored = all_rows(&v).await;
        db.sql("CREATE TABLE saved AS SELECT * FROM wallets").await;
        v.replace_shares(&address(1), &shares("second"), BACKUP, None, None).await.unwrap();
        // The older row back, the replace cut from the log, and the first head put back.
        let global = if db.is_pg() {
            format!("UPDATE audit_head SET seq = 2, hash = {};", db.blob(&stored[1].hash))
        } else {
            String::new()
        };
        db.sql(&format!(
            "{} DELETE FROM audit WHERE seq > 2; {global} DELETE FROM audit_heads; \
             INSERT INTO audit_heads SELECT * FROM first_head; DELETE FROM wallets; INSERT INTO wallets SELECT * FROM saved;",
            db.drop_audit_triggers()
        ))
        .await;
        let why = tampered(v.hydrate(&address(1), Some("sign"), None).await, db.name);
        assert!(why.contains("head was put back"), "{why}");
        v.close().await.unwrap();
        db.done().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_put_back_while_later_rows_stay_stops_writes_and_stays_reported() {
    let dir = tempfile::tempdir().unwrap();
    for db in Db::every(dir.path(), "put-back").await {
        let other = open_env(&db.url, "other").await.unwrap();
        other.store_wallet(&metadata(7), None, &shares("o"), None).await.unwrap();
        let v = db.open().await; // opened on a log that is not empty
        v.store_wallet(&metadata(1), None, &shares("s"), None).await.unwrap();
        db.sql("CREATE TABLE saved_head AS SELECT * FROM audit_heads WHERE environment = 'test'").await;
        v.hydrate(&address(1), Some("sign"), None).await.unwrap();
        other.hydrate(&address(7), Some("sign"), None).await.unwrap();
        db.sql("DELETE FROM audit_heads WHERE environment = 'test'; INSERT INTO audit_heads SELECT * FROM saved_head;")
            .await;
        for _ in 0..2 {
            let why = tampered(v.hydrate(&address(1), Some("sign"), None).await, db.name);
            assert!(why.contains("follow its authenticated head"), "{why}");
            assert!(v.verify_audit_chain(None).await.unwrap().broken_at.is_some(), "{}", db.name);
        }
        // The other environment is not affected.
        other.hydrate(&address(7), Some("sign"), None).await.unwrap();
        other.close().await.unwrap();
        v.close().await.unwrap();
        db.done().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripped_rows_are_not_authenticated_as_if_they_were_from_schema_1() {
    let dir = tempfile::tempdir().unwrap();
    for db in Db::every(dir.path(), "laundering").await {
        let v = db.open().await;
        for i in [1, 2] {
            v.store_wallet(&metadata(i), None, &shares("s"), None).await.unwrap();
        }
        v.close().await.unwrap();
        // Head and every MAC removed; the log's writes (their wallet MACs are in the hashes) stay.
        db.sql(&format!(
            "{} DELETE FROM audit_heads; UPDATE audit SET mac = NULL; UPDATE wallets SET mac = NULL;",
            db.drop_audit_triggers()
        ))
        .await;
        let v = db.open().await;
        let e = v.authenticate_existing_rows(false, None).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict, "{}: {e:?}", db.name);
        // Even with force, a row whose write is on record is never authenticated.
        assert_eq!(v.authenticate_existing_rows(true, None).await.unwrap(), (0, 2), "{}", db.name);
        tampered(v.hydrate(&address(1), Some("sign"), None).await, db.name);
        v.close().await.unwrap();
        db.done().await;
    }
}
