//! Promise settlement in batches. napi-rs's `async fn` creates (and tears down) a threadsafe
//! function for every call; under thousands of concurrent calls that per-call cost, paid on the
//! JS thread, is what delays the event loop. Here each JS thread has one long-lived threadsafe
//! function: work runs on sharevault's runtime (`crate::runtime`), each finished call queues its settlement, and one
//! callback on the JS thread settles everything queued so far. The threadsafe function is
//! referenced only while calls are in flight, so an idle vault never keeps the process alive, and
//! it is released when no call is in flight and no vault is open on the thread (a test that
//! closes its vaults leaves nothing behind: jest's `--detectOpenHandles` reports a live one); the
//! next call creates another.
//!
//! An environment can go away with calls in flight (a `worker_threads` Worker terminated or
//! calling `process.exit`). N-API then finalizes the threadsafe function and frees it; calling it
//! afterwards would abort the whole process. So every call into it happens under the `alive`
//! lock and only while the environment is alive, and the finalizer, under the same lock, marks it
//! dead and drops (zeroizes) whatever is queued. Results finished later are dropped the same way.
//! The JS thread takes settlements from a lock-free queue, never that lock, while calls are in
//! flight; it takes the lock only to release an unused threadsafe function (`retire_if_unused`),
//! when no call is in flight and so no producer can hold or want it.
//!
//! Written by hand because no crate offers this: it sits directly on N-API's threadsafe-function
//! and deferred primitives.

use crate::error::to_napi;
use crossbeam_queue::SegQueue;
use futures_util::FutureExt;
use napi::bindgen_prelude::{ToNapiValue, TypeName, ValueType};
use napi::sys;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::c_void;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

type Settlement = Box<dyn FnOnce(sys::napi_env) + Send>;

/// What the runtime threads and the JS thread share. The JS thread never takes a lock a runtime
/// thread may hold: those run at a lower priority (`crate::runtime`), and the event loop was
/// measured waiting on this queue's mutex while a preempted worker held it (perf, bench/README.md).
struct Shared {
    /// Finished calls waiting for the JS thread (lock-free).
    queue: SegQueue<Settlement>,
    /// A drain is scheduled (the threadsafe function was called) and has not started yet.
    scheduled: AtomicBool,
    /// False once N-API has finalized the threadsafe function: nothing may call it any more. Held
    /// by producers while they queue and call it, and by `finalize`; never by a drain.
    alive: Mutex<bool>,
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
    /// Settlements taken from the queue and not yet run (see [`run_turn`]).
    pending: VecDeque<Settlement>,
    /// A turn is scheduled with `setImmediate` and has not run yet.
    resume_scheduled: bool,
    /// Vaults opened on this thread and not closed: while there is one, the threadsafe function
    /// is kept between calls (a service pays for it once).
    vaults: usize,
}

/// How many promises one turn of the event loop settles at most, and for how long. Each
/// settlement builds its result and, in the microtasks right after, runs the caller's
/// continuation (which often starts the next call): tens of microseconds each. All finished calls
/// in one turn (up to 64 with 64 in flight) kept the event loop for milliseconds; in turns this
/// size, timers and I/O run between them (bench/README.md, "Where the time goes").
const TURN_BUDGET: usize = 8;
const TURN_TIME: Duration = Duration::from_micros(200);

/// `setImmediate` from `node:timers`, handed over by the facade (`useScheduler`): the real one,
/// which a test's fake timers (they replace the global's) never hold back. Per environment.
struct Scheduler {
    env: sys::napi_env,
    set_immediate: sys::napi_ref,
    resume: sys::napi_ref,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
    static SCHEDULER: RefCell<Option<Scheduler>> = const { RefCell::new(None) };
}

fn ok(status: sys::napi_status) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(napi::Status::GenericFailure, "N-API call failed while settling a promise"))
    }
}

