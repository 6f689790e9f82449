//! Timer events the module hands to nginx.
//!
//! nginx built `--with-debug` logs every timer it adds, deletes or expires with
//! `ngx_event_ident(ev->data)`, i.e. it reads `((ngx_connection_t *) ev->data)->fd` whatever
//! the event is for (at `error_log ... debug`, and with `master_process off`, the mode the real
//! Test::Nginx runs in). So `data` must always point at something shaped like a connection:
//! our events carry a per-worker placeholder connection (fd -1, "no socket"), and a handler
//! finds its own state from the event's address (the event is a field of that state).

use std::cell::Cell;
use std::ptr::{self, addr_of_mut};

use ngx::ffi::*;

thread_local! {
    // One per worker thread, never freed: events armed in any cycle may point at it.
    static IDENT: Cell<*mut ngx_connection_t> = const { Cell::new(ptr::null_mut()) };
}

/// The placeholder connection nginx's debug lines read through `ev->data`.
fn ident_connection() -> *mut ngx_connection_t {
    IDENT.with(|c| {
        if c.get().is_null() {
            // SAFETY: an all-zero ngx_connection_t is what ngx_pcalloc gives nginx itself;
            // fd -1 is nginx's own "no socket" value. Leaked on purpose (see IDENT).
            let mut conn: Box<ngx_connection_t> = Box::new(unsafe { std::mem::zeroed() });
            conn.fd = -1;
            c.set(Box::into_raw(conn));
        }
        c.get()
    })
}

/// A timer event for `handler`, logging to `log`. Cancelable: a worker shutting down
/// gracefully does not wait for it.
pub(crate) fn new(handler: unsafe extern "C" fn(*mut ngx_event_t), log: *mut ngx_log_t) -> ngx_event_t {
    // SAFETY: an all-zero ngx_event_t is nginx's own starting state (ngx_pcalloc).
    let mut ev: ngx_event_t = unsafe { std::mem::zeroed() };
    ev.handler = Some(handler);
    ev.data = ident_connection() as *mut std::ffi::c_void;
    ev.log = log;
    ev.set_cancelable(1);
    ev
}

/// The struct of type `T` whose field at byte offset `offset` is the event `ev`
/// (`offset` from `std::mem::offset_of!(T, field)`).
///
/// # Safety
/// `ev` must be that field of a live `T`.
pub(crate) unsafe fn owner<T>(ev: *mut ngx_event_t, offset: usize) -> *mut T {
    (ev as *mut u8).sub(offset) as *mut T
}

/// ngx_post_event (a C macro): runs `ev`'s handler from the event loop's posted queue.
///
/// # Safety
/// `ev` is a live event that stays alive until it runs or is removed from the queue.
pub(crate) unsafe fn post(ev: *mut ngx_event_t) {
    if (*ev).posted() != 0 {
        return;
    }
    (*ev).set_posted(1);
    let q = addr_of_mut!(ngx_posted_events);
    let x = addr_of_mut!((*ev).queue);
    (*x).prev = (*q).prev;
    (*(*x).prev).next = x;
    (*x).next = q;
    (*q).prev = x;
}
