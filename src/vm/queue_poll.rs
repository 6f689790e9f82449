//! proxy_on_queue_ready across workers. nginx has no cross-process wake-up, so each worker
//! polls: one timer per worker reads, every POLL_MS, the sequence number (an atomic in shared
//! memory) of each queue its instances registered, and calls on_queue_ready for the changed
//! ones. An item enqueued in another worker is thus announced within POLL_MS. The same timer
//! flushes the worker's per-filter metrics to the shared zone.

use std::cell::RefCell;

use ngx::ffi::*;

use super::worker::with_worker;

pub(crate) const POLL_MS: ngx_msec_t = 100;

thread_local! {
    // Boxed: the event must not move while it is in nginx's timer tree.
    static TIMER: RefCell<Option<Box<ngx_event_t>>> = const { RefCell::new(None) };
}

/// Starts this worker's poll timer (init_process).
pub(crate) fn start() {
    TIMER.with(|t| {
        let mut t = t.borrow_mut();
        // SAFETY: ngx_cycle is valid in a worker. Cancelable: graceful shutdown does not
        // wait for the poller.
        let mut ev = Box::new(crate::util::event::new(poll_handler, unsafe { (*ngx_cycle).log }));
        // SAFETY: the event lives in the Box held by TIMER until stop().
        unsafe { ngx_add_timer(&mut *ev, POLL_MS) };
        *t = Some(ev);
    });
}

/// Stops it (exit_process).
pub(crate) fn stop() {
    let _ = TIMER.try_with(|t| {
        if let Some(mut ev) = t.borrow_mut().take() {
            // SAFETY: the event is ours; removing it from the timer tree before freeing it
            // leaves no dangling node.
            unsafe {
                if ev.timer_set() != 0 {
                    ngx_del_timer(&mut *ev);
                }
            }
        }
    });
}

/// The timer's handler; `ev` is the event in TIMER.
unsafe extern "C" fn poll_handler(ev: *mut ngx_event_t) {
    crate::util::guard("queue poll", (), || {
        // SAFETY (ev, ngx_exiting, ngx_quit): nginx calls this on the worker thread with the
        // event we armed, which lives in TIMER until stop() removes it from the timer tree.
        with_worker(|w| {
            for mi in 0..w.slots.len() {
                if w.slots[mi].live().is_some_and(|inst| inst.has_queues()) {
                    w.run_root(mi, |inst| inst.poll_queues());
                }
            }
            w.flush_stats();
        });
        crate::vm::worker::flush_root_calls();
    });
    // Re-armed outside the guarded closure: a panic in there (caught and logged by guard)
    // must not stop this worker's on_queue_ready for good.
    crate::util::guard("queue poll re-arm", (), || {
        // (ev, ngx_exiting, ngx_quit: as above; this fn's body is an unsafe context.)
        if ngx_exiting == 0 && ngx_quit == 0 && (*ev).timer_set() == 0 {
            ngx_add_timer(ev, POLL_MS);
        }
    })
}
