//! When the OS refuses to lock a secret's page (RLIMIT_MEMLOCK reached, no CAP_IPC_LOCK), nothing
//! fails: the refusal is counted for `stats()` and the secret is still sealed, opened and zeroized.
//! Its own test binary (a process of its own), because it lowers this process's limits and makes it
//! non-dumpable for good.

#[cfg(target_os = "linux")]
#[test]
fn a_refused_lock_is_counted_and_nothing_fails() {
    use sharevault_core::envelope::{self, Binding};
    use sharevault_core::{memlock, DataKey};

    // Root locks past any limit (CAP_IPC_LOCK): drop the capability from the effective set first.
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const CAP_IPC_LOCK: u32 = 14;
    let mut header = Header { version: 0x2008_0522, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data slots, as capabilities(7) documents.
    unsafe {
        assert_eq!(libc::syscall(libc::SYS_capget, &mut header as *mut Header, data.as_mut_ptr()), 0);
        data[0].effective &= !(1 << CAP_IPC_LOCK);
        assert_eq!(libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()), 0);
        let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        assert_eq!(libc::setrlimit(libc::RLIMIT_MEMLOCK, &none), 0);
    }
    let key = DataKey::generate();
    let binding = Binding { environment: "t", wallet_id: "w", address_key: "0xab", chain_name: "EVM", generation: 1 };
    let (nonce, ct) = envelope::seal(&key, &binding, b"share").unwrap();
    assert_eq!(envelope::open(&key, &binding, &nonce, &ct).unwrap().as_slice(), b"share");
    let s = memlock::status();
    assert!(s.mlock_failures > 0, "{s:?}");
    assert!(!s.mlock, "{s:?}");
    assert!(s.dont_dump, "exclusion from dumps needs no privilege: {s:?}");
    // And `hardenProcess`: the process is no longer dumpable.
    assert!(memlock::harden_process());
    // SAFETY: PR_GET_DUMPABLE has no arguments to get wrong.
    assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 0);
    assert!(memlock::status().non_dumpable);
}
