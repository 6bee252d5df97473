//! The async runtime every vault call runs on: sharevault's own, sized and prioritised for the
//! machine, because the host's JavaScript thread must keep the CPU it needs (measured in
//! `bench/README.md`, "Where the time goes": with napi-rs's default runtime, one worker per core
//! at the host's priority, the event loop waited behind the vault's threads).
//!
//! - Workers: one fewer than the cores the process may use (at least one), so that with every
//!   worker busy a core is still free for the JavaScript thread. `SHAREVAULT_THREADS` overrides.
//! - Priority: every runtime thread (workers and blocking pool) and the SQLite writer take nice
//!   [`threads::DEFAULT_NICE`] when they start (`sharevault_core::threads`). `SHAREVAULT_NICE`
//!   overrides (0 keeps the host's priority).
//!
//! Built on the first call, once per process, and never shut down: it outlives any one Node
//! environment (worker threads come and go), so the image is pinned first, as napi-rs does for
//! its own runtime.

use sharevault_core::{threads, Error};
use std::future::Future;
use std::sync::OnceLock;
use tokio::runtime::{Builder, Runtime};

/// Upper bound of `SHAREVAULT_THREADS`.
const MAX_THREADS: usize = 256;
/// Scans, file opens and migrations run on the blocking pool; more than this wait their turn.
const MAX_BLOCKING_THREADS: usize = 16;

/// What the runtime was built with, for `stats()`.
#[derive(Clone, Copy)]
pub struct Shape {
    pub worker_threads: usize,
    pub nice: i32,
}

static RUNTIME: OnceLock<Result<(Runtime, Shape), Error>> = OnceLock::new();

fn env_number(name: &'static str, min: i64, max: i64) -> Result<Option<i64>, Error> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(Error::invalid(name, format!("must be an integer from {min} to {max}")))
        }
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => match v.trim().parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            // The value is the operator's own setting, not a secret, but it is not echoed either.
            _ => Err(Error::invalid(name, format!("must be an integer from {min} to {max}"))),
        },
    }
}

/// The shape from the environment and the machine.
fn shape() -> Result<Shape, Error> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let worker_threads = match env_number("SHAREVAULT_THREADS", 1, MAX_THREADS as i64)? {
        Some(n) => n as usize,
        None => cores.saturating_sub(1).max(1),
    };
    let nice = match env_number("SHAREVAULT_NICE", 0, threads::MAX_NICE as i64)? {
        Some(n) => n as i32,
        None => threads::DEFAULT_NICE,
    };
    Ok(Shape { worker_threads, nice })
}

fn build() -> Result<(Runtime, Shape), Error> {
    let shape = shape()?;
    threads::set_nice(shape.nice);
    napi::bindgen_prelude::retain_current_module_for_unload_safety();
    let rt = Builder::new_multi_thread()
        .worker_threads(shape.worker_threads)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_name("sharevault-rt")
        .on_thread_start(threads::started)
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("starting the runtime: {e}")))?;
    Ok((rt, shape))
}

fn runtime() -> Result<&'static (Runtime, Shape), Error> {
    RUNTIME.get_or_init(build).as_ref().map_err(Clone::clone)
}

/// Runs `fut` on the runtime; an error if the runtime cannot start (a bad `SHAREVAULT_THREADS`
/// or `SHAREVAULT_NICE`: `ERR_INVALID_INPUT` naming it), and then `fut` is dropped unrun.
pub fn spawn<F>(fut: F) -> Result<(), Error>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (rt, _) = runtime()?;
    drop(rt.spawn(fut));
    Ok(())
}

/// The runtime's shape, once it has started.
pub fn started_shape() -> Option<Shape> {
    RUNTIME.get().and_then(|r| r.as_ref().ok()).map(|(_, s)| *s)
}
