//! The group-commit writer task (see the module doc of `postgres`).

use super::pg_err;
use crate::audit::{now_ms, AuditEntry, ChainHead, SignedHead};
use crate::error::{Error, ErrorCode, Result};
use crate::integrity::IntegrityKey;
use crate::store::{Applied, Change, HeadRepair};
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Row, Transaction};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How many queued jobs one transaction may take.
const MAX_BATCH: usize = 512;
/// Batches retried after a serialization failure or deadlock before the error is reported.
const MAX_RETRIES: u32 = 5;

/// What the writer task is asked to do.
pub(super) enum Job {
    Write(Write),
    /// From now on, rows of this key's environment carry MACs, and every write checks and moves
    /// its authenticated head.
    BindKey(Arc<IntegrityKey>),
    /// `WalletStore::repair_head`, in a transaction of its own between batches.
    Repair(Option<AuditEntry>, HeadRepair, oneshot::Sender<Result<i64>>),
    Close(oneshot::Sender<()>),
}

/// One change or audit row to commit, with where its outcome goes.
pub(super) enum Write {
    Apply(Box<Change>, AuditEntry, oneshot::Sender<Result<Applied>>),
    Audit(AuditEntry, oneshot::Sender<Result<()>>),
}

impl Write {
    fn entry(&self) -> &AuditEntry {
        match self {
            Write::Apply(_, e, _) | Write::Audit(e, _) => e,
        }
    }

    fn reply(self, outcome: Result<Applied>) {
        match self {
            Write::Apply(_, _, tx) => {
                let _ = tx.send(outcome);
            }
            Write::Audit(_, tx) => {
                let _ = tx.send(outcome.map(|_| ()));
            }
        }
    }
}

pub(super) async fn run(pool: PgPool, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // The chain head as this process last wrote it: a guess (another instance may have appended
    // since) that lets an audit-only batch append in one statement, checked by that statement.
    let mut known: Option<ChainHead> = None;
    let mut key: Option<Arc<IntegrityKey>> = None;
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut close = None;
        let mut writes = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            match job {
                Job::Close(tx) => close = Some(tx),
                Job::BindKey(k) => key = Some(k),
                Job::Write(w) => writes.push(w),
                Job::Repair(entry, how, tx) => {
                    let r = match key.as_deref() {
                        Some(k) => repair(&pool, k, entry.as_ref(), how).await,
                        None => Err(Error::internal("no integrity key is bound")),
                    };
                    // The chain moved: the next audit-only batch takes the locking path.
                    known = None;
                    let _ = tx.send(r);
                }
            }
        }
        if !writes.is_empty() {
            known = commit_with_retries(&pool, writes, known, key.as_deref()).await;
        }
        if let Some(tx) = close {
            // Anything queued behind the close is refused as closed when its sender drops.
            let _ = tx.send(());
            return;
        }
    }
}

fn retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")))
}

/// Commits one batch and answers every job in it; returns the chain head it left (None after an
/// error, when the head is unknown).
async fn commit_with_retries(
    pool: &PgPool,
    jobs: Vec<Write>,
    known: Option<ChainHead>,
    key: Option<&IntegrityKey>,
) -> Option<ChainHead> {
    if let (Some(head), true) = (known, jobs.iter().all(|j| matches!(j, Write::Audit(..)))) {
        match append_at(pool, &jobs, &head, key).await {
            Ok(Some(next)) => {
                for job in jobs {
                    job.reply(Ok(Applied::Done));
                }
                return Some(next);
            }
            // Another instance appended since: take the head's lock below.
            Ok(None) => {}
            Err(e) if retryable(&e) => {}
            Err(e) => return fail(jobs, e),
        }
    }
    let mut attempt = 0;
    let outcome = loop {
        match commit(pool, &jobs, key).await {
            Err(e) if retryable(&e) && attempt < MAX_RETRIES => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
            }
            other => break other,
        }
    };
    match outcome {
        Ok((applied, head)) => {
            for (job, a) in jobs.into_iter().zip(applied) {
                job.reply(a);
            }
            head
        }
        Err(e) => fail(jobs, e),
    }
}

