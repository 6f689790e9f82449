//! Who may use wasm_compile_cache: the user that loads configurations (the master, or the
//! single process) owns it; only that process writes to it.

use ngx::ffi::*;

/// The effective uid of the process that loads configurations (the master, or the single
/// process): the only owner wasm_compile_cache trusts, also in workers that run as another
/// user. u32::MAX until a configuration is loaded.
static MASTER_UID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

/// Records this process (one that loads configurations) as the master.
pub(crate) fn note_master_uid() {
    MASTER_UID.store(proxy_wasm_host::cache::effective_uid(), std::sync::atomic::Ordering::Relaxed);
}

/// How this process may use wasm_compile_cache: trust what the master's user owns, and
/// write only from the master (or the single process), never from a worker.
pub(crate) fn cache_policy() -> proxy_wasm_host::CachePolicy {
    let uid = match MASTER_UID.load(std::sync::atomic::Ordering::Relaxed) {
        u32::MAX => proxy_wasm_host::cache::effective_uid(),
        uid => uid,
    };
    // SAFETY: ngx_process is a plain global nginx sets before any module code runs.
    let p = unsafe { ngx_process } as u32;
    proxy_wasm_host::CachePolicy { owner: uid, write: p == NGX_PROCESS_SINGLE || p == NGX_PROCESS_MASTER }
}
