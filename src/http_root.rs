//! The http module's composition root: its statics (`ngx_http_proxy_wasm_module`), its
//! directive table and the configuration hooks that wire the layers together.

use std::ptr::{addr_of, addr_of_mut};

use ngx::ffi::*;
use ngx::http::{HttpModule, HttpModuleMainConf, NgxHttpCoreModule};

use crate::{calls, conf, http, lua, util, vm};
use conf::{call_policy, directives as d, MainConf, Module};

type Handler = unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut std::ffi::c_void) -> *mut std::ffi::c_char;

/// Where a directive may appear, and which configuration its handler gets.
#[derive(Clone, Copy)]
enum Level {
    /// http{} only; the main configuration.
    Main,
    /// http{}, server{} or location{}; the location configuration.
    Any,
    /// location{} only; the location configuration.
    Loc,
}

/// One entry of the directive table.
/// `name` is a C string: nginx compares directive names with strcmp.
const fn directive(name: &'static std::ffi::CStr, level: Level, args: u32, set: Handler, offset: usize) -> ngx_command_t {
    let (where_, conf) = match level {
        Level::Main => (NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET),
        Level::Any => (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET),
        Level::Loc => (NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET),
    };
    ngx_command_t {
        name: ngx_str_t { len: name.to_bytes().len(), data: name.as_ptr() as *mut u8 },
        type_: (where_ | args) as ngx_uint_t,
        set: Some(set),
        conf,
        offset,
        post: std::ptr::null_mut(),
    }
}

use Level::{Any, Loc, Main};

static mut COMMANDS: [ngx_command_t; 16] = [
    directive(c"wasm_vm", Main, NGX_CONF_TAKE12, d::set_wasm_vm, 0),
    directive(c"wasm_module", Main, NGX_CONF_TAKE23, d::set_wasm_module, 0),
    directive(c"proxy_wasm", Any, NGX_CONF_TAKE123, d::set_proxy_wasm, 0),
    directive(c"wasm_compile_cache", Main, NGX_CONF_TAKE1, d::set_compile_cache, 0),
    directive(c"wasm_max_memory", Main, NGX_CONF_TAKE1, d::set_max_memory, 0),
    directive(c"wasm_max_instructions", Main, NGX_CONF_TAKE1, d::set_max_instructions, 0),
    directive(c"proxy_wasm_failure_policy", Any, NGX_CONF_TAKE12, d::set_failure_policy, 0),
    directive(c"proxy_wasm_body_buffer_limit", Any, NGX_CONF_TAKE1, d::set_buffer_limit, 0),
    directive(c"wasm_call_timeout", Main, NGX_CONF_TAKE1, d::set_call_timeout, 0),
    directive(c"wasm_call_ssl_verify", Main, NGX_CONF_FLAG, ngx_conf_set_flag_slot, std::mem::offset_of!(MainConf, call_ssl_verify)),
    directive(c"wasm_call_ssl_trusted_certificate", Main, NGX_CONF_TAKE1, d::set_call_trusted, 0),
    directive(c"proxy_wasm_call_allow", Main, NGX_CONF_2MORE, call_policy::set_call_allow, 0),
    directive(c"wasm_shm_size", Main, NGX_CONF_TAKE1, d::set_shm_size, 0),
    directive(c"proxy_wasm_metrics", Loc, NGX_CONF_NOARGS, http::metrics::set_metrics, 0),
    directive(c"proxy_wasm_filter_metrics", Main, NGX_CONF_FLAG, ngx_conf_set_flag_slot, std::mem::offset_of!(MainConf, filter_metrics)),
    ngx_command_t::empty(),
];

static CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(preconfiguration),
    postconfiguration: Some(postconfiguration),
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
    init_process: Some(vm::process::init_process),
    exit_process: Some(vm::process::exit_process),
    ..ngx_module_t::default()
};

// The Lua path's C functions are referenced by nothing but LuaJIT: keep them in the link.
#[used]
static LUA_FFI_EXPORTS: lua::Exports = lua::EXPORTS;

unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    util::guard("preconfiguration", NGX_ERROR as ngx_int_t, || {
        // A new http block: forget the previous configuration's wasm_vm (Lua path).
        conf::lua_engine::clear();
        if calls::location::add_variables(cf) {
            NGX_OK as ngx_int_t
        } else {
            NGX_ERROR as ngx_int_t
        }
    })
}

unsafe fn push_phase_handler(cf: *mut ngx_conf_t, phase: u32, h: ngx_http_handler_pt) -> bool {
    let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(&*cf) else { return false };
    let slot = ngx_array_push(&mut cmcf.phases[phase as usize].handlers) as *mut ngx_http_handler_pt;
    if slot.is_null() {
        return false;
    }
    *slot = h;
    true
}

unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    util::guard("postconfiguration", NGX_ERROR as ngx_int_t, || {
        // Configurations are loaded by the master (or the single process) only.
        conf::cache_policy::note_master_uid();
        let Some(mcf) = Module::main_conf_mut(&*cf) else { return NGX_ERROR as ngx_int_t };
        if let Err(msg) = call_policy::resolve(mcf) {
            return conf::emerg(cf, &msg);
        }
        // The Lua path's engine, now with the final wasm_max_* limits.
        conf::lua_engine::set_from(mcf);
        let signaller = ngx_process == NGX_PROCESS_SIGNALLER as ngx_uint_t;
        if mcf.filters.is_empty() && mcf.modules.is_empty() {
            // `wasm_vm` alone: plugins come from Lua (resty.proxy-wasm); they get the shared
            // zone for shared data, queues and metrics too.
            if mcf.compiler.is_some() && !signaller {
                if let Err(msg) = vm::shm::add_zone(cf, mcf) {
                    return conf::emerg(cf, &msg);
                }
            }
            return NGX_OK as ngx_int_t;
        }
        if !push_phase_handler(cf, ngx_http_phases_NGX_HTTP_ACCESS_PHASE, Some(http::access::access_handler))
            || !push_phase_handler(cf, ngx_http_phases_NGX_HTTP_LOG_PHASE, Some(http::log_phase::log_handler))
        {
            return NGX_ERROR as ngx_int_t;
        }
        http::response::install();
        http::request_body::install();
        // The `nginx -s` signaller parses the configuration too: it must not compile or run
        // anything. `nginx -t`, start and reload do.
        if signaller {
            return NGX_OK as ngx_int_t;
        }
        if let Err(msg) = calls::location::create_location(cf, mcf) {
            return conf::emerg(cf, &format!("proxy_wasm: {msg}"));
        }
        match vm::load::compile_and_check(cf, mcf) {
            Ok(()) => NGX_OK as ngx_int_t,
            Err(msg) => conf::emerg(cf, &msg),
        }
    })
}

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
