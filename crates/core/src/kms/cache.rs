//! The data-key cache on the hydrate path, part of the key-wrapping seam. Bounded entries (LRU),
//! a maximum age and a maximum number of uses per entry; keyed by a hash of provider, key id,
//! wrapped key and context; plaintext keys are zeroized when an entry is evicted, expires, or the
//! vault closes. Expiry runs by the clock: a timer task sweeps expired keys even when nobody
//! asks for them (it is a tokio task, so it never keeps a Node process alive). Concurrent misses
//! on the same key share one unwrap (single flight).

use crate::envelope::KekRef;
use crate::error::{Error, Result};
use crate::kms::KeyContext;
use crate::secret::DataKey;
use crate::stats::{bump, Stats};
use lru::LruCache;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    pub max_entries: usize,
    pub max_age: Duration,
    pub max_uses: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { max_entries: 1000, max_age: Duration::from_secs(300), max_uses: 10_000 }
    }
}

/// Bounds on the options (refused outside them, never clamped).
pub const MAX_ENTRIES: u64 = 1_000_000;
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

impl CacheConfig {
    /// The `cache` options (`maxEntries`, `maxAgeMs`, `maxUses`); what is not given is the default.
    pub fn from_options(max_entries: Option<u64>, max_age_ms: Option<u64>, max_uses: Option<u64>) -> Result<Self> {
        let d = CacheConfig::default();
        let max_age_limit = MAX_AGE.as_millis() as u64;
        let max_entries = match max_entries {
            None => d.max_entries,
            Some(n) if (1..=MAX_ENTRIES).contains(&n) => n as usize,
            Some(_) => {
                return Err(Error::invalid("cache.maxEntries", format!("must be an integer from 1 to {MAX_ENTRIES}")))
            }
        };
        let max_age = match max_age_ms {
            None => d.max_age,
            Some(ms) if (1..=max_age_limit).contains(&ms) => Duration::from_millis(ms),
            Some(_) => {
                return Err(Error::invalid("cache.maxAgeMs", format!("must be an integer from 1 to {max_age_limit}")))
            }
        };
        let max_uses = match max_uses {
            None => d.max_uses,
            Some(n) if n >= 1 => n,
            Some(_) => return Err(Error::invalid("cache.maxUses", "must be an integer of at least 1")),
        };
        Ok(CacheConfig { max_entries, max_age, max_uses })
    }
}

type CacheKey = [u8; 32];

struct Entry {
    key: DataKey,
    created: Instant,
    uses: u64,
}

/// One in-progress unwrap shared by every caller that missed on the same key, and how many
/// callers joined it (each of them uses the key once).
struct FlightState {
    cell: OnceCell<std::result::Result<Arc<DataKey>, Error>>,
    joined: AtomicU64,
}

type Flight = Arc<FlightState>;

struct Inner {
    config: CacheConfig,
    entries: Mutex<LruCache<CacheKey, Entry>>,
    flights: Mutex<HashMap<CacheKey, Flight>>,
    closed: AtomicBool,
    stats: Arc<Stats>,
}

pub struct DekCache {
    inner: Arc<Inner>,
}

