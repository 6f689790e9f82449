//! Handles given to Lua and the last error: every pointer Lua passes back is checked against
//! the registry of live handles before use, so a stale or foreign pointer is refused.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::c_void;

use ngx::ffi::*;


thread_local! {
    pub(super) static PLUGINS: RefCell<HashSet<usize>> = RefCell::new(HashSet::new());
    pub(super) static CTXS: RefCell<HashSet<usize>> = RefCell::new(HashSet::new());
    pub(super) static LAST_ERROR: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

pub(super) fn cycle_info(msg: &str) {
    // SAFETY: ngx_cycle is set before any module code runs; its log stays valid.
    unsafe {
        let cycle = ngx_cycle;
        if !cycle.is_null() && !(*cycle).log.is_null() {
            ngx::log::log_error(NGX_LOG_INFO as ngx_uint_t, (*cycle).log, 0, msg.as_bytes());
        }
    }
}

pub(super) fn fail(msg: String) {
    // One line, as every error log line of the module (wasmer's diagnostics span several).
    let msg = msg.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    crate::util::log::cycle_error(&format!("[proxy_wasm] lua: {msg}"));
    LAST_ERROR.with(|e| *e.borrow_mut() = msg.into_bytes());
}

pub(crate) fn clear_error() {
    LAST_ERROR.with(|e| e.borrow_mut().clear());
}

/// A registered handle of type `T`, or None (and the error recorded) for anything else.
pub(super) unsafe fn handle<'a, T>(set: &'static std::thread::LocalKey<RefCell<HashSet<usize>>>, p: *mut c_void, what: &str) -> Option<&'a T> {
    if p.is_null() || !set.with(|s| s.borrow().contains(&(p as usize))) {
        fail(format!("{what}: not a live handle (freed, or not from this library)"));
        return None;
    }
    // SAFETY: the address is in the registry, so it is a Box<T> we leaked and have not freed.
    Some(&*(p as *const T))
}

pub(super) unsafe fn slice<'a>(p: *const u8, len: usize) -> &'a [u8] {
    if p.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the caller (Lua) passes a pointer to `len` readable bytes.
        std::slice::from_raw_parts(p, len)
    }
}

pub(crate) fn record_error(msg: String) {
    fail(msg);
}
