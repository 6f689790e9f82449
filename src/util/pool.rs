//! Pool helpers: finding the state a pool cleanup owns.

use std::ffi::c_void;

use ngx::ffi::*;

/// The data of the first cleanup of `pool` run by `handler` that `accept` takes, or null.
/// Per-request state is owned by a pool cleanup so that it is freed with the request; this
/// finds it again where r->ctx cannot (an internal redirect clears r->ctx; a subrequest
/// shares its parent's pool, so `accept` tells whose state it is).
///
/// # Safety
/// `pool` is a live nginx pool; `accept` gets only data `handler` was registered with.
pub(crate) unsafe fn cleanup_data(
    pool: *mut ngx_pool_t,
    handler: unsafe extern "C" fn(*mut c_void),
    accept: impl Fn(*mut c_void) -> bool,
) -> *mut c_void {
    let mut c = (*pool).cleanup;
    while !c.is_null() {
        // Compared as addresses: one definition in one shared object.
        if (*c).handler.map(|h| h as usize) == Some(handler as usize) && accept((*c).data) {
            return (*c).data;
        }
        c = (*c).next;
    }
    std::ptr::null_mut()
}