fn alive(shared: &Shared) -> MutexGuard<'_, bool> {
    // A panic while the lock was held cannot leave the flag half-changed: keep using it.
    shared.alive.lock().unwrap_or_else(PoisonError::into_inner)
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
    // Reset before taking (acquiring what the producers queued): a settlement queued from now on
    // schedules a drain of its own.
    shared.scheduled.swap(false, Ordering::AcqRel);
    // What is queued now, not what arrives while this runs (that has its own drain).
    let n = shared.queue.len();
    let taken: Vec<Settlement> = std::iter::from_fn(|| shared.queue.pop()).take(n).collect();
    let empty = taken.is_empty();
    with_local(|local| local.pending.extend(taken));
    if empty {
        // A wake-up whose settlements an earlier drain already took: no turn to schedule.
        return;
    }
    // With a scheduler, every settlement runs in a turn of its own budget from `setImmediate`,
    // never here: a turn queued from inside `setImmediate` waits for the next loop iteration, so
    // timers and I/O run between turns. Without one (the binding used without the facade), or
    // if scheduling fails, everything is settled now.
    if !schedule_turn(env) {
        while run_turn(env, usize::MAX) {}
    }
}

fn with_local<T>(f: impl FnOnce(&mut Local) -> T) -> Option<T> {
    LOCAL.with(|l| l.borrow_mut().as_mut().map(f))
}

/// Runs up to `budget` pending settlements (and at most [`TURN_TIME`]); whether any are left.
unsafe fn run_turn(env: sys::napi_env, budget: usize) -> bool {
    let started = Instant::now();
    let mut done = 0usize;
    while done < budget && (done == 0 || budget == usize::MAX || started.elapsed() < TURN_TIME) {
        // The borrow ends before the settlement runs.
        let Some(settle) = with_local(|local| local.pending.pop_front()).flatten() else { break };
        let mut scope = ptr::null_mut();
        if sys::napi_open_handle_scope(env, &mut scope) == sys::Status::napi_ok {
            // A settlement catches its own panics (and rejects); this only keeps a panic from
            // unwinding into N-API should one escape anyway.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| settle(env)));
            sys::napi_close_handle_scope(env, scope);
        }
        done += 1;
    }
    let more = with_local(|local| {
        settled(env, local, done);
        !local.pending.is_empty()
    })
    .unwrap_or(false);
    retire_if_unused(env);
    more
}

/// Counts `n` calls out of flight; the threadsafe function stops keeping the process alive when
/// none is left (JS thread only).
unsafe fn settled(env: sys::napi_env, local: &mut Local, n: usize) {
    local.in_flight = local.in_flight.saturating_sub(n);
    if local.in_flight == 0 {
        sys::napi_unref_threadsafe_function(env, local.shared.tsfn());
    }
}

/// A vault's handle now exists on this thread (JS thread only, from its open's settlement).
///
/// # Safety
/// On the JS thread of `env`.
pub unsafe fn vault_opened(env: sys::napi_env) {
    with_local(|local| {
        if local.env == env {
            local.vaults += 1;
        }
    });
}

/// A vault of this thread closed (JS thread only, from its close's settlement, once per vault).
///
/// # Safety
/// On the JS thread of `env`.
pub unsafe fn vault_closed(env: sys::napi_env) {
    with_local(|local| {
        if local.env == env {
            local.vaults = local.vaults.saturating_sub(1);
        }
    });
}

/// Releases the thread's threadsafe function when nothing uses it: no call in flight (so nothing
/// is queued or can be: every call of this `Shared` has settled), nothing pending, no vault open.
/// The slot is emptied first, so the next call creates a new one; N-API then finalizes the old
/// one on the loop (`finalize`, which finds the slot no longer its own).
unsafe fn retire_if_unused(env: sys::napi_env) {
    let unused = LOCAL.with(|l| {
        let mut slot = l.borrow_mut();
        if slot.as_ref().is_some_and(|local| {
            local.env == env
                && local.in_flight == 0
                && local.vaults == 0
                && local.pending.is_empty()
                && !local.resume_scheduled
        }) {
            slot.take()
        } else {
            None
        }
    });
    let Some(local) = unused else { return };
    let mut alive = alive(&local.shared);
    if *alive {
        // Under the lock producers call it under: none is between its check and its call.
        *alive = false;
        sys::napi_release_threadsafe_function(local.shared.tsfn(), sys::ThreadsafeFunctionReleaseMode::release);
    }
}

