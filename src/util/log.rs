//! Plugin messages into nginx's error log, with the level checked before anything is formatted.

use ngx::ffi::*;
use proxy_wasm_host::{LogLevel, Logger};

pub(crate) fn ngx_level(level: LogLevel) -> ngx_uint_t {
    (match level {
        LogLevel::Trace | LogLevel::Debug => NGX_LOG_DEBUG,
        LogLevel::Info => NGX_LOG_INFO,
        LogLevel::Warn => NGX_LOG_WARN,
        LogLevel::Error => NGX_LOG_ERR,
        LogLevel::Critical => NGX_LOG_CRIT,
    }) as ngx_uint_t
}

/// The most verbose Proxy-Wasm level that `log` records.
pub(crate) unsafe fn proxy_level(log: *const ngx_log_t) -> LogLevel {
    if log.is_null() {
        return LogLevel::Info;
    }
    let l = (*log).log_level as u32;
    // log_level carries debug mask bits above the level on --with-debug builds.
    if l >= NGX_LOG_DEBUG {
        LogLevel::Trace
    } else if l >= NGX_LOG_INFO {
        LogLevel::Info
    } else if l >= NGX_LOG_WARN {
        LogLevel::Warn
    } else if l >= NGX_LOG_ERR {
        LogLevel::Error
    } else {
        LogLevel::Critical
    }
}

/// Writes `[proxy_wasm] <label>: <msg>` to `log` if its level allows.
pub(crate) unsafe fn write(log: *mut ngx_log_t, level: ngx_uint_t, label: &str, msg: &[u8]) {
    if log.is_null() || ((*log).log_level as ngx_uint_t) < level {
        return;
    }
    let mut line = Vec::with_capacity(label.len() + msg.len() + 16);
    line.extend_from_slice(b"[proxy_wasm] ");
    line.extend_from_slice(label.as_bytes());
    line.extend_from_slice(b": ");
    line.extend_from_slice(msg);
    ngx::log::log_error(level, log, 0, &line);
}

unsafe fn cycle_log() -> *mut ngx_log_t {
    let cycle = ngx_cycle;
    if cycle.is_null() {
        std::ptr::null_mut()
    } else {
        (*cycle).log
    }
}

/// An error line outside any request.
pub(crate) fn cycle_error(msg: &str) {
    // SAFETY: ngx_cycle is set by nginx before any module code runs and stays valid.
    unsafe {
        let log = cycle_log();
        if !log.is_null() {
            ngx::log::log_error(NGX_LOG_ERR as ngx_uint_t, log, 0, msg.as_bytes());
        }
    }
}

/// A warning line outside any request.
pub(crate) fn cycle_warn(msg: &str) {
    // SAFETY: see cycle_error.
    unsafe {
        let log = cycle_log();
        if !log.is_null() {
            ngx::log::log_error(NGX_LOG_WARN as ngx_uint_t, log, 0, msg.as_bytes());
        }
    }
}

/// The instance logger: root-context and start-up messages go to the cycle's error log.
pub(crate) struct CycleLogger {
    pub label: String,
}

impl Logger for CycleLogger {
    fn level(&self) -> LogLevel {
        // SAFETY: see cycle_error.
        unsafe { proxy_level(cycle_log()) }
    }

    fn log(&self, level: LogLevel, msg: &[u8]) {
        // SAFETY: see cycle_error.
        unsafe { write(cycle_log(), ngx_level(level), &self.label, msg) }
    }
}
