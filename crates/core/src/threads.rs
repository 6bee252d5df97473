//! How the vault's own threads (the async runtime's workers and blocking pool, the SQLite writer)
//! share the CPU with their host. A Node host runs its whole application on one JavaScript
//! thread; when the vault's threads compete with it for the cores, the event loop waits for them
//! (measured: `bench/README.md`, "Where the time goes"). So every thread the vault starts lowers
//! its own scheduling priority (a positive nice value) when it starts: it still gets every cycle
//! the host leaves idle, but the JavaScript thread is scheduled first when it wakes.
//!
//! Linux only: there, `setpriority(PRIO_PROCESS, tid)` applies to one thread. Elsewhere (where
//! the call would change the whole process) the threads keep the normal priority.

use std::sync::atomic::{AtomicI32, Ordering};

/// The nice value of the vault's threads unless configured otherwise (see [`set_nice`]).
pub const DEFAULT_NICE: i32 = 10;
/// The highest (least favoured) nice value Linux has.
pub const MAX_NICE: i32 = 19;

static NICE: AtomicI32 = AtomicI32::new(DEFAULT_NICE);

/// Sets the nice value (0..=19, 0 = the host's own priority) threads started from now on take.
/// Out-of-range values are clamped; callers check their input first.
pub fn set_nice(nice: i32) {
    NICE.store(nice.clamp(0, MAX_NICE), Ordering::Relaxed);
}

/// The nice value threads take when they start.
pub fn nice() -> i32 {
    NICE.load(Ordering::Relaxed)
}

/// Called first thing on every thread the vault starts. A refusal by the OS is not an error: the
/// thread runs at the priority it has.
pub fn started() {
    let n = nice();
    if n == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread's own id; nothing is shared.
    unsafe {
        let tid = libc::gettid();
        // The priority only ever goes down: a thread never raises itself above its creator.
        let current = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        if current < n {
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, n);
        }
    }
}

/// The calling thread's nice value (Linux; 0 elsewhere). For tests and `stats()`.
pub fn current_nice() -> i32 {
    #[cfg(target_os = "linux")]
    // SAFETY: a read of the calling thread's own priority.
    unsafe {
        libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t)
    }
    #[cfg(not(target_os = "linux"))]
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_started_thread_lowers_its_priority_and_never_raises_it() {
        set_nice(7);
        let lowered = std::thread::spawn(|| {
            started();
            current_nice()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, 7);
        // A thread already below the configured priority stays there.
        let kept = std::thread::spawn(|| {
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 12) };
            started();
            current_nice()
        })
        .join()
        .unwrap();
        assert_eq!(kept, 12);
        set_nice(DEFAULT_NICE);
    }
}
