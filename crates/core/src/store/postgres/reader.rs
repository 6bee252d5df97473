//! Batched point reads: the wallet lookups of concurrent calls (each hydrate, and each write's
//! compare-and-swap read), and apart from them the metadata lookups (`getMetadata`, which reads
//! no sealed bytes), go to the server as one lookup of `unnest`ed (environment, address) pairs
//! per batch, as writes are group-committed. Under load that is one statement and one round trip
//! for many lookups instead of one each; a lone lookup is a batch of one.
//!
//! A batch is sent when a slot is free (at most `parallel` batches in flight), so lookups that
//! arrive while the slots are busy wait together for the next one. A lookup is queued after the
//! caller's earlier writes were acknowledged, so it always sees them.

use super::pg_err;
use crate::error::Result;
use sqlx::postgres::{PgPool, PgRow};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// How many lookups one statement may carry.
const MAX_BATCH: usize = 256;

/// One lookup and where its row goes.
pub(super) struct Lookup<R> {
    pub environment: String,
    pub address_key: String,
    pub reply: oneshot::Sender<Result<Option<R>>>,
}

/// What a reader looks up: its `SELECT` (ending in the batch's `unnest` condition, `$1` the
/// environments and `$2` the address keys), how a row is mapped, and the (environment, address
/// key) of a mapped row.
pub(super) struct Query<R> {
    pub select: &'static str,
    pub map: fn(&PgRow) -> sqlx::Result<R>,
    pub key: fn(&R) -> (String, String),
    /// For errors: "reading a wallet".
    pub what: &'static str,
}

pub(super) async fn run<R: Clone + Send + 'static>(
    pool: PgPool,
    mut rx: mpsc::UnboundedReceiver<Lookup<R>>,
    parallel: usize,
    query: &'static Query<R>,
) {
    let slots = Arc::new(Semaphore::new(parallel.max(1)));
    while let Some(first) = rx.recv().await {
        // Wait for a slot first: what arrives meanwhile joins this batch.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(l) => batch.push(l),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            lookup(&pool, query, batch).await;
            drop(slot);
        });
    }
}

async fn lookup<R: Clone>(pool: &PgPool, query: &Query<R>, batch: Vec<Lookup<R>>) {
    let envs: Vec<&str> = batch.iter().map(|l| l.environment.as_str()).collect();
    let keys: Vec<&str> = batch.iter().map(|l| l.address_key.as_str()).collect();
    let found = sqlx::query(query.select)
        .bind(&envs)
        .bind(&keys)
        .fetch_all(pool)
        .await
        .and_then(|rows| {
            rows.iter().map(|r| (query.map)(r).map(|w| ((query.key)(&w), w))).collect::<sqlx::Result<HashMap<_, _>>>()
        })
        .map_err(pg_err(query.what));
    match found {
        Ok(rows) => {
            // A key asked for twice in one batch (two calls on one wallet) gets a copy each.
            for l in batch {
                let _ = l.reply.send(Ok(rows.get(&(l.environment, l.address_key)).cloned()));
            }
        }
        Err(e) => {
            for l in batch {
                let _ = l.reply.send(Err(e.clone()));
            }
        }
    }
}
