//! Counters for `vault.stats()`: KMS calls by operation, data-key cache hits / misses /
//! evictions, errors by code, and hydrate latency percentiles. Nothing secret is ever recorded.

use crate::error::ErrorCode;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How many recent hydrate latencies the percentiles are computed over.
const LATENCY_WINDOW: usize = 10_000;

#[derive(Default)]
pub struct Stats {
    pub kms_generate: AtomicU64,
    pub kms_decrypt: AtomicU64,
    pub kms_reencrypt: AtomicU64,
    /// `Encrypt` of an existing data key under the primary (a rotation that could not re-encrypt inside the provider).
    pub kms_encrypt: AtomicU64,
    pub kms_describe: AtomicU64,
    /// HTTP attempts to KMS, retries included (AWS only).
    pub kms_attempts: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub cache_evictions: AtomicU64,
    /// Committed audit entries handed to the `onAudit` queue, and those dropped because it was full.
    pub audit_queued: AtomicU64,
    pub audit_dropped: AtomicU64,
    errors: [AtomicU64; ErrorCode::ALL.len()],
    hydrate_micros: Mutex<VecDeque<u32>>,
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSnapshot {
    pub kms_generate: u64,
    pub kms_decrypt: u64,
    pub kms_reencrypt: u64,
    pub kms_encrypt: u64,
    pub kms_describe: u64,
    pub kms_attempts: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_evictions: u64,
    pub audit_queued: u64,
    pub audit_dropped: u64,
    /// `(code, count)` for every code seen at least once.
    pub errors: Vec<(&'static str, u64)>,
    pub hydrations: u64,
    pub hydrate_p50_ms: f64,
    pub hydrate_p95_ms: f64,
    pub hydrate_p99_ms: f64,
    /// The memory protections in force (process-wide).
    pub memory: crate::memlock::Protections,
    /// The TLS version of the database connections (`TLSv1.3`); `None` without TLS or for SQLite.
    pub database_tls: Option<String>,
}

pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            bump(&self.errors[i]);
        }
    }

    pub fn hydrated(&self, took: Duration) {
        let micros = took.as_micros().min(u32::MAX as u128) as u32;
        if let Ok(mut w) = self.hydrate_micros.lock() {
            if w.len() == LATENCY_WINDOW {
                w.pop_front();
            }
            w.push_back(micros);
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut lat: Vec<u32> = self.hydrate_micros.lock().map(|w| w.iter().copied().collect()).unwrap_or_default();
        lat.sort_unstable();
        let pct = |p: f64| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let i = ((p / 100.0) * lat.len() as f64).floor() as usize;
            lat[i.min(lat.len() - 1)] as f64 / 1000.0
        };
        StatsSnapshot {
            kms_generate: get(&self.kms_generate),
            kms_decrypt: get(&self.kms_decrypt),
            kms_reencrypt: get(&self.kms_reencrypt),
            kms_encrypt: get(&self.kms_encrypt),
            kms_describe: get(&self.kms_describe),
            kms_attempts: get(&self.kms_attempts),
            cache_hits: get(&self.cache_hits),
            cache_misses: get(&self.cache_misses),
            cache_evictions: get(&self.cache_evictions),
            audit_queued: get(&self.audit_queued),
            audit_dropped: get(&self.audit_dropped),
            errors: ErrorCode::ALL
                .iter()
                .zip(self.errors.iter())
                .filter_map(|(c, n)| {
                    let n = get(n);
                    (n > 0).then_some((c.as_str(), n))
                })
                .collect(),
            hydrations: lat.len() as u64,
            hydrate_p50_ms: pct(50.0),
            hydrate_p95_ms: pct(95.0),
            hydrate_p99_ms: pct(99.0),
            memory: crate::memlock::status(),
            database_tls: None,
        }
    }
}
