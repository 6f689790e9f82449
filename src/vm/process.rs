//! A worker's start and exit: instantiate every module a filter uses, start the queue poll;
//! at exit, flush the figures and stop the timers.

use ngx::ffi::*;

use super::worker::{flush_root_calls, Worker, WORKER};

pub(crate) unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    crate::util::guard("init_process", NGX_OK as ngx_int_t, || {
        let Some(mcf) = crate::conf::main_conf_of_cycle(cycle) else { return NGX_OK as ngx_int_t };
        // This cycle's Lua engine (a rejected reload may have left the master's another).
        crate::conf::lua_engine::set_from(mcf);
        super::shm::install_worker_store(mcf);
        if !mcf.loaded {
            return NGX_OK as ngx_int_t;
        }
        let t0 = std::time::Instant::now();
        let mut w = Worker::new(mcf);
        let mut started = 0;
        for mi in 0..mcf.modules.len() {
            // Modules no filter uses are not instantiated in workers.
            if mcf.filters.iter().any(|f| f.module == mi) {
                w.start_module(mi);
                started += 1;
            }
        }
        let msg = format!(
            "[proxy_wasm] worker ready: {started} module(s), {} filter(s) started in {} us",
            mcf.filters.len(),
            t0.elapsed().as_micros()
        );
        ngx::log::log_error(NGX_LOG_NOTICE as ngx_uint_t, (*cycle).log, 0, msg.as_bytes());
        WORKER.with(|s| *s.borrow_mut() = Some(w));
        flush_root_calls();
        super::queue_poll::start();
        NGX_OK as ngx_int_t
    })
}

pub(crate) unsafe extern "C" fn exit_process(_cycle: *mut ngx_cycle_t) {
    crate::util::guard("exit_process", (), || {
        let _ = WORKER.try_with(|s| {
            if let Some(mut w) = s.borrow_mut().take() {
                w.retire_stats();
                w.stop_ticks();
            }
        });
        #[cfg(feature = "http")]
        super::root_calls::drop_all();
        super::queue_poll::stop();
    })
}

