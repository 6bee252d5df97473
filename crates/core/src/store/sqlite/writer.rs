//! The group-commit writer: one thread owns the write connection; concurrent changes and audit
//! rows share one transaction and one fsync, each isolated by a savepoint and acknowledged only
//! after `COMMIT`. Deletes and replaces are shredded from the WAL before they are acknowledged.

use super::db_err;
use super::in_transaction;
use super::rows::{apply_change, chain_head, check_head, get_head, insert_audit, put_head};
use crate::audit::AuditEntry;
use crate::error::{Error, ErrorCode, Result};
use crate::integrity::IntegrityKey;
use crate::store::{Applied, Change, HeadRepair};
use rusqlite::Connection;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How many queued jobs one transaction may take.
const MAX_BATCH: usize = 512;

pub(super) enum Job {
    Apply(Box<Change>, AuditEntry, oneshot::Sender<Result<Applied>>),
    Audit(AuditEntry, oneshot::Sender<Result<()>>),
    /// Runs on the writer's connection, between batches: reads of a memory database, and the
    /// rare writes outside the group commit (the integrity key, the one-time row MAC backfill).
    Run(Box<dyn FnOnce(&Connection) + Send>),
    /// From now on, rows of this key's environment carry MACs, and every write checks and moves
    /// its authenticated head.
    BindKey(Arc<IntegrityKey>),
    /// `WalletStore::repair_head`, in a transaction of its own between batches.
    Repair(Option<AuditEntry>, HeadRepair, oneshot::Sender<Result<i64>>),
    Close(oneshot::Sender<()>),
}

enum Reply {
    Apply(oneshot::Sender<Result<Applied>>, Result<Applied>),
    Audit(oneshot::Sender<Result<()>>, Result<()>),
}

impl Reply {
    fn fail_if_ok(self, err: &Error) -> Reply {
        match self {
            Reply::Apply(tx, Ok(_)) => Reply::Apply(tx, Err(err.clone())),
            Reply::Audit(tx, Ok(())) => Reply::Audit(tx, Err(err.clone())),
            other => other,
        }
    }

    fn send(self) {
        match self {
            Reply::Apply(tx, r) => {
                let _ = tx.send(r);
            }
            Reply::Audit(tx, r) => {
                let _ = tx.send(r);
            }
        }
    }
}

/// Pushes every committed page into the database file and empties the WAL (`TRUNCATE`), waiting
/// (through the busy handler) for readers that still hold older snapshots. With `secure_delete`,
/// the new pages hold zeros where a deleted or replaced record was, so afterwards no byte of it
/// is left in the database, its WAL or its shared-memory file. Returns whether it completed.
fn shred(conn: &Connection) -> bool {
    // A memory database has no files: nothing lingers. `busy` is 1 when a reader kept the
    // checkpoint from completing; the log then still holds frames.
    let r: rusqlite::Result<(i64, i64, i64)> =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)));
    match r {
        Ok((busy, log, _)) => busy == 0 && log <= 0,
        Err(_) => false,
    }
}

/// How often a shred that a long reader kept from completing is retried, busy or idle.
pub const SHRED_RETRY: Duration = Duration::from_secs(1);

pub(super) fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut shred_pending = false;
    let mut last_try = Instant::now();
    let mut key: Option<Arc<IntegrityKey>> = None;
    loop {
        // While a shred is pending, wake at least every SHRED_RETRY even with nothing queued.
        let first = if shred_pending {
            match rx.recv_timeout(SHRED_RETRY) {
                Ok(j) => Some(j),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(j) => Some(j),
                Err(_) => break,
            }
        };
        batch.extend(first);
        while !batch.is_empty() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut close: Option<oneshot::Sender<()>> = None;
        let mut writes = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            match job {
                Job::Run(f) => f(&conn),
                Job::BindKey(k) => key = Some(k),
                Job::Close(tx) => close = Some(tx),
                Job::Repair(entry, how, tx) => {
                    let _ = tx.send(repair(&conn, key.as_deref(), entry.as_ref(), how));
                }
                w => writes.push(w),
            }
        }
        // Retried at most once a second: each try may wait out the busy timeout on a reader.
        if shred_pending && close.is_none() && last_try.elapsed() >= SHRED_RETRY {
            shred_pending = !shred(&conn);
            last_try = Instant::now();
        }
        // The clock starts at the first pending shred, so a steady stream of commits (a rotation)
        // still gets its checkpoint within SHRED_RETRY.
        if !writes.is_empty() && commit_batch(&conn, writes, key.as_deref()) && !shred_pending {
            shred_pending = true;
            last_try = Instant::now();
        }
        if let Some(tx) = close {
            // Anything queued behind the close is refused as closed when its sender drops.
            shred(&conn);
            drop(conn);
            let _ = tx.send(());
            return;
        }
    }
    // Every handle is gone without a close: finish a pending shred before the connection goes.
    if shred_pending {
        shred(&conn);
    }
}

