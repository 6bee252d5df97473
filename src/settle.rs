//! Promise settlement in batches. napi-rs's `async fn` creates (and tears down) a threadsafe
//! function for every call; under thousands of concurrent calls that per-call cost, paid on the
//! JS thread, is what delays the event loop. Here each JS thread has one long-lived threadsafe
//! function: work runs on sharevault's runtime (`crate::runtime`), each finished call queues its settlement, and one
//! callback on the JS thread settles everything queued so far. The threadsafe function is
//! referenced only while calls are in flight, so an idle vault never keeps the process alive.
//!
//! An environment can go away with calls in flight (a `worker_threads` Worker terminated or
//! calling `process.exit`). N-API then finalizes the threadsafe function and frees it; calling it
//! afterwards would abort the whole process. So every call into it happens under the queue's
//! lock and only while the environment is alive, and the finalizer, under the same lock, marks it
//! dead and drops (zeroizes) whatever is queued. Results finished later are dropped the same way.
//!
//! Written by hand because no crate offers this: it sits directly on N-API's threadsafe-function
//! and deferred primitives.

use crate::error::to_napi;
use futures_util::FutureExt;
use napi::bindgen_prelude::{ToNapiValue, TypeName, ValueType};
use napi::sys;
use std::cell::RefCell;
use std::ffi::c_void;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

type Settlement = Box<dyn FnOnce(sys::napi_env) + Send>;

/// What the runtime threads and the JS thread share, under one lock.
struct State {
    /// False once N-API has finalized the threadsafe function: nothing may call it any more.
    alive: bool,
    queue: Vec<Settlement>,
}

struct Shared {
    state: Mutex<State>,
    tsfn: OnceLock<TsfnPtr>,
}

impl Shared {
    fn tsfn(&self) -> sys::napi_threadsafe_function {
        self.tsfn.get().map_or(ptr::null_mut(), |t| t.0)
    }
}

#[derive(Clone, Copy)]
struct TsfnPtr(sys::napi_threadsafe_function);
// SAFETY: N-API documents napi_call_threadsafe_function as callable from any thread.
unsafe impl Send for TsfnPtr {}
unsafe impl Sync for TsfnPtr {}

#[derive(Clone, Copy)]
struct DeferredPtr(sys::napi_deferred);
// SAFETY: the pointer is only dereferenced by N-API on the JS thread that created it.
unsafe impl Send for DeferredPtr {}

/// The per-JS-thread state: the shared queue, and how many calls are in flight (JS thread only).
struct Local {
    env: sys::napi_env,
    shared: Arc<Shared>,
    in_flight: usize,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

fn ok(status: sys::napi_status) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(napi::Status::GenericFailure, "N-API call failed while settling a promise"))
    }
}

fn state(shared: &Shared) -> MutexGuard<'_, State> {
    // A panic while the lock was held cannot leave the state half-changed: keep using it.
    shared.state.lock().unwrap_or_else(PoisonError::into_inner)
}

unsafe extern "C" fn drain(env: sys::napi_env, _js_cb: sys::napi_value, context: *mut c_void, _data: *mut c_void) {
    if env.is_null() || context.is_null() {
        // N-API is emptying the queue of a threadsafe function being deleted, after `finalize`
        // has already dropped our queue (and possibly the context): touch nothing.
        return;
    }
    // SAFETY: `context` holds a strong count of `Shared` until `finalize`, which runs after the
    // last call of `drain` with a live environment.
    let shared = &*(context as *const Shared);
    let batch: Vec<Settlement> = std::mem::take(&mut state(shared).queue);
    let n = batch.len();
    for settle in batch {
        let mut scope = ptr::null_mut();
        if sys::napi_open_handle_scope(env, &mut scope) == sys::Status::napi_ok {
            // A settlement catches its own panics (and rejects); this only keeps a panic from
            // unwinding into N-API should one escape anyway.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| settle(env)));
            sys::napi_close_handle_scope(env, scope);
        }
    }
    LOCAL.with(|l| {
        if let Some(local) = l.borrow_mut().as_mut() {
            local.in_flight = local.in_flight.saturating_sub(n);
            if local.in_flight == 0 {
                sys::napi_unref_threadsafe_function(env, shared.tsfn());
            }
        }
    });
}

