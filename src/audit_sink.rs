//! `onAudit`: every committed audit entry is offered to the user's function through an N-API
//! threadsafe function with a bounded queue ([`QUEUE`] entries). The offer never blocks: when the
//! queue is full (the JS thread is busy, the handler is slow) the entry is dropped and counted,
//! so a SIEM forwarder can never slow a hydrate. The database's audit log stays the record; this
//! is a copy for the log pipeline. The function is unref'd: it never keeps the process alive.

use crate::out::{js_object, ToJs};
use napi::sys;
use napi_derive::napi;
use sharevault_core::audit::{AuditEntry, AuditSink};
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// How many entries may wait for the JS thread before new ones are dropped.
pub const QUEUE: usize = 4096;

js_object! {
    /// One committed audit entry, as `onAudit` receives it.
    #[napi(object)]
    pub struct NativeAuditEvent {
        at_ms: i64 => "atMs",
        environment: String => "environment",
        actor: String => "actor",
        action: String => "action",
        address: String => "address",
        wallet_id: Option<String> => "walletId",
        purpose: Option<String> => "purpose",
        outcome: String => "outcome",
    }
}

struct Tsfn(sys::napi_threadsafe_function);
// SAFETY: N-API documents napi_call_threadsafe_function and napi_release_threadsafe_function as
// callable from any thread.
unsafe impl Send for Tsfn {}

/// The threadsafe function, `None` once N-API finalized it (environment teardown) or it was
/// released: it is only ever called under this lock, so never after it is gone.
pub struct Sink {
    tsfn: Mutex<Option<Tsfn>>,
    /// Calls of the handler that returned, and that threw (the exception is swallowed: a
    /// handler's bug must not surface in an unrelated hydrate).
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
}

impl AuditSink for Sink {
    fn offer(&self, e: &AuditEntry) -> bool {
        let guard = self.tsfn.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tsfn) = guard.as_ref() else { return false };
        let data = Box::into_raw(Box::new(e.clone())) as *mut c_void;
        // SAFETY: the function is alive (checked under the lock finalize also takes); on any
        // status but ok the entry was not queued and is ours to free.
        let status =
            unsafe { sys::napi_call_threadsafe_function(tsfn.0, data, sys::ThreadsafeFunctionCallMode::nonblocking) };
        if status != sys::Status::napi_ok {
            // SAFETY: `data` came from Box::into_raw above and was not taken by N-API.
            drop(unsafe { Box::from_raw(data as *mut AuditEntry) });
            return false;
        }
        true
    }
}

impl Sink {
    /// Lets go of the threadsafe function (the vault closed, or never opened): entries already
    /// queued are still delivered, then N-API finalizes it; later offers are dropped.
    pub fn release(&self) {
        if let Some(tsfn) = self.tsfn.lock().unwrap_or_else(PoisonError::into_inner).take() {
            // SAFETY: still alive (finalize would have taken it).
            unsafe { sys::napi_release_threadsafe_function(tsfn.0, sys::ThreadsafeFunctionReleaseMode::release) };
        }
    }
}

unsafe extern "C" fn call_js(env: sys::napi_env, js_cb: sys::napi_value, context: *mut c_void, data: *mut c_void) {
    // SAFETY: every `data` is a Box<AuditEntry> from `offer`.
    let entry = *Box::from_raw(data as *mut AuditEntry);
    if env.is_null() || js_cb.is_null() || context.is_null() {
        return;
    }
    // SAFETY: `context` is the Sink, kept alive by the strong count leaked at creation until
    // `finalize`, which runs after the last call.
    let sink = &*(context as *const Sink);
    let event = NativeAuditEvent {
        at_ms: entry.at_ms,
        environment: entry.environment,
        actor: entry.actor,
        action: entry.action.to_string(),
        address: entry.address,
        wallet_id: entry.wallet_id,
        purpose: entry.purpose,
        outcome: entry.outcome,
    };
    let mut scope = ptr::null_mut();
    if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
        return;
    }
    let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let Ok(arg) = event.to_js(env) else { return false };
        let mut undefined = ptr::null_mut();
        sys::napi_get_undefined(env, &mut undefined);
        let mut result = ptr::null_mut();
        let status = sys::napi_call_function(env, undefined, js_cb, 1, &arg, &mut result);
        if status == sys::Status::napi_ok {
            return true;
        }
        // A throwing handler: clear the exception so it does not surface elsewhere.
        let mut pending = false;
        sys::napi_is_exception_pending(env, &mut pending);
        if pending {
            let mut exception = ptr::null_mut();
            sys::napi_get_and_clear_last_exception(env, &mut exception);
        }
        false
    }));
    let counter = if called.unwrap_or(false) { &sink.delivered } else { &sink.failed };
    counter.fetch_add(1, Ordering::Relaxed);
    sys::napi_close_handle_scope(env, scope);
}

unsafe extern "C" fn finalize(_env: sys::napi_env, _data: *mut c_void, context: *mut c_void) {
    if context.is_null() {
        return;
    }
    // SAFETY: the strong count leaked in `create`; this is its one release.
    let sink = Arc::from_raw(context as *const Sink);
    sink.tsfn.lock().unwrap_or_else(PoisonError::into_inner).take();
}

/// Makes the sink for the JS function `func`, on the JS thread.
///
/// # Safety
/// `env` and `func` must be the current call's, on the JS thread.
pub unsafe fn create(env: sys::napi_env, func: sys::napi_value) -> Result<Arc<Sink>, sharevault_core::Error> {
    let fail = |what: &str| sharevault_core::Error::internal(format!("creating the onAudit queue: {what}"));
    let sink = Arc::new(Sink { tsfn: Mutex::new(None), delivered: AtomicU64::new(0), failed: AtomicU64::new(0) });
    let mut name = ptr::null_mut();
    if sys::napi_create_string_utf8(env, c"sharevault onAudit".as_ptr(), 18, &mut name) != sys::Status::napi_ok {
        return Err(fail("name"));
    }
    let context = Arc::into_raw(sink.clone()) as *mut c_void;
    let mut tsfn = ptr::null_mut();
    let status = sys::napi_create_threadsafe_function(
        env,
        func,
        ptr::null_mut(),
        name,
        QUEUE,
        1,
        ptr::null_mut(),
        Some(finalize),
        context,
        Some(call_js),
        &mut tsfn,
    );
    if status != sys::Status::napi_ok {
        // SAFETY: not handed to N-API: release the count leaked for it.
        drop(Arc::from_raw(context as *const Sink));
        return Err(fail("napi_create_threadsafe_function"));
    }
    // Never keeps the event loop (or the process) alive on its own.
    sys::napi_unref_threadsafe_function(env, tsfn);
    *sink.tsfn.lock().unwrap_or_else(PoisonError::into_inner) = Some(Tsfn(tsfn));
    Ok(sink)
}