/// Nothing of the batch is durable (or, if the connection died during COMMIT, nothing is
/// acknowledged): every caller hears the error.
fn fail(jobs: Vec<Write>, e: sqlx::Error) -> Option<ChainHead> {
    let err = pg_err("committing")(e);
    for job in jobs {
        job.reply(Err(err.clone()));
    }
    None
}

/// The columns of the audit rows a batch appends, for one `unnest` insert.
#[derive(Default)]
struct AuditColumns {
    seq: Vec<i64>,
    at: Vec<i64>,
    environment: Vec<String>,
    actor: Vec<String>,
    action: Vec<String>,
    address: Vec<String>,
    wallet_id: Vec<Option<String>>,
    purpose: Vec<Option<String>>,
    outcome: Vec<String>,
    wallet_mac: Vec<Option<Vec<u8>>>,
    prev_hash: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
    mac: Vec<Option<Vec<u8>>>,
}

impl AuditColumns {
    fn push(&mut self, head: &ChainHead, e: &AuditEntry, key: Option<&IntegrityKey>) -> ChainHead {
        let link = head.link(e);
        self.mac.push(key.filter(|k| k.environment() == e.environment).map(|k| k.audit_row_tag(link.seq, &link.hash)));
        self.wallet_mac.push(e.wallet_mac.clone());
        self.seq.push(link.seq);
        self.at.push(e.at_ms);
        self.environment.push(e.environment.clone());
        self.actor.push(e.actor.clone());
        self.action.push(e.action.to_string());
        self.address.push(e.address.clone());
        self.wallet_id.push(e.wallet_id.clone());
        self.purpose.push(e.purpose.clone());
        self.outcome.push(e.outcome.clone());
        let next = link.head();
        self.prev_hash.push(link.prev_hash);
        self.hash.push(link.hash);
        next
    }
}

// The batch's audit rows from `unnest` of the column arrays $1..$11 (sqlx takes `&'static str`
// SQL only, so the shared text is a macro for `concat!`).
macro_rules! insert_audit_rows {
    () => {
        "INSERT INTO audit (seq, at, environment, actor, action, address, wallet_id, purpose, outcome, wallet_mac, \
         prev_hash, hash, mac) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::text[], $8::text[], $9::text[], $10::bytea[], $11::bytea[], $12::bytea[], $13::bytea[])"
    };
}

// The environment's authenticated head moved to the batch's last row ($14 seq, $15 hash) in the
// same statement, where it is (the batch checked it first; a missing head is never made here).
// $16 is the environment (NULL without a key), $17 the head's MAC.
macro_rules! move_head {
    () => {
        "heads AS (UPDATE audit_heads SET seq = $14, hash = $15, mac = $17 WHERE environment = $16 \
         AND $16::text IS NOT NULL"
    };
}

/// The batch's audit rows after `head`, and the head they leave.
fn audit_rows(head: &ChainHead, jobs: &[&AuditEntry], key: Option<&IntegrityKey>) -> (AuditColumns, ChainHead) {
    let mut audit = AuditColumns::default();
    let mut head = head.clone();
    for e in jobs {
        head = audit.push(&head, e, key);
    }
    (audit, head)
}

/// Binds $1..$17: the rows, the head they leave, and the environment's authenticated head.
fn bind_audit<'q>(
    q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    a: &'q AuditColumns,
    next: &'q ChainHead,
    key: Option<&IntegrityKey>,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    let env = key.map(|k| k.environment().to_string());
    let mac = key.map(|k| k.head_tag(next.seq, &next.hash));
    bind_rows(q, a).bind(next.seq).bind(&next.hash).bind(env).bind(mac)
}