/// Called by N-API when the threadsafe function is being deleted: on environment teardown (a
/// worker exiting, `process.exit`), on the JS thread, before its memory is freed.
unsafe extern "C" fn finalize(_env: sys::napi_env, _data: *mut c_void, context: *mut c_void) {
    if context.is_null() {
        return;
    }
    // SAFETY: `context` is the strong count leaked in `local_shared`; this is its one release.
    let shared = Arc::from_raw(context as *const Shared);
    let orphans = {
        let mut st = state(&shared);
        st.alive = false;
        std::mem::take(&mut st.queue)
    };
    // Nobody can receive these results any more: dropping them zeroizes any plaintext they hold.
    drop(orphans);
    LOCAL.with(|l| {
        if let Ok(mut slot) = l.try_borrow_mut() {
            if slot.as_ref().is_some_and(|local| Arc::ptr_eq(&local.shared, &shared)) {
                *slot = None;
            }
        }
    });
}

unsafe fn local_shared(env: sys::napi_env) -> napi::Result<Arc<Shared>> {
    LOCAL.with(|l| {
        let mut slot = l.borrow_mut();
        if let Some(local) = slot.as_mut() {
            if local.env == env {
                if local.in_flight == 0 {
                    ok(sys::napi_ref_threadsafe_function(env, local.shared.tsfn()))?;
                }
                local.in_flight += 1;
                return Ok(local.shared.clone());
            }
        }
        let mut name = ptr::null_mut();
        ok(sys::napi_create_string_utf8(env, c"sharevault".as_ptr(), 10, &mut name))?;
        // The context must exist before the threadsafe function does; the pointer is filled in
        // right after creation, before anything can be queued.
        let shared =
            Arc::new(Shared { state: Mutex::new(State { alive: true, queue: Vec::new() }), tsfn: OnceLock::new() });
        let context = Arc::into_raw(shared.clone()) as *mut c_void;
        let mut tsfn = ptr::null_mut();
        let created = ok(sys::napi_create_threadsafe_function(
            env,
            ptr::null_mut(),
            ptr::null_mut(),
            name,
            0,
            1,
            ptr::null_mut(),
            Some(finalize),
            context,
            Some(drain),
            &mut tsfn,
        ));
        if let Err(e) = created {
            // SAFETY: not handed to N-API: release the count leaked for it.
            drop(Arc::from_raw(context as *const Shared));
            return Err(e);
        }
        let _ = shared.tsfn.set(TsfnPtr(tsfn));
        *slot = Some(Local { env, shared: shared.clone(), in_flight: 1 });
        Ok(shared)
    })
}

/// A promise created by [`spawn_settled`], returned to JS as is.
pub struct PromiseValue(sys::napi_value);

impl TypeName for PromiseValue {
    fn type_name() -> &'static str {
        "Promise"
    }
    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl ToNapiValue for PromiseValue {
    unsafe fn to_napi_value(_env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        Ok(val.0)
    }
}

/// Rejects with the pending JS exception if one was raised (by a setter, say), else with `err`.
unsafe fn reject(env: sys::napi_env, deferred: sys::napi_deferred, err: napi::Error) {
    let mut pending = false;
    if sys::napi_is_exception_pending(env, &mut pending) == sys::Status::napi_ok && pending {
        let mut exc = ptr::null_mut();
        if sys::napi_get_and_clear_last_exception(env, &mut exc) == sys::Status::napi_ok {
            sys::napi_reject_deferred(env, deferred, exc);
            return;
        }
    }
    let mut msg = ptr::null_mut();
    let text = err.reason.as_str();
    let mut error = ptr::null_mut();
    if sys::napi_create_string_utf8(env, text.as_ptr() as *const _, text.len() as isize, &mut msg)
        == sys::Status::napi_ok
        && sys::napi_create_error(env, ptr::null_mut(), msg, &mut error) == sys::Status::napi_ok
    {
        sys::napi_reject_deferred(env, deferred, error);
    }
}

