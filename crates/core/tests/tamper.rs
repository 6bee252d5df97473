//! Someone with write access to the database but no key (a leaked admin credential, a restored
//! backup, a compromised migration job), acting as the assurance issue's attacker did: with plain
//! SQL on the side, while the vault runs. Every scenario runs on a SQLite file and on PostgreSQL.

mod support;

use sharevault_core::audit::{row_hash, AuditRecord};
use sharevault_core::error::ErrorCode;
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
            "DROP TRIGGER audit_append_only ON audit; DROP TRIGGER audit_no_truncate ON audit;"
        } else {
            "DROP TRIGGER audit_append_only_update; DROP TRIGGER audit_append_only_delete;"
        }
    }

    async fn done(self) {
        if let Some(pg) = self.pg {
            pg.drop().await;
        }
    }
}

async fn open_env(url: &str, environment: &str) -> sharevault_core::Result<Vault> {
    sharevault_core::open(OpenConfig {
        harden_process: false,
        audit_sink: None,
        allow: sharevault_core::permissions::Permissions::all(),
        database: url.into(),
        environment: environment.into(),
        actor: Some("cargo".into()),
        kms: KmsConfig::Local(DataKey::from_bytes([7u8; 32])),
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
        let v = with_log(&db, 8).await; // rows 1..=9
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
                // Appending does not make a new head that would adopt whatever the log is now.
                v.hydrate(&address(1), Some("sign"), None).await.unwrap();
                v.close().await.unwrap();
                let v = db.open().await;
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
            "head" => 10,
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
        assert_eq!(early.seq, 3, "{}", db.name);
        // What a restore of an earlier copy does to the log: its rows and head as they were.
        db.sql("CREATE TABLE saved_head AS SELECT * FROM audit_heads").await;
        for n in 0..3 {
            v.hydrate(&address(1), Some(&format!("later-{n}")), None).await.unwrap();
        }
        let late = v.checkpoint().await.unwrap();
        assert_eq!(late.seq, 6, "{}", db.name);
        assert_eq!(v.verify_audit_chain(Some(&early)).await.unwrap().broken_at, None, "{}", db.name);
        assert_eq!(v.verify_audit_chain(Some(&late)).await.unwrap().broken_at, None, "{}", db.name);
        let global_head = if db.is_pg() {
            format!("UPDATE audit_head SET seq = 3, hash = {};", db.blob(&early.hash))
        } else {
            String::new()
        };
        db.sql(&format!(
            "{} DELETE FROM audit WHERE seq > 3; DELETE FROM audit_heads; \
             INSERT INTO audit_heads SELECT * FROM saved_head; DROP TABLE saved_head; {global_head}",
            db.drop_audit_triggers()
        ))
        .await;
        // Consistent in itself: nothing inside the database can tell (the README says so)...
        assert_eq!(v.verify_audit_chain(None).await.unwrap().broken_at, None, "{}", db.name);
        // ...but the checkpoint kept outside it can.
        let check = v.verify_audit_chain(Some(&late)).await.unwrap();
        assert_eq!(check.broken_at, Some(4), "{}: {check:?}", db.name);
        assert!(check.reason.unwrap().contains("rolled back"));
        // A forged checkpoint, or another environment's, is refused.
        let mut forged = late.clone();
        forged.seq = 3;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_written_before_rows_were_authenticated_is_authenticated_once_on_open() {
    let dir = tempfile::tempdir().unwrap();
    for db in Db::every(dir.path(), "upgrade").await {
        // Two wallets stored, then the database put back into the previous schema's shape:
        // no MAC columns or tables, audit rows hashed as the previous version did.
        let v = db.open().await;
        for i in [1, 2] {
            v.store_wallet(&metadata(i), None, &shares("s"), None).await.unwrap();
        }
        v.close().await.unwrap();
        let mut head = sharevault_core::audit::ChainHead::genesis();
        let mut inserts = String::new();
        for i in [1, 2] {
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
                "{} DROP TABLE audit_heads; DROP TABLE integrity_keys; DELETE FROM audit; \
                 ALTER TABLE wallets DROP COLUMN mac, DROP COLUMN sealed_digest; \
                 ALTER TABLE audit DROP COLUMN wallet_mac, DROP COLUMN mac; {inserts} \
                 UPDATE audit_head SET seq = 2, hash = {}; DELETE FROM sharevault_schema WHERE version = 2; \
                 CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit \
                 FOR EACH ROW EXECUTE FUNCTION sharevault_audit_append_only(); \
                 CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit \
                 FOR EACH STATEMENT EXECUTE FUNCTION sharevault_audit_append_only();",
                db.drop_audit_triggers(),
                db.blob(&head.hash)
            )
        } else {
            format!(
                "{} DROP INDEX audit_wallet_states; DROP TABLE audit_heads; \
                 DROP TABLE integrity_keys; DELETE FROM audit; ALTER TABLE wallets DROP COLUMN mac; \
                 ALTER TABLE wallets DROP COLUMN sealed_digest; ALTER TABLE audit DROP COLUMN wallet_mac; \
                 ALTER TABLE audit DROP COLUMN mac; {inserts} PRAGMA user_version = 1;",
                db.drop_audit_triggers()
            )
        };
        db.sql(&v1).await;
        // Opened by this version: migrated, every existing row authenticated, and the log says so.
        let v = db.open().await;
        for i in [1, 2] {
            v.hydrate(&address(i), Some("sign"), None).await.unwrap();
        }
        let rows = all_rows(&v).await;
        assert_eq!(rows[2].action, "integrity_enabled", "{}", db.name);
        assert_eq!(rows[2].purpose.as_deref(), Some("2 existing wallet rows authenticated"), "{}", db.name);
        let check = v.verify_audit_chain(None).await.unwrap();
        assert_eq!((check.rows, check.broken_at), (5, None), "{}: {check:?}", db.name);
        v.close().await.unwrap();
        // Once: a MAC removed afterwards is not put back by the next open.
        db.sql(&format!("UPDATE wallets SET mac = NULL WHERE address_key = '{}'", address(1))).await;
        let v = db.open().await;
        tampered(v.hydrate(&address(1), Some("sign"), None).await, db.name);
        v.close().await.unwrap();
        db.done().await;
    }
}