fn bind_rows<'q>(
    q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    a: &'q AuditColumns,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    q.bind(&a.seq)
        .bind(&a.at)
        .bind(&a.environment)
        .bind(&a.actor)
        .bind(&a.action)
        .bind(&a.address)
        .bind(&a.wallet_id)
        .bind(&a.purpose)
        .bind(&a.outcome)
        .bind(&a.wallet_mac)
        .bind(&a.prev_hash)
        .bind(&a.hash)
        .bind(&a.mac)
}

/// An audit-only batch in one autocommitted statement, if the chain's head is still `head`,
/// where this process's last batch left it, and so is the environment's authenticated head
/// (so nothing was appended, cut or changed since; otherwise the locking path checks why):
/// the head row is moved on only where it still holds `head` (a concurrent appender's lock is
/// waited for and the condition checked again on its result), and the rows go in only if it
/// was. One round trip instead of four. `None`: the head had moved, nothing was written.
async fn append_at(
    pool: &PgPool,
    jobs: &[Write],
    head: &ChainHead,
    key: Option<&IntegrityKey>,
) -> sqlx::Result<Option<ChainHead>> {
    let entries: Vec<&AuditEntry> = jobs.iter().map(Write::entry).collect();
    let (audit, next) = audit_rows(head, &entries, key);
    let q = sqlx::query(concat!(
        "WITH head AS (UPDATE audit_head SET seq = $14, hash = $15 WHERE id = 1 AND seq = $18 AND hash = $19 \
         AND EXISTS (SELECT 1 FROM audit WHERE seq = $18 AND hash = $19) \
         AND ($16::text IS NULL OR EXISTS (SELECT 1 FROM audit_heads WHERE environment = $16 AND seq = $18 \
         AND hash = $19 AND mac = $20)) RETURNING 1), rows AS (",
        insert_audit_rows!(),
        " WHERE EXISTS (SELECT 1 FROM head)), ",
        move_head!(),
        " AND EXISTS (SELECT 1 FROM head)) SELECT count(*) FROM head"
    ));
    // The head as this process wrote it, MAC included: a head row rewritten by anyone else (a
    // forged MAC, a head put back) sends the batch to the locking path, which checks why.
    let written = key.map(|k| k.head_tag(head.seq, &head.hash));
    let moved: i64 = bind_audit(q, &audit, &next, key)
        .bind(head.seq)
        .bind(&head.hash)
        .bind(written)
        .fetch_one(pool)
        .await?
        .try_get(0)?;
    Ok((moved == 1).then_some(next))
}