/// Runs `fut` on the runtime (`crate::runtime`) and returns a promise that settles with `convert(value)` (on
/// the JS thread) or with the core error.
pub fn spawn_settled<T, F, C>(env: sys::napi_env, fut: F, convert: C) -> napi::Result<PromiseValue>
where
    T: Send + 'static,
    F: Future<Output = sharevault_core::Result<T>> + Send + 'static,
    C: FnOnce(sys::napi_env, T) -> napi::Result<sys::napi_value> + Send + 'static,
{
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    // SAFETY: called on the JS thread with its env (from a #[napi] method).
    unsafe {
        ok(sys::napi_create_promise(env, &mut deferred, &mut promise))?;
    }
    let shared = unsafe { local_shared(env)? };
    let deferred = DeferredPtr(deferred);
    // One task per call. A panic in the work is caught around each poll and still settles the
    // promise (with an internal error) instead of leaving it pending and the process unable to
    // exit.
    let task = async move {
        let result = AssertUnwindSafe(fut)
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(sharevault_core::Error::internal("the operation panicked")));
        queue(&shared, settlement(deferred, result, convert));
    };
    if let Err(e) = crate::runtime::spawn(task) {
        // The runtime could not start: this call's promise is settled here, on the JS thread.
        // SAFETY: on the JS thread; `deferred` is this call's, not yet settled.
        unsafe {
            reject(env, deferred.0, to_napi(e));
            release_one(env);
        }
    }
    Ok(PromiseValue(promise))
}

/// What settles one call's promise on the JS thread: `convert(value)` or the core error.
fn settlement<T, C>(deferred: DeferredPtr, result: sharevault_core::Result<T>, convert: C) -> Settlement
where
    T: Send + 'static,
    C: FnOnce(sys::napi_env, T) -> napi::Result<sys::napi_value> + Send + 'static,
{
    Box::new(move |env| {
        let d = deferred;
        // SAFETY: runs on the JS thread inside `drain`, within a handle scope.
        unsafe {
            let built = crate::panic::contained("building the result", || {
                result.map_err(to_napi).and_then(|v| convert(env, v))
            });
            match built {
                Ok(value) => {
                    if sys::napi_resolve_deferred(env, d.0, value) != sys::Status::napi_ok {
                        reject(env, d.0, napi::Error::new(napi::Status::GenericFailure, "settling failed"));
                    }
                }
                Err(e) => reject(env, d.0, e),
            }
        }
    })
}

/// Queues a settlement for the JS thread, waking it if the queue was empty. Dropped (zeroizing
/// what it holds) if the JS thread's environment is gone.
fn queue(shared: &Shared, settle: Settlement) {
    let mut st = state(shared);
    if !st.alive {
        // The JS thread's environment is gone (worker terminated, process exiting).
        drop(st);
        drop(settle);
        return;
    }
    st.queue.push(settle);
    if st.queue.len() == 1 {
        // SAFETY: `alive` is checked and the call made under the lock `finalize` takes before
        // N-API frees the threadsafe function, so it is never called after that.
        unsafe {
            sys::napi_call_threadsafe_function(
                shared.tsfn(),
                ptr::null_mut(),
                sys::ThreadsafeFunctionCallMode::nonblocking,
            );
        }
    }
}

/// Undoes `local_shared`'s count for a call that never ran (JS thread only).
unsafe fn release_one(env: sys::napi_env) {
    LOCAL.with(|l| {
        if let Some(local) = l.borrow_mut().as_mut() {
            if local.env == env {
                local.in_flight = local.in_flight.saturating_sub(1);
                if local.in_flight == 0 {
                    sys::napi_unref_threadsafe_function(env, local.shared.tsfn());
                }
            }
        }
    });
}
