//! The data-key cache on the hydrate path: a decorator over any [`KeyWrapper`]. Bounded entries
//! (LRU), a maximum age and a maximum number of uses per entry; keyed by a hash of provider, key
//! id, wrapped key and context; plaintext keys are zeroized when an entry is evicted or dropped.
//! Concurrent misses on the same key share one unwrap (single flight).

use super::{GeneratedKey, KeyContext, KeyWrapper};
use crate::envelope::KekRef;
use crate::error::Result;
use crate::secret::DataKey;
use crate::stats::{bump, Stats};
use async_trait::async_trait;
use lru::LruCache;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
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

type CacheKey = [u8; 32];

struct Entry {
    key: DataKey,
    created: Instant,
    uses: u64,
}

/// One in-progress unwrap shared by every caller that missed on the same key, and how many
/// callers joined it (each of them uses the key once).
struct FlightState {
    cell: OnceCell<std::result::Result<Arc<DataKey>, crate::error::Error>>,
    joined: std::sync::atomic::AtomicU64,
}

type Flight = Arc<FlightState>;

/// How often expired entries are swept out (and zeroized) even if nobody asks for them.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub struct CachingKeyWrapper {
    inner: Arc<dyn KeyWrapper>,
    config: CacheConfig,
    entries: Mutex<LruCache<CacheKey, Entry>>,
    flights: Mutex<HashMap<CacheKey, Flight>>,
    last_sweep: Mutex<Instant>,
    stats: Arc<Stats>,
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

impl CachingKeyWrapper {
    pub fn new(inner: Arc<dyn KeyWrapper>, config: CacheConfig, stats: Arc<Stats>) -> Self {
        let cap = NonZeroUsize::new(config.max_entries.max(1)).unwrap_or(NonZeroUsize::MIN);
        CachingKeyWrapper {
            inner,
            config,
            entries: Mutex::new(LruCache::new(cap)),
            flights: Mutex::new(HashMap::new()),
            last_sweep: Mutex::new(Instant::now()),
            stats,
        }
    }

    /// A hit, counting its use; expired or used-up entries are evicted (and zeroized).
    fn lookup(&self, k: &CacheKey) -> Option<DataKey> {
        let mut entries = self.entries.lock().ok()?;
        let entry = entries.get_mut(k)?;
        if entry.created.elapsed() > self.config.max_age || entry.uses >= self.config.max_uses {
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

    /// Drops expired entries, at most once per `SWEEP_EVERY`, so an idle key does not stay in
    /// memory past its age just because nobody looked it up.
    fn sweep(&self) {
        let due = match self.last_sweep.lock() {
            Ok(mut last) if last.elapsed() >= SWEEP_EVERY => {
                *last = Instant::now();
                true
            }
            _ => false,
        };
        if !due {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            let expired: Vec<CacheKey> =
                entries.iter().filter(|(_, e)| e.created.elapsed() > self.config.max_age).map(|(k, _)| *k).collect();
            for k in expired {
                entries.pop(&k);
                bump(&self.stats.cache_evictions);
            }
        }
    }

    /// Settles a flight once, whoever finishes it (the caller that started it may have been
    /// cancelled): its key goes into the cache with one use per caller that shared it, then the
    /// flight leaves the table. Errors are never cached.
    fn land(&self, k: &CacheKey, flight: &Flight, result: &std::result::Result<Arc<DataKey>, crate::error::Error>) {
        let Ok(mut flights) = self.flights.lock() else { return };
        if !flights.get(k).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            return; // already landed
        }
        if let Ok(key) = result {
            let uses = flight.joined.load(std::sync::atomic::Ordering::SeqCst);
            self.insert(*k, key.duplicate(), uses);
        }
        flights.remove(k);
    }

    fn insert(&self, k: CacheKey, key: DataKey, uses: u64) {
        if uses >= self.config.max_uses {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if let Some((old_k, _)) = entries.push(k, Entry { key, created: Instant::now(), uses }) {
                if old_k != k {
                    bump(&self.stats.cache_evictions);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl KeyWrapper for CachingKeyWrapper {
    fn current_kek(&self) -> &KekRef {
        self.inner.current_kek()
    }

    fn trusts(&self, kek: &KekRef) -> bool {
        self.inner.trusts(kek)
    }

    async fn generate_data_key(&self, ctx: &KeyContext) -> Result<GeneratedKey> {
        let g = self.inner.generate_data_key(ctx).await?;
        // The wallet about to be stored is usually hydrated next: keep its key.
        self.insert(cache_key(&g.kek, &g.wrapped, ctx), g.plaintext.duplicate(), 0);
        Ok(g)
    }

    async fn unwrap_data_key(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> Result<DataKey> {
        // Trust is checked before the cache, so a cache can never widen what is accepted.
        if !self.inner.trusts(kek) {
            return self.inner.unwrap_data_key(kek, wrapped, ctx).await;
        }
        let k = cache_key(kek, wrapped, ctx);
        if let Some(hit) = self.lookup(&k) {
            bump(&self.stats.cache_hits);
            return Ok(hit);
        }
        self.sweep();
        let flight = {
            let mut flights = self.flights.lock().map_err(|_| crate::error::Error::internal("cache lock poisoned"))?;
            let flight = match flights.get(&k) {
                Some(f) => f.clone(),
                None => {
                    // A flight puts its key in the cache before it leaves this table (under this
                    // lock), so a second look here catches one that just landed.
                    if let Some(hit) = self.lookup(&k) {
                        bump(&self.stats.cache_hits);
                        return Ok(hit);
                    }
                    let f: Flight =
                        Arc::new(FlightState { cell: OnceCell::new(), joined: std::sync::atomic::AtomicU64::new(0) });
                    flights.insert(k, f.clone());
                    f
                }
            };
            flight.joined.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            flight
        };
        bump(&self.stats.cache_misses);
        let result = flight
            .cell
            .get_or_init(|| async {
                let key = self.inner.unwrap_data_key(kek, wrapped, ctx).await?;
                Ok(Arc::new(key))
            })
            .await
            .clone();
        self.land(&k, &flight, &result);
        result.map(|key| key.duplicate())
    }

    async fn rewrap_data_key(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> Result<(Vec<u8>, KekRef)> {
        self.inner.rewrap_data_key(kek, wrapped, ctx).await
    }

    fn forget(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.pop(&cache_key(kek, wrapped, ctx)).is_some() {
                bump(&self.stats.cache_evictions);
            }
        }
    }
}