/// One transaction for the whole batch; returns each job's outcome (a conflict or a stale
/// version is an outcome, not an error) and the chain head this process left, if it wrote one
/// (only then may the next audit-only batch take the one-statement path from it). Any error
/// aborts the whole transaction.
async fn commit(
    pool: &PgPool,
    jobs: &[Write],
    key: Option<&IntegrityKey>,
) -> sqlx::Result<(Vec<Result<Applied>>, Option<ChainHead>)> {
    let now = now_ms();
    let mut tx = pool.begin().await?;
    let (head, intact) = lock_head(&mut tx, key).await?;
    if let Err(e) = intact {
        // Nothing is written: every job hears why (the transaction rolls back when dropped),
        // and no head is known to start from.
        return Ok((jobs.iter().map(|_| Err(e.clone())).collect(), None));
    }
    let mut entries = Vec::with_capacity(jobs.len());
    let mut outcomes = Vec::with_capacity(jobs.len());
    // The wallets this batch has written so far: their audit rows are inserted at the end, so a
    // later job's read of a wallet's latest state would not see them (an insert then checks
    // against what it cannot see: it is stale).
    let mut written: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
    for job in jobs {
        match job {
            Write::Apply(change, entry, _) => {
                let wallet = change.address_key().map(|k| (entry.environment.as_str(), k));
                let applied = match (change.inner(), wallet) {
                    (Some(Change::Insert { .. }), Some(w)) if written.contains(&w) => Ok(Applied::Stale),
                    _ => match &**change {
                        Change::Event { event_id, outcome, mac, then } => {
                            let ev = EventRecord { event_id, outcome, mac };
                            apply_event(&mut tx, ev, then.as_deref(), &entry.environment, now).await?
                        }
                        other => apply_change(&mut tx, other, &entry.environment, now).await?,
                    },
                };
                if let Ok(Applied::Done) = applied {
                    entries.push(entry);
                    written.extend(wallet);
                }
                outcomes.push(applied);
            }
            Write::Audit(entry, _) => {
                entries.push(entry);
                outcomes.push(Ok(Applied::Done));
            }
        }
    }
    let (audit, next) = audit_rows(&head, &entries, key);
    if !entries.is_empty() {
        // The rows and the new heads in one statement: one round trip fewer per batch.
        let q = sqlx::query(concat!(
            "WITH rows AS (",
            insert_audit_rows!(),
            "), ",
            move_head!(),
            ") UPDATE audit_head SET seq = $14, hash = $15 WHERE id = 1"
        ));
        bind_audit(q, &audit, &next, key).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok((outcomes, (!entries.is_empty()).then_some(next)))
}

/// Locks the chain's head row (every writer takes this lock first) and reads, in the same round
/// trip, the environment's authenticated head and the hash of the log row it names: the chain's
/// head, and whether the log still holds the environment's head (see `tamper::head_intact`).
async fn lock_head(
    tx: &mut Transaction<'_, Postgres>,
    key: Option<&IntegrityKey>,
) -> sqlx::Result<(ChainHead, Result<()>)> {
    let row = sqlx::query(
        "SELECT g.seq, g.hash, h.environment, h.seq, h.hash, h.mac, (SELECT a.hash FROM audit a WHERE a.seq = h.seq), \
         CASE WHEN h.seq < g.seq THEN EXISTS (SELECT 1 FROM audit a WHERE a.seq > h.seq AND a.environment = $1) \
         ELSE false END FROM audit_head g LEFT JOIN audit_heads h ON h.environment = $1 WHERE g.id = 1 FOR UPDATE OF g",
    )
    .bind(key.map(|k| k.environment().to_string()))
    .fetch_one(&mut **tx)
    .await?;
    let tip = ChainHead { seq: row.try_get(0)?, hash: row.try_get(1)? };
    let Some(key) = key else { return Ok((tip, Ok(()))) };
    let head = match row.try_get::<Option<String>, _>(2)? {
        Some(environment) => {
            Some(SignedHead { environment, seq: row.try_get(3)?, hash: row.try_get(4)?, mac: row.try_get(5)? })
        }
        None => None,
    };
    let at_head: Option<Vec<u8>> = row.try_get(6)?;
    let rows_after: Option<bool> = row.try_get(7)?;
    let intact = crate::tamper::head_intact(key, head.as_ref(), &tip, at_head.as_deref(), rows_after == Some(true));
    Ok((tip, intact))
}

/// Appends `entry` at the end of the log (or takes the last row as it is) and makes it the
/// environment's head, if `how` allows.
async fn repair(pool: &PgPool, key: &IntegrityKey, entry: Option<&AuditEntry>, how: HeadRepair) -> Result<i64> {
    let run = async {
        let mut tx = pool.begin().await?;
        let (tip, intact) = lock_head(&mut tx, Some(key)).await?;
        let has_head: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM audit_heads WHERE environment = $1)")
            .bind(key.environment())
            .fetch_one(&mut *tx)
            .await?;
        let refusal = match how {
            HeadRepair::Create if has_head => Some("the environment has an authenticated head already"),
            HeadRepair::Acknowledge if intact.is_ok() => {
                Some("nothing to acknowledge: the log holds this environment's authenticated head")
            }
            _ => None,
        };
        if let Some(why) = refusal {
            return Ok(Err(Error::new(ErrorCode::Conflict, why)));
        }
        let entries: Vec<&AuditEntry> = entry.into_iter().collect();
        let (audit, next) = audit_rows(&tip, &entries, Some(key));
        let q = sqlx::query(concat!(
            "WITH rows AS (",
            insert_audit_rows!(),
            "), heads AS (INSERT INTO audit_heads (environment, seq, hash, mac) VALUES ($16, $14, $15, $17) \
             ON CONFLICT (environment) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac) \
             UPDATE audit_head SET seq = $14, hash = $15 WHERE id = 1"
        ));
        bind_audit(q, &audit, &next, Some(key)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Ok(next.seq))
    };
    run.await.map_err(pg_err("repairing the audit head"))?
}

