//! Keeping plaintext out of swap and core dumps, where the OS allows it: every page that has held
//! a secret ([`crate::SecretBuf`], [`crate::DataKey`]) is locked in RAM (`mlock`) and excluded
//! from core dumps (`MADV_DONTDUMP`) from the moment the secret is allocated, and stays so for the
//! life of the process; [`harden_process`] makes the whole process non-dumpable
//! (`PR_SET_DUMPABLE 0`, which also keeps other users' ptrace out).
//!
//! Secrets are small heap allocations that share pages with each other and with other data. Pages
//! are never unlocked: unlocking (and `MADV_DODUMP`) when a page's last secret is gone changes the
//! memory map under its write lock on every hydrate, which stalls every thread's page faults and
//! was measured to cost a third of hydrate throughput and to push the event loop's p99 from 4 to
//! 17 ms; the allocator reuses the same pages for the next secrets, so after warm-up the set of
//! locked pages stops growing and a protect is a set lookup. Zeroizing a secret on drop stays its
//! owner's job. Written by hand because the crates that do this (`memsec`, `secrets`,
//! libsodium's `sodium_malloc`) give every secret its own guarded pages, several system calls per
//! allocation on the hydrate path.
//!
//! A lock the OS refuses (RLIMIT_MEMLOCK reached, no CAP_IPC_LOCK) is not an error: the secret is
//! still zeroized on drop, and the refusal is counted ([`status`]) so `stats()` can say so.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

static PAGES: Mutex<Option<HashSet<usize>>> = Mutex::new(None);
static LOCK_FAILURES: AtomicU64 = AtomicU64::new(0);
static DONTDUMP_FAILURES: AtomicU64 = AtomicU64::new(0);
static LOCKED_ONCE: AtomicBool = AtomicBool::new(false);
static DONTDUMP_ONCE: AtomicBool = AtomicBool::new(false);
static NON_DUMPABLE: AtomicBool = AtomicBool::new(false);

/// Which protections are in force, for `stats()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Protections {
    /// Secret pages are locked in RAM (some lock succeeded and none was refused).
    pub mlock: bool,
    /// Secret pages are excluded from core dumps.
    pub dont_dump: bool,
    /// The process is not dumpable (`hardenProcess`).
    pub non_dumpable: bool,
    /// Locks the OS refused (RLIMIT_MEMLOCK): those secrets were in swappable memory.
    pub mlock_failures: u64,
    /// Pages locked (every page that has held a secret).
    pub locked_pages: u64,
}

#[cfg(target_os = "linux")]
fn page_size() -> usize {
    use std::sync::OnceLock;
    static SIZE: OnceLock<usize> = OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *SIZE.get_or_init(|| usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1))
}

#[cfg(target_os = "linux")]
fn pages(ptr: *const u8, len: usize) -> impl Iterator<Item = usize> {
    let size = page_size();
    let start = (ptr as usize) & !(size - 1);
    let end = (ptr as usize).saturating_add(len.max(1));
    (start..end).step_by(size)
}

/// Protects the pages of `[ptr, ptr + len)` (before any secret byte is written there): locks
/// them and marks them not-to-dump, unless an earlier secret already did. `len == 0` (no
/// allocation) does nothing.
pub fn protect(ptr: *const u8, len: usize) {
    #[cfg(target_os = "linux")]
    if len > 0 {
        let mut guard = PAGES.lock().unwrap_or_else(PoisonError::into_inner);
        let set = guard.get_or_insert_with(HashSet::new);
        for page in pages(ptr, len) {
            if set.insert(page) {
                // SAFETY: `page` is the start of a mapped page holding part of a live allocation;
                // mlock and madvise do not change its contents.
                unsafe {
                    if libc::mlock(page as *const libc::c_void, page_size()) == 0 {
                        LOCKED_ONCE.store(true, Ordering::Relaxed);
                    } else {
                        LOCK_FAILURES.fetch_add(1, Ordering::Relaxed);
                    }
                    if libc::madvise(page as *mut libc::c_void, page_size(), libc::MADV_DONTDUMP) == 0 {
                        DONTDUMP_ONCE.store(true, Ordering::Relaxed);
                    } else {
                        DONTDUMP_FAILURES.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

/// Makes the process non-dumpable (no core dump, no ptrace attach by other users, no
/// `/proc/<pid>/mem` for them). Returns whether the OS agreed.
pub fn harden_process() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl(PR_SET_DUMPABLE, 0) has no memory-safety preconditions.
        let ok = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } == 0;
        if ok {
            NON_DUMPABLE.store(true, Ordering::Relaxed);
        }
        ok
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// The protections in force now.
pub fn status() -> Protections {
    let failures = LOCK_FAILURES.load(Ordering::Relaxed);
    let locked_pages = PAGES.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map_or(0, |m| m.len() as u64);
    Protections {
        mlock: LOCKED_ONCE.load(Ordering::Relaxed) && failures == 0,
        dont_dump: DONTDUMP_ONCE.load(Ordering::Relaxed) && DONTDUMP_FAILURES.load(Ordering::Relaxed) == 0,
        non_dumpable: NON_DUMPABLE.load(Ordering::Relaxed),
        mlock_failures: failures,
        locked_pages,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The `VmFlags` and `Locked:` lines of the mapping of /proc/self/smaps that holds `addr`.
    fn mapping_of(addr: usize) -> (String, u64) {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        let (mut flags, mut locked) = (String::new(), 0);
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((a, b)) = range.split_once('-') {
                    if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                        inside = a <= addr && addr < b;
                        continue;
                    }
                }
            }
            if inside {
                if let Some(v) = line.strip_prefix("Locked:") {
                    locked = v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
                }
                if let Some(v) = line.strip_prefix("VmFlags:") {
                    flags = v.to_string();
                }
            }
        }
        (flags, locked)
    }

    #[test]
    fn a_secrets_page_is_locked_and_not_dumped_and_stays_so() {
        let key = crate::DataKey::generate();
        let addr = key.expose().as_ptr() as usize;
        let (flags, locked) = mapping_of(addr);
        assert!(flags.split_whitespace().any(|f| f == "dd"), "not excluded from dumps: {flags}");
        assert!(locked > 0 || status().mlock_failures > 0, "neither locked nor counted as refused");
        let mut buf = crate::SecretBuf::with_capacity(10_000);
        buf.extend_from_slice(&[7u8; 10_000]);
        let (flags, _) = mapping_of(buf.as_slice().as_ptr() as usize + 9_999);
        assert!(flags.split_whitespace().any(|f| f == "dd"), "a share buffer's last page: {flags}");
        drop(key);
        // The next secret on the page finds it protected already: no system call, no map change.
        assert!(mapping_of(addr).0.split_whitespace().any(|f| f == "dd"));
        assert!(status().locked_pages >= 1);
    }
}
