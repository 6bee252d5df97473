//! Panics: a defect in sharevault must reach JavaScript as an `ERR_INTERNAL` error, never abort
//! the user's server and never print what the panic carried. The release profile unwinds
//! (`panic = "unwind"`, set deliberately in Cargo.toml); every exported function is
//! `#[napi(catch_unwind)]`; work on the runtime runs in its own task, whose panic settles the
//! promise with `ERR_INTERNAL` (`settle.rs`); and the JS-thread half of a settlement is caught
//! here too. (napi-rs's `catch_unwind` puts the payload in the error it throws; the facade turns
//! every unmarked native error into `ERR_INTERNAL` without its text, and our own panics never
//! carry share material.) The hook replaces the default one, which would print the payload to stderr, with a
//! line that names only the source location. This cdylib links its own copy of `std`, so the
//! hook is this library's: it does not touch the host's (or another addon's) panic handling.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

static HOOK: Once = Once::new();

/// When the library is loaded: before anything of it can panic.
#[napi_derive::module_init]
fn at_load() {
    install_hook();
}

/// Installs the payload-free panic hook (once; cheap afterwards).
pub fn install_hook() {
    HOOK.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            eprintln!("sharevault: internal error (a panic{at}); the operation failed with ERR_INTERNAL");
        }))
    });
}

/// Runs `f`; a panic in it becomes `ERR_INTERNAL` (for code that runs on the JS thread outside
/// an exported function's own guard, such as a settlement).
pub fn contained<T>(what: &str, f: impl FnOnce() -> napi::Result<T>) -> napi::Result<T> {
    install_hook();
    panic::catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(crate::error::to_napi(sharevault_core::Error::internal(format!("{what} panicked")))))
}

/// Panics on purpose, for the test that proves containment on the shipped build: `"sync"` in
/// the exported function itself, `"async"` inside an operation on the runtime, `"settle"` while
/// its result is turned into JS values. The payload carries a marker the test looks for on
/// stderr (it must not be there).
#[napi_derive::napi(catch_unwind, js_name = "__panicForTests", ts_return_type = "Promise<void> | void")]
pub fn panic_for_tests(env: napi::Env, site: String) -> napi::Result<crate::settle::PromiseValue> {
    install_hook();
    const PAYLOAD: &str = "PANIC-PAYLOAD-MUST-NOT-BE-PRINTED";
    match site.as_str() {
        "sync" => panic!("{PAYLOAD}"),
        "async" => crate::settle::spawn_settled(env.raw(), async { panic!("{PAYLOAD}") }, |_, ()| unreachable!()),
        _ => crate::settle::spawn_settled(env.raw(), async { Ok(()) }, |_, ()| panic!("{PAYLOAD}")),
    }
}