/// `UPDATE … WHERE version = $expected` and, in the same statement, whether the row exists:
/// 0 rows updated is `Stale` if it does, `NotFound` if not.
async fn cas(
    q: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    tx: &mut Transaction<'_, Postgres>,
) -> sqlx::Result<Applied> {
    let row = q.fetch_one(&mut **tx).await?;
    let (updated, exists): (i64, bool) = (row.try_get(0)?, row.try_get(1)?);
    Ok(if updated == 1 {
        Applied::Done
    } else if exists {
        Applied::Stale
    } else {
        Applied::NotFound
    })
}

/// `Change::Event`: every writer holds the chain head's lock, so no other transaction records
/// the event meanwhile, and this transaction sees this batch's own records. The event is
/// recorded only once `then` is done (the batch has no savepoints to undo it with).
/// What `Change::Event` records.
struct EventRecord<'a> {
    event_id: &'a str,
    outcome: &'a str,
    mac: &'a [u8],
}

async fn apply_event(
    tx: &mut Transaction<'_, Postgres>,
    ev: EventRecord<'_>,
    then: Option<&Change>,
    env: &str,
    now: i64,
) -> sqlx::Result<Result<Applied>> {
    let EventRecord { event_id, outcome, mac } = ev;
    let seen: Option<i32> = sqlx::query_scalar("SELECT 1 FROM webhook_events WHERE environment = $1 AND event_id = $2")
        .bind(env)
        .bind(event_id)
        .fetch_optional(&mut **tx)
        .await?;
    if seen.is_some() {
        return Ok(Ok(Applied::Stale));
    }
    if let Some(inner) = then {
        if matches!(inner, Change::Event { .. }) {
            return Ok(Err(Error::internal("an event inside an event")));
        }
        match apply_change(tx, inner, env, now).await? {
            Ok(Applied::Done) => {}
            other => return Ok(other),
        }
    }
    sqlx::query(
        "INSERT INTO webhook_events (environment, event_id, outcome, received_at, mac) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(env)
    .bind(event_id)
    .bind(outcome)
    .bind(now)
    .bind(mac)
    .execute(&mut **tx)
    .await?;
    Ok(Ok(Applied::Done))
}

/// Applies `change` to the wallets of `env` (the audit entry's: a vault never writes another
/// environment's rows).
async fn apply_change(
    tx: &mut Transaction<'_, Postgres>,
    change: &Change,
    env: &str,
    now: i64,
) -> sqlx::Result<Result<Applied>> {
    Ok(Ok(match change {
        Change::Insert { row: w, auth, state_seq } => {
            if w.environment != env {
                return Ok(Err(Error::internal("a wallet row of another environment")));
            }
            // Every writer holds the chain head's lock: no other transaction appends a state now,
            // and this statement sees every one committed before (this batch's own are checked
            // by the caller).
            let latest: Option<i64> = sqlx::query_scalar(
                "SELECT seq FROM audit WHERE environment = $1 AND address = $2 AND wallet_mac IS NOT NULL \
                 ORDER BY seq DESC LIMIT 1",
            )
            .bind(env)
            .bind(&w.address_key)
            .fetch_optional(&mut **tx)
            .await?;
            if latest != *state_seq {
                return Ok(Ok(Applied::Stale));
            }
            let s = &w.sealed;
            let inserted = sqlx::query(
                "INSERT INTO wallets (address, address_key, wallet_id, chain_name, environment, metadata, version, \
                 generation, format, alg, kek_provider, kek_key_id, kek_key_version, wrapped_dek, nonce, ciphertext, \
                 created_at, updated_at, mac, sealed_digest, wrapped_at, sealed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, \
                 $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17, $18, $19, $20, $21) \
                 ON CONFLICT (environment, address_key) DO NOTHING",
            )
            .bind(&w.address)
            .bind(&w.address_key)
            .bind(&w.wallet_id)
            .bind(&w.chain_name)
            .bind(&w.environment)
            .bind(&w.metadata_json)
            .bind(w.version)
            .bind(w.generation)
            .bind(s.format)
            .bind(s.alg)
            .bind(&s.kek.provider)
            .bind(&s.kek.key_id)
            .bind(&s.kek.key_version)
            .bind(&s.wrapped_dek)
            .bind(&s.nonce)
            .bind(&s.ciphertext)
            .bind(now)
            .bind(&auth.mac)
            .bind(&auth.sealed_digest)
            .bind(s.wrapped_at)
            .bind(s.sealed_at)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Ok(Err(Error::new(
                    ErrorCode::Conflict,
                    format!("a wallet is already stored for address {}", w.address),
                )));
            }
            Applied::Done
        }
        Change::UpdateMetadata { address_key, expected_version, metadata_json, auth } => {
            let q = sqlx::query(
                "WITH u AS (UPDATE wallets SET metadata = $1, version = version + 1, updated_at = $2, mac = $5 \
                 WHERE environment = $6 AND address_key = $3 AND version = $4 RETURNING 1) \
                 SELECT (SELECT count(*) FROM u), \
                 EXISTS (SELECT 1 FROM wallets WHERE environment = $6 AND address_key = $3)",
            )
            .bind(metadata_json)
            .bind(now)
            .bind(address_key)
            .bind(expected_version)
            .bind(&auth.mac)
            .bind(env);
            cas(q, tx).await?
        }
        Change::ReplaceShares { address_key, expected_version, metadata_json, generation, sealed: s, auth } => {
            let q = sqlx::query(
                "WITH u AS (UPDATE wallets SET metadata = $1, version = version + 1, generation = $2, format = $3, \
                 alg = $4, kek_provider = $5, kek_key_id = $6, kek_key_version = $7, wrapped_dek = $8, nonce = $9, \
                 ciphertext = $10, updated_at = $11, mac = $14, sealed_digest = $15, wrapped_at = $17, sealed_at = $18, \
                 rotation_claim = NULL WHERE environment = $16 AND address_key = $12 AND version = $13 RETURNING 1) \
                 SELECT (SELECT count(*) FROM u), \
                 EXISTS (SELECT 1 FROM wallets WHERE environment = $16 AND address_key = $12)",
            )
            .bind(metadata_json)
            .bind(generation)
            .bind(s.format)
            .bind(s.alg)
            .bind(&s.kek.provider)
            .bind(&s.kek.key_id)
            .bind(&s.kek.key_version)
            .bind(&s.wrapped_dek)
            .bind(&s.nonce)
            .bind(&s.ciphertext)
            .bind(now)
            .bind(address_key)
            .bind(expected_version)
            .bind(&auth.mac)
            .bind(&auth.sealed_digest)
            .bind(env)
            .bind(s.wrapped_at)
            .bind(s.sealed_at);
            cas(q, tx).await?
        }
        Change::Rewrap { address_key, expected_version, sealed: s, auth, .. } => {
            let q = sqlx::query(
                "WITH u AS (UPDATE wallets SET version = version + 1, format = $1, alg = $2, kek_provider = $3, \
                 kek_key_id = $4, kek_key_version = $5, wrapped_dek = $6, nonce = $7, ciphertext = $8, wrapped_at = $9, \
                 sealed_at = $10, updated_at = $11, mac = $12, sealed_digest = $13, rotation_claim = NULL \
                 WHERE environment = $14 AND address_key = $15 AND version = $16 RETURNING 1) \
                 SELECT (SELECT count(*) FROM u), \
                 EXISTS (SELECT 1 FROM wallets WHERE environment = $14 AND address_key = $15)",
            )
            .bind(s.format)
            .bind(s.alg)
            .bind(&s.kek.provider)
            .bind(&s.kek.key_id)
            .bind(&s.kek.key_version)
            .bind(&s.wrapped_dek)
            .bind(&s.nonce)
            .bind(&s.ciphertext)
            .bind(s.wrapped_at)
            .bind(s.sealed_at)
            .bind(now)
            .bind(&auth.mac)
            .bind(&auth.sealed_digest)
            .bind(env)
            .bind(address_key)
            .bind(expected_version);
            cas(q, tx).await?
        }
        Change::PutKey { entry: e, expected_version } => {
            if e.environment != env {
                return Ok(Err(Error::internal("a keyring entry of another environment")));
            }
            let q = match expected_version {
                None => sqlx::query(
                    "INSERT INTO keyring (environment, kek_provider, kek_key_id, kek_key_version, state, added_at, \
                     changed_at, version, reencrypt_before, mac) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (environment, kek_provider, kek_key_id) DO NOTHING",
                ),
                Some(_) => sqlx::query(
                    "UPDATE keyring SET kek_key_version = $4, state = $5, added_at = $6, changed_at = $7, \
                     version = $8, reencrypt_before = $9, mac = $10 \
                     WHERE environment = $1 AND kek_provider = $2 AND kek_key_id = $3 AND version = $11",
                ),
            };
            let q = q
                .bind(&e.environment)
                .bind(&e.kek.provider)
                .bind(&e.kek.key_id)
                .bind(&e.kek.key_version)
                .bind(e.state.as_str())
                .bind(e.added_at)
                .bind(e.changed_at)
                .bind(e.version)
                .bind(e.reencrypt_before)
                .bind(&e.mac);
            let q = match expected_version {
                None => q,
                Some(v) => q.bind(*v),
            };
            if q.execute(&mut **tx).await?.rows_affected() == 1 {
                Applied::Done
            } else {
                Applied::Stale
            }
        }
        Change::MoveIntegrityKey { from, to } => {
            let n = sqlx::query(
                "UPDATE integrity_keys SET kek_provider = $1, kek_key_id = $2, kek_key_version = $3, wrapped = $4 \
                 WHERE environment = $5 AND kek_provider = $6 AND kek_key_id = $7",
            )
            .bind(&to.kek.provider)
            .bind(&to.kek.key_id)
            .bind(&to.kek.key_version)
            .bind(&to.wrapped)
            .bind(env)
            .bind(&from.provider)
            .bind(&from.key_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if n == 1 {
                Applied::Done
            } else {
                Applied::Stale
            }
        }
        Change::Authenticate { address_key, expected_version, auth } => {
            let q = sqlx::query(
                "WITH u AS (UPDATE wallets SET mac = $1, sealed_digest = $2 \
                 WHERE environment = $3 AND address_key = $4 AND version = $5 RETURNING 1) \
                 SELECT (SELECT count(*) FROM u), \
                 EXISTS (SELECT 1 FROM wallets WHERE environment = $3 AND address_key = $4)",
            )
            .bind(&auth.mac)
            .bind(&auth.sealed_digest)
            .bind(env)
            .bind(address_key)
            .bind(expected_version);
            cas(q, tx).await?
        }
        Change::Event { .. } => return Ok(Err(Error::internal("an event is applied by apply_event"))),
        Change::Delete { address_key } => {
            let n = sqlx::query("DELETE FROM wallets WHERE environment = $1 AND address_key = $2")
                .bind(env)
                .bind(address_key)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            if n == 1 {
                Applied::Done
            } else {
                Applied::NotFound
            }
        }
    }))
}
