//! Configuration: the main and location confs, the directive handlers, and what the
//! configuration being loaded decides for every later layer (call policy, the compile cache
//! owner, the engine of Lua-loaded plugins).

/// Defines a directive handler: the `extern "C"` entry nginx calls, the panic guard, and the
/// cast of `conf` to the configuration type its entry in the directive table names.
macro_rules! directive_handler {
    ($(#[$doc:meta])* $name:ident, $directive:literal, |$cf:ident, $conf:ident: $ty:ty| $body:block) => {
        $(#[$doc])*
        pub(crate) extern "C" fn $name(
            cf: *mut ngx::ffi::ngx_conf_t,
            _cmd: *mut ngx::ffi::ngx_command_t,
            conf: *mut std::ffi::c_void,
        ) -> *mut std::ffi::c_char {
            // SAFETY: nginx calls a directive handler with a live `cf` whose args are the
            // directive's words (their count checked against the table entry), and `conf`
            // pointing at the configuration of type `$ty` that the entry's offset names.
            crate::util::guard($directive, ngx::core::NGX_CONF_ERROR, || unsafe {
                let $cf = cf;
                let $conf = &mut *(conf as *mut $ty);
                $body
            })
        }
    };
}

/// Logs a configuration error (naming file and line) and fails the directive.
macro_rules! conf_error {
    ($cf:expr, $($arg:tt)*) => {{
        let msg = format!($($arg)*);
        ngx::ngx_conf_log_error!(ngx::ffi::NGX_LOG_EMERG, $cf, "{}", msg);
        return ngx::core::NGX_CONF_ERROR;
    }};
}

pub(crate) mod cache_policy;
pub(crate) mod call_policy;
pub(crate) mod directives;
pub(crate) mod lua_engine;
mod loc;
mod main;
mod module;

#[cfg(feature = "http")]
pub(crate) use loc::{body_buffer_limit, failure_status};
pub(crate) use loc::LocConf;
#[cfg(feature = "stream")]
pub(crate) use loc::DEFAULT_STREAM_BUFFER_LIMIT;
pub(crate) use main::{FilterDef, MainConf, ModuleDef, Origin, DEFAULT_SHM_SIZE, MAX_SHM_SIZE};
#[cfg(feature = "http")]
pub(crate) use module::Module;
pub(crate) use module::{main_conf_of, main_conf_of_cycle, module_ptr, BLOCK};

/// Logs a configuration error found after the directives were read (postconfiguration: the
/// message names the file and line itself) and fails the load.
pub(crate) fn emerg(cf: *mut ngx::ffi::ngx_conf_t, msg: &str) -> ngx::ffi::ngx_int_t {
    // SAFETY: cf is the live configuration being loaded; its log is valid.
    unsafe { ngx::log::log_error(ngx::ffi::NGX_LOG_EMERG as ngx::ffi::ngx_uint_t, (*cf).log, 0, msg.as_bytes()) };
    ngx::ffi::NGX_ERROR as ngx::ffi::ngx_int_t
}