/// Commits a batch and answers its callers; returns whether a shred is still pending.
fn commit_batch(conn: &Connection, writes: Vec<Job>, key: Option<&IntegrityKey>) -> bool {
    let now = crate::audit::now_ms();
    let mut replies = Vec::with_capacity(writes.len());
    let mut shredded = false;
    // A re-wrap: shredded by the writer's next retry (within SHRED_RETRY), not before the reply.
    let mut shred_soon = false;
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let err = db_err("starting a transaction")(e);
        for job in writes {
            match job {
                Job::Apply(_, _, tx) => Reply::Apply(tx, Err(err.clone())).send(),
                Job::Audit(_, tx) => Reply::Audit(tx, Err(err.clone())).send(),
                _ => {}
            }
        }
        return false;
    }
    // The log is extended only from the environment's authenticated head, found intact: a cut
    // tail or a lost head is never healed by the next write (every job of the batch hears why).
    let mut head = chain_head(conn).and_then(|tip| match key {
        Some(k) => check_head(conn, k, &tip).map(|()| tip),
        None => Ok(tip),
    });
    let start_seq = head.as_ref().map(|h| h.seq).ok();
    let mut aborted = false;
    let mut remaining = writes.into_iter();
    for job in remaining.by_ref() {
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            let err = db_err("starting a savepoint")(e);
            match job {
                Job::Apply(_, _, tx) => replies.push(Reply::Apply(tx, Err(err))),
                Job::Audit(_, tx) => replies.push(Reply::Audit(tx, Err(err))),
                _ => {}
            }
            continue;
        }
        let (reply, next_head) = match job {
            Job::Apply(change, audit, tx) => {
                let r = head.as_ref().map_err(Clone::clone).and_then(|h| {
                    let applied = apply_change(conn, &change, &audit.environment, now)?;
                    if applied == Applied::Done {
                        let nh = insert_audit(conn, h, &audit, key)?;
                        Ok((applied, Some(nh)))
                    } else {
                        Ok((applied, None))
                    }
                });
                if matches!(r, Ok((Applied::Done, _))) {
                    match change.inner() {
                        Some(
                            Change::Delete { .. }
                            | Change::ReplaceShares { .. }
                            | Change::Rewrap { reencrypted: true, .. },
                        ) => shredded = true,
                        Some(Change::Rewrap { reencrypted: false, .. }) => shred_soon = true,
                        _ => {}
                    }
                }
                match r {
                    Ok((a, nh)) => (Reply::Apply(tx, Ok(a)), nh),
                    Err(e) => (Reply::Apply(tx, Err(e)), None),
                }
            }
            Job::Audit(audit, tx) => {
                match head.as_ref().map_err(Clone::clone).and_then(|h| insert_audit(conn, h, &audit, key)) {
                    Ok(nh) => (Reply::Audit(tx, Ok(())), Some(nh)),
                    Err(e) => (Reply::Audit(tx, Err(e)), None),
                }
            }
            _ => continue,
        };
        let failed = matches!(&reply, Reply::Apply(_, Err(_)) | Reply::Audit(_, Err(_)));
        if failed {
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
        } else {
            let _ = conn.execute_batch("RELEASE job");
            if let Some(nh) = next_head {
                head = Ok(nh);
            }
        }
        replies.push(reply);
        // Some errors (disk full, I/O, out of memory) make SQLite roll back the whole
        // transaction. Nothing in this batch is durable then: fail every job, never let the
        // next job's savepoint open (and commit) a transaction of its own.
        if conn.is_autocommit() {
            aborted = true;
            break;
        }
    }
    // The environment's authenticated head moves with the rows, in the same transaction.
    if let (false, Some(k), Ok(h)) = (aborted, key, &head) {
        if Some(h.seq) != start_seq {
            if let Err(err) = put_head(conn, k, h, false) {
                let _ = conn.execute_batch("ROLLBACK");
                for r in replies {
                    r.fail_if_ok(&err).send();
                }
                return false;
            }
        }
    }
    if aborted {
        let err = Error::db_unavailable(
            "committing",
            "the transaction was rolled back by the database (disk full or I/O error)",
        );
        for r in replies {
            r.fail_if_ok(&err).send();
        }
        for job in remaining {
            match job {
                Job::Apply(_, _, tx) => Reply::Apply(tx, Err(err.clone())).send(),
                Job::Audit(_, tx) => Reply::Audit(tx, Err(err.clone())).send(),
                _ => {}
            }
        }
        return false;
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        let err = db_err("committing")(e);
        for r in replies {
            r.fail_if_ok(&err).send();
        }
        return false;
    }
    // Before anyone hears of a delete or a replace: a resolved `deleteWallet` promises that no
    // byte of the wallet's wrapped key or sealed record is left in any of the database's files.
    let pending = (shredded && !shred(conn)) || shred_soon;
    for r in replies {
        r.send();
    }
    pending
}

/// Appends `entry` at the end of the log (or takes the last row as it is) and makes it the
/// environment's head, if `how` allows.
fn repair(conn: &Connection, key: Option<&IntegrityKey>, entry: Option<&AuditEntry>, how: HeadRepair) -> Result<i64> {
    let key = key.ok_or_else(|| Error::internal("no integrity key is bound"))?;
    in_transaction(conn, |c| {
        let tip = chain_head(c)?;
        match how {
            HeadRepair::Create if get_head(c, key.environment())?.is_some() => {
                return Err(Error::new(ErrorCode::Conflict, "the environment has an authenticated head already"));
            }
            HeadRepair::Acknowledge if check_head(c, key, &tip).is_ok() => {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    "nothing to acknowledge: the log holds this environment's authenticated head",
                ));
            }
            _ => {}
        }
        let head = match entry {
            Some(e) => insert_audit(c, &tip, e, Some(key))?,
            None => tip,
        };
        put_head(c, key, &head, true)?;
        Ok(head.seq)
    })
}