/// `setImmediate(resume)` unless a turn is already scheduled; false if there is no scheduler or
/// the call failed (then nothing is scheduled).
unsafe fn schedule_turn(env: sys::napi_env) -> bool {
    if with_local(|local| local.resume_scheduled) == Some(true) {
        return true;
    }
    let refs = SCHEDULER.with(|s| s.borrow().as_ref().filter(|s| s.env == env).map(|s| (s.set_immediate, s.resume)));
    let Some((set_immediate, resume)) = refs else { return false };
    let (mut func, mut cb, mut global, mut out) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
    let called = sys::napi_get_reference_value(env, set_immediate, &mut func) == sys::Status::napi_ok
        && sys::napi_get_reference_value(env, resume, &mut cb) == sys::Status::napi_ok
        && !func.is_null()
        && !cb.is_null()
        && sys::napi_get_global(env, &mut global) == sys::Status::napi_ok
        && sys::napi_call_function(env, global, func, 1, &cb, &mut out) == sys::Status::napi_ok;
    if !called {
        // A throwing `setImmediate` leaves an exception pending: it is not the caller's.
        let mut pending = false;
        if sys::napi_is_exception_pending(env, &mut pending) == sys::Status::napi_ok && pending {
            let mut exc = ptr::null_mut();
            sys::napi_get_and_clear_last_exception(env, &mut exc);
        }
        return false;
    }
    with_local(|local| local.resume_scheduled = true);
    true
}

/// What `setImmediate` calls: one turn's settlements, and the next turn if more are left.
unsafe extern "C" fn resume(env: sys::napi_env, _info: sys::napi_callback_info) -> sys::napi_value {
    with_local(|local| local.resume_scheduled = false);
    if run_turn(env, TURN_BUDGET) && !schedule_turn(env) {
        while run_turn(env, usize::MAX) {}
    }
    ptr::null_mut()
}

/// Called once per environment by the facade with `setImmediate` from `node:timers`.
///
/// # Safety
/// On the JS thread, with `set_immediate` a value of this call's scope.
pub unsafe fn use_scheduler(env: sys::napi_env, set_immediate: sys::napi_value) -> napi::Result<()> {
    let mut kind = 0;
    ok(sys::napi_typeof(env, set_immediate, &mut kind))?;
    if kind != sys::ValueType::napi_function {
        return Err(napi::Error::new(napi::Status::InvalidArg, "setImmediate must be a function"));
    }
    let mut cb = ptr::null_mut();
    ok(sys::napi_create_function(env, c"sharevaultSettle".as_ptr(), 16, Some(resume), ptr::null_mut(), &mut cb))?;
    let (mut r1, mut r2) = (ptr::null_mut(), ptr::null_mut());
    ok(sys::napi_create_reference(env, set_immediate, 1, &mut r1))?;
    ok(sys::napi_create_reference(env, cb, 1, &mut r2))?;
    SCHEDULER.with(|s| {
        // A worker's environment, or a second call: the newest one is this thread's. A previous
        // environment's references die with it.
        *s.borrow_mut() = Some(Scheduler { env, set_immediate: r1, resume: r2 });
    });
    Ok(())
}

/// Called by N-API when the threadsafe function is being deleted: on environment teardown (a
/// worker exiting, `process.exit`), on the JS thread, before its memory is freed.
unsafe extern "C" fn finalize(_env: sys::napi_env, _data: *mut c_void, context: *mut c_void) {
    if context.is_null() {
        return;
    }
    // SAFETY: `context` is the strong count leaked in `local_shared`; this is its one release.
    let shared = Arc::from_raw(context as *const Shared);
    *alive(&shared) = false;
    // No producer queues any more. Nobody can receive these results: dropping them zeroizes any
    // plaintext they hold.
    while let Some(orphan) = shared.queue.pop() {
        drop(orphan);
    }
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
        let shared = Arc::new(Shared {
            queue: SegQueue::new(),
            scheduled: AtomicBool::new(false),
            alive: Mutex::new(true),
            tsfn: OnceLock::new(),
        });
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
        *slot = Some(Local {
            env,
            shared: shared.clone(),
            in_flight: 1,
            pending: VecDeque::new(),
            resume_scheduled: false,
            vaults: 0,
        });
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
    let alive = alive(shared);
    if !*alive {
        // The JS thread's environment is gone (worker terminated, process exiting).
        drop(alive);
        drop(settle);
        return;
    }
    shared.queue.push(settle);
    if !shared.scheduled.swap(true, Ordering::AcqRel) {
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
    with_local(|local| {
        if local.env == env {
            settled(env, local, 1);
        }
    });
    retire_if_unused(env);
}
