//! The panic guard every `extern "C"` entry runs its body in: no panic unwinds into nginx's
//! C frames.

/// Runs `f`, turning a panic into `on_panic` (and an error log line naming `what`).
pub(crate) fn guard<R>(what: &str, on_panic: R, f: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(e) => {
            let msg = e
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| e.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            super::log::cycle_error(&format!("proxy_wasm: internal error in {what}: {msg}"));
            on_panic
        }
    }
}
