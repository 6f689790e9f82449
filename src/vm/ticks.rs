//! Root contexts' proxy_on_tick timers (proxy_set_tick_period).

use ngx::ffi::*;

use super::worker::{flush_root_calls, with_worker, Worker};

/// One root context's proxy_on_tick timer (a boxed nginx event: its address must not move
/// while it is in nginx's timer tree).
pub(super) struct Tick {
    ev: ngx_event_t,
    period: ngx_msec_t,
    /// The filter definition (index into MainConf::filters) whose root context ticks.
    fi: usize,
}

impl Worker {
    /// Starts, re-periods or (ms = 0) stops filter `fi`'s tick timer.
    pub(super) fn set_tick(&mut self, fi: usize, ms: u32) {
        if ms == 0 {
            if let Some(mut t) = self.ticks[fi].take() {
                // SAFETY: the event is ours and, if armed, in nginx's timer tree; removing it
                // before the Box is freed keeps the tree free of dangling nodes.
                unsafe {
                    if t.ev.timer_set() != 0 {
                        ngx_del_timer(&mut t.ev);
                    }
                }
            }
            return;
        }
        let t = self.ticks[fi].get_or_insert_with(|| {
            // SAFETY: ngx_cycle is valid in a worker. Cancelable: graceful shutdown does
            // not wait for our ticks.
            let ev = crate::util::event::new(tick_handler, unsafe { (*ngx_cycle).log });
            Box::new(Tick { ev, period: 0, fi })
        });
        t.period = ms as ngx_msec_t;
        // SAFETY: the event lives in a Box owned by the worker until set_tick(fi, 0).
        unsafe { ngx_add_timer(&mut t.ev, t.period) };
    }

    pub(super) fn stop_ticks(&mut self) {
        for fi in 0..self.ticks.len() {
            self.set_tick(fi, 0);
        }
    }
}

/// A root context's tick: proxy_on_tick, then the next tick unless the worker is exiting.
unsafe extern "C" fn tick_handler(ev: *mut ngx_event_t) {
    crate::util::guard("tick", (), || {
        // SAFETY: nginx hands back the event of a live Tick (set_tick removes it from the
        // timer tree before the Box goes).
        let fi = (*crate::util::event::owner::<Tick>(ev, std::mem::offset_of!(Tick, ev))).fi;
        with_worker(|w| tick(w, fi));
        flush_root_calls();
    })
}

unsafe fn tick(w: &mut Worker, fi: usize) {
    let mi = w.filter_module[fi];
    let Some(root) = w.roots[fi] else {
        w.set_tick(fi, 0);
        return;
    };
    match w.run_root(mi, |inst| inst.on_tick(root)) {
        Some(Ok(())) => {}
        // Failed (poisoned), or no live instance: this timer stops.
        _ => {
            w.set_tick(fi, 0);
            return;
        }
    }
    if ngx_exiting != 0 || ngx_quit != 0 {
        w.set_tick(fi, 0);
        return;
    }
    if let Some(t) = w.ticks[fi].as_mut() {
        if t.ev.timer_set() == 0 {
            ngx_add_timer(&mut t.ev, t.period);
        }
    }
}