fn cache_key(kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> CacheKey {
    let mut h = Sha256::new();
    h.update(b"sharevault/dek-cache/v1");
    for part in [kek.provider.as_bytes(), kek.key_id.as_bytes(), kek.key_version.as_bytes(), wrapped] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(ctx.to_bytes());
    h.finalize().into()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while the lock was held cannot leave an LRU or a map half-changed in a way that
    // matters here (worst case an entry is missing): keep using it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How often the timer looks for expired keys: a quarter of the maximum age, between 10 ms and
/// 1 s, so a key outlives `maxAgeMs` by at most that much.
pub fn sweep_interval(max_age: Duration) -> Duration {
    (max_age / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

impl Inner {
    fn expired(&self, e: &Entry) -> bool {
        e.created.elapsed() >= self.config.max_age
    }

    /// Drops (and so zeroizes) every expired entry.
    fn sweep(&self) {
        let mut entries = lock(&self.entries);
        let expired: Vec<CacheKey> = entries.iter().filter(|(_, e)| self.expired(e)).map(|(k, _)| *k).collect();
        for k in expired {
            entries.pop(&k);
            bump(&self.stats.cache_evictions);
        }
    }

    fn insert(&self, k: CacheKey, key: DataKey, uses: u64) {
        if uses >= self.config.max_uses || self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut entries = lock(&self.entries);
        // Checked again under the lock: `close` clears under it, so nothing lands after a close.
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        if let Some((old_k, _)) = entries.push(k, Entry { key, created: Instant::now(), uses }) {
            if old_k != k {
                bump(&self.stats.cache_evictions);
            }
        }
    }

    /// A hit, counting its use; expired or used-up entries are evicted (and zeroized).
    fn lookup(&self, k: &CacheKey) -> Option<DataKey> {
        let mut entries = lock(&self.entries);
        let entry = entries.get_mut(k)?;
        if self.expired(entry) || entry.uses >= self.config.max_uses {
            entries.pop(k);
            bump(&self.stats.cache_evictions);
            return None;
        }
        entry.uses += 1;
        let key = entry.key.duplicate();
        if entry.uses >= self.config.max_uses {
            entries.pop(k);
            bump(&self.stats.cache_evictions);
        }
        Some(key)
    }

    /// Settles a flight once, whoever finishes it (the caller that started it may have been
    /// cancelled): its key goes into the cache with one use per caller that shared it, then the
    /// flight leaves the table. Errors are never cached.
    fn land(&self, k: &CacheKey, flight: &Flight, result: &std::result::Result<Arc<DataKey>, Error>) {
        let mut flights = lock(&self.flights);
        if !flights.get(k).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            return; // already landed
        }
        if let Ok(key) = result {
            self.insert(*k, key.duplicate(), flight.joined.load(Ordering::SeqCst));
        }
        flights.remove(k);
    }
}

impl DekCache {
    /// A cache; inside a tokio runtime it also starts its expiry timer (a task that ends when the
    /// cache is closed or dropped).
    /// The settings the cache was made with.
    pub fn config(&self) -> CacheConfig {
        self.inner.config
    }

    pub fn new(config: CacheConfig, stats: Arc<Stats>) -> DekCache {
        let cap = NonZeroUsize::new(config.max_entries.max(1)).unwrap_or(NonZeroUsize::MIN);
        let inner = Arc::new(Inner {
            config,
            entries: Mutex::new(LruCache::new(cap)),
            flights: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            stats,
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak: Weak<Inner> = Arc::downgrade(&inner);
            let every = sweep_interval(config.max_age);
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match weak.upgrade() {
                        Some(inner) if !inner.closed.load(Ordering::Acquire) => inner.sweep(),
                        _ => return,
                    }
                }
            });
        }
        DekCache { inner }
    }

    /// Caches a key that was just generated (its first use is still to come).
    pub fn insert_fresh(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext, key: &DataKey) {
        self.inner.insert(cache_key(kek, wrapped, ctx), key.duplicate(), 0);
    }

    /// The cached key, or the result of `unwrap`, run once for all concurrent callers that miss
    /// on the same key.
    pub async fn get_or_unwrap<F, Fut>(
        &self,
        kek: &KekRef,
        wrapped: &[u8],
        ctx: &KeyContext,
        unwrap: F,
    ) -> Result<DataKey>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<DataKey>>,
    {
        let inner = &self.inner;
        let k = cache_key(kek, wrapped, ctx);
        if let Some(hit) = inner.lookup(&k) {
            bump(&inner.stats.cache_hits);
            return Ok(hit);
        }
        let flight = {
            let mut flights = lock(&inner.flights);
            let flight = match flights.get(&k) {
                Some(f) => f.clone(),
                None => {
                    // A flight puts its key in the cache before it leaves this table (under this
                    // lock), so a second look here catches one that just landed.
                    if let Some(hit) = inner.lookup(&k) {
                        bump(&inner.stats.cache_hits);
                        return Ok(hit);
                    }
                    let f: Flight = Arc::new(FlightState { cell: OnceCell::new(), joined: AtomicU64::new(0) });
                    flights.insert(k, f.clone());
                    f
                }
            };
            flight.joined.fetch_add(1, Ordering::SeqCst);
            flight
        };
        bump(&inner.stats.cache_misses);
        let result = flight.cell.get_or_init(|| async { unwrap().await.map(Arc::new) }).await.clone();
        inner.land(&k, &flight, &result);
        result.map(|key| key.duplicate())
    }

    pub fn forget(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) {
        if lock(&self.inner.entries).pop(&cache_key(kek, wrapped, ctx)).is_some() {
            bump(&self.inner.stats.cache_evictions);
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.inner.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Zeroizes every entry and refuses new ones; the timer task ends at its next tick.
    pub fn close(&self) {
        let mut entries = lock(&self.inner.entries);
        self.inner.closed.store(true, Ordering::Release);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek() -> KekRef {
        KekRef { provider: "local".into(), key_id: "k".into(), key_version: "1".into() }
    }

    fn ctx() -> KeyContext {
        KeyContext { environment: "test".into(), wallet_id: "w1".into() }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_key_is_swept_by_the_clock_after_its_maximum_age() {
        let cache = DekCache::new(
            CacheConfig { max_entries: 10, max_age: Duration::from_millis(100), max_uses: 100 },
            Arc::default(),
        );
        cache.insert_fresh(&kek(), b"wrapped", &ctx(), &DataKey::generate());
        assert_eq!(cache.len(), 1);
        // Nobody looks the key up: only the timer can remove it.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(cache.len(), 0);
    }

    #[tokio::test]
    async fn close_empties_the_cache_and_nothing_lands_afterwards() {
        let cache = DekCache::new(CacheConfig::default(), Arc::default());
        cache.insert_fresh(&kek(), b"wrapped", &ctx(), &DataKey::generate());
        cache.close();
        assert!(cache.is_empty());
        let got = cache.get_or_unwrap(&kek(), b"other", &ctx(), || async { Ok(DataKey::generate()) }).await;
        assert!(got.is_ok());
        assert!(cache.is_empty(), "a key landed in a closed cache");
    }

    #[test]
    fn the_sweep_interval_is_a_quarter_of_the_age_within_bounds() {
        assert_eq!(sweep_interval(Duration::from_millis(200)), Duration::from_millis(50));
        assert_eq!(sweep_interval(Duration::from_millis(1)), Duration::from_millis(10));
        assert_eq!(sweep_interval(Duration::from_secs(300)), Duration::from_secs(1));
    }
}
