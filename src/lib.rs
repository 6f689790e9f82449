//! ngx-proxy-wasm: an nginx module that runs Proxy-Wasm filters on wasmer.
//!
//! This crate is the nginx glue only: directives, phase handlers and filters that turn nginx
//! events into calls on the host core (`proxy-wasm-host`, which knows nothing of nginx).
//!
//! - `conf`: directive handlers, main and location configuration.
//! - `worker`: load-time compile and validation (before fork), per-worker instances.
//! - `access`: on_request_headers in the access phase, local responses.
//! - `filters`: on_response_headers in the header filter; the body filter that replaces an
//!   upstream body by a local response.
//! - `http_call`: proxy_http_call as subrequests to a generated location; `root_calls`:
//!   the fake requests that carry calls made by root contexts; `call_policy`: which
//!   targets a module may call (proxy_wasm_call_allow).
//! - `log_phase`: on_done / on_log / on_delete at the end of a request.
//! - `request`: the host core's `HttpStream` over `ngx_http_request_t`.
//! - `ngx_log`: plugin logs into nginx's error log.
//! - `lua_ffi`, `lua_call`: the C functions OpenResty's `resty.proxy-wasm` calls (api7's ABI).
//! - `shm`, `queue_poll`, `metrics_handler`: the shared-memory zone (shared data, queues,
//!   metrics), the per-worker timer delivering on_queue_ready, the Prometheus endpoint.

use std::ptr::{addr_of, addr_of_mut, null_mut};

use ngx::ffi::*;
use ngx::http::HttpModule;

mod access;
mod body;
mod call_policy;
mod chain;
mod conf;
mod filters;
mod http_call;
mod local_response;
mod log_phase;
mod lua_call;
mod lua_ffi;
mod metrics_handler;
mod ngx_log;
mod properties;
mod queue_poll;
mod request;
mod root_calls;
mod shm;
mod timer_event;
mod worker;

pub(crate) struct Module;

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: a static that nginx only writes (ctx_index, index) before any request runs.
        unsafe { &*addr_of!(ngx_http_proxy_wasm_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        crate::guard("preconfiguration", NGX_ERROR as ngx_int_t, || {
            // A new http block: forget the previous configuration's wasm_vm (Lua path).
            lua_ffi::set_vm(None);
            lua_ffi::set_cache_dir(None);
            if http_call::add_variables(cf) {
                NGX_OK as ngx_int_t
            } else {
                NGX_ERROR as ngx_int_t
            }
        })
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        worker::postconfiguration(cf)
    }
}

static mut COMMANDS: [ngx_command_t; 16] = [
    ngx_command_t {
        name: ngx::ngx_string!("wasm_vm"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE12) as ngx_uint_t,
        set: Some(conf::set_wasm_vm),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx::ngx_string!("wasm_module"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE23) as ngx_uint_t,
        set: Some(conf::set_wasm_module),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx::ngx_string!("proxy_wasm"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE123) as ngx_uint_t,
        set: Some(conf::set_proxy_wasm),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx::ngx_string!("wasm_compile_cache"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(conf::set_compile_cache),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx::ngx_string!("wasm_max_memory"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(conf::set_max_memory),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx::ngx_string!("wasm_max_instructions"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(conf::set_max_instructions),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx::ngx_string!("proxy_wasm_failure_policy"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE12) as ngx_uint_t,
        set: Some(conf::set_failure_policy),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx::ngx_string!("proxy_wasm_body_buffer_limit"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(conf::set_body_buffer_limit),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx::ngx_string!("wasm_call_timeout"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(conf::set_call_timeout),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx::ngx_string!("wasm_call_ssl_verify"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(conf::set_call_ssl_verify),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx::ngx_string!("wasm_call_ssl_trusted_certificate"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(conf::set_call_trusted),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx::ngx_string!("proxy_wasm_call_allow"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_2MORE) as ngx_uint_t,
        set: Some(call_policy::set_call_allow),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx::ngx_string!("wasm_shm_size"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(shm::set_shm_size),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx::ngx_string!("proxy_wasm_metrics"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS) as ngx_uint_t,
        set: Some(metrics_handler::set_metrics),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx::ngx_string!("proxy_wasm_filter_metrics"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(conf::set_filter_metrics),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t::empty(),
];

static CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(Module::preconfiguration),
    postconfiguration: Some(Module::postconfiguration),
    create_main_conf: Some(Module::create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(Module::create_loc_conf),
    merge_loc_conf: Some(Module::merge_loc_conf),
};

#[used]
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_http_proxy_wasm_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(CTX) as _,
    // SAFETY: only the address is taken; nginx reads the table.
    commands: unsafe { addr_of_mut!(COMMANDS[0]) },
    type_: NGX_HTTP_MODULE as _,
    init_process: Some(worker::init_process),
    exit_process: Some(worker::exit_process),
    ..ngx_module_t::default()
};

// The Lua path's C functions are referenced by nothing but LuaJIT: keep them in the link.
#[used]
static LUA_FFI_EXPORTS: lua_ffi::Exports = lua_ffi::EXPORTS;

// The three symbols nginx looks for in a dynamic module. When nginx's own build system links
// us (./configure --add-dynamic-module), it generates them from `config`, so they are only
// defined for the standalone cdylib (feature "module-exports").
//
// Order: we go right before ngx_http_headers_filter_module, so that in the filter chains our
// header filter runs after `add_header` (a plugin sees and may change those headers) and our
// body filter after ngx_http_copy_filter_module (bodies arrive in memory, not as file buffers).
#[cfg(feature = "module-exports")]
mod exports {
    use super::*;
    use std::ffi::c_char;

    #[no_mangle]
    #[allow(non_upper_case_globals)]
    pub static mut ngx_modules: [*const ngx_module_t; 2] = [addr_of!(ngx_http_proxy_wasm_module), std::ptr::null()];

    #[no_mangle]
    #[allow(non_upper_case_globals)]
    pub static mut ngx_module_names: [*const c_char; 2] = [c"ngx_http_proxy_wasm_module".as_ptr(), std::ptr::null()];

    #[no_mangle]
    #[allow(non_upper_case_globals)]
    pub static mut ngx_module_order: [*const c_char; 3] = [
        c"ngx_http_proxy_wasm_module".as_ptr(),
        c"ngx_http_headers_filter_module".as_ptr(),
        std::ptr::null(),
    ];
}

/// Runs `f`, turning a panic into `on_panic` so that no panic unwinds into nginx's C frames.
pub(crate) fn guard<R>(what: &str, on_panic: R, f: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(e) => {
            let msg = e
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| e.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            ngx_log::cycle_error(&format!("proxy_wasm: internal error in {what}: {msg}"));
            on_panic
        }
    }
}
