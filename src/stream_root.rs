//! The stream module's composition root: its statics (`ngx_stream_proxy_wasm_module`), its
//! directive table and the configuration hooks that wire the layers together.

use std::ffi::{c_char, c_void};
use std::ptr::{addr_of, addr_of_mut};

use ngx::ffi::*;
use ngx::http::Merge;

use crate::conf::{directives as d, LocConf, MainConf};
use crate::{conf, stream, util, vm};

type Handler = unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

/// One entry of the directive table: `main` directives go in `stream {}` (the main
/// configuration), the others in `stream {}` or `server {}` (the server configuration).
const fn directive(name: &'static std::ffi::CStr, main: bool, args: u32, set: Handler, offset: usize) -> ngx_command_t {
    let (where_, conf) = if main {
        (NGX_STREAM_MAIN_CONF, std::mem::offset_of!(ngx_stream_conf_ctx_t, main_conf))
    } else {
        (NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF, std::mem::offset_of!(ngx_stream_conf_ctx_t, srv_conf))
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

static mut COMMANDS: [ngx_command_t; 10] = [
    directive(c"wasm_module", true, NGX_CONF_TAKE23, d::set_wasm_module, 0),
    directive(c"proxy_wasm", false, NGX_CONF_TAKE123, d::set_proxy_wasm, 0),
    directive(c"wasm_compile_cache", true, NGX_CONF_TAKE1, d::set_compile_cache, 0),
    directive(c"wasm_max_memory", true, NGX_CONF_TAKE1, d::set_max_memory, 0),
    directive(c"wasm_max_instructions", true, NGX_CONF_TAKE1, d::set_max_instructions, 0),
    directive(c"proxy_wasm_failure_policy", false, NGX_CONF_TAKE12, d::set_failure_policy, 0),
    directive(c"proxy_wasm_buffer_limit", false, NGX_CONF_TAKE1, d::set_buffer_limit, 0),
    directive(c"wasm_shm_size", true, NGX_CONF_TAKE1, d::set_shm_size, 0),
    directive(c"proxy_wasm_filter_metrics", true, NGX_CONF_FLAG, ngx_conf_set_flag_slot, std::mem::offset_of!(MainConf, filter_metrics)),
    ngx_command_t::empty(),
];

static CTX: ngx_stream_module_t = ngx_stream_module_t {
    preconfiguration: None,
    postconfiguration: Some(postconfiguration),
    create_main_conf: Some(create_main_conf),
    init_main_conf: None,
    create_srv_conf: Some(create_srv_conf),
    merge_srv_conf: Some(merge_srv_conf),
};

#[used]
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_stream_proxy_wasm_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(CTX) as _,
    // SAFETY: only the address is taken; nginx reads the table.
    commands: unsafe { addr_of_mut!(COMMANDS[0]) },
    type_: NGX_STREAM_MODULE as _,
    init_process: Some(vm::process::init_process),
    exit_process: Some(vm::process::exit_process),
    ..ngx_module_t::default()
};

/// A configuration of type T in the configuration pool, dropped with it.
unsafe fn alloc<T: Default>(cf: *mut ngx_conf_t) -> *mut c_void {
    let pool = ngx::core::Pool::from_ngx_pool((*cf).pool);
    pool.allocate::<T>(T::default()) as *mut c_void
}

unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    util::guard("create_main_conf", std::ptr::null_mut(), || alloc::<MainConf>(cf))
}

unsafe extern "C" fn create_srv_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    util::guard("create_srv_conf", std::ptr::null_mut(), || alloc::<LocConf>(cf))
}

unsafe extern "C" fn merge_srv_conf(_cf: *mut ngx_conf_t, prev: *mut c_void, conf: *mut c_void) -> *mut c_char {
    util::guard("merge_srv_conf", ngx::core::NGX_CONF_ERROR, || {
        // SAFETY: nginx hands the two server configurations create_srv_conf made.
        let (prev, conf) = (&*(prev as *const LocConf), &mut *(conf as *mut LocConf));
        match conf.merge(prev) {
            Ok(()) => ngx::core::NGX_CONF_OK,
            Err(_) => ngx::core::NGX_CONF_ERROR,
        }
    })
}

/// Adds a phase handler.
unsafe fn add_phase_handler(cf: *mut ngx_conf_t, phase: u32, h: ngx_stream_handler_pt) -> bool {
    let ctx = (*cf).ctx as *mut ngx_stream_conf_ctx_t;
    let cmcf = *(*ctx).main_conf.add(ngx_stream_core_module.ctx_index) as *mut ngx_stream_core_main_conf_t;
    let handlers = &mut (*cmcf).phases[phase as usize].handlers;
    let slot = ngx_array_push(handlers) as *mut ngx_stream_handler_pt;
    if slot.is_null() {
        return false;
    }
    *slot = h;
    true
}

unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    util::guard("postconfiguration", NGX_ERROR as ngx_int_t, || {
        conf::cache_policy::note_master_uid();
        let Some(mcf) = conf::main_conf_of(cf) else { return NGX_ERROR as ngx_int_t };
        if mcf.filters.is_empty() && mcf.modules.is_empty() {
            return NGX_OK as ngx_int_t;
        }
        if !add_phase_handler(cf, ngx_stream_phases_NGX_STREAM_LOG_PHASE, Some(stream::phases::log_handler)) {
            return NGX_ERROR as ngx_int_t;
        }
        stream::phases::wrap_content_handlers(cf);
        stream::filter::install();
        // The `nginx -s` signaller parses the configuration too: it must not compile or run
        // anything. `nginx -t`, start and reload do.
        if ngx_process == NGX_PROCESS_SIGNALLER as ngx_uint_t {
            return NGX_OK as ngx_int_t;
        }
        match vm::load::compile_and_check(cf, mcf) {
            Ok(()) => NGX_OK as ngx_int_t,
            Err(msg) => conf::emerg(cf, &msg),
        }
    })
}

// The symbols nginx looks for in a dynamic module (see http_root.rs). No ngx_module_order:
// the module is appended after nginx's own stream modules, so that its filter is installed
// above theirs.
#[cfg(feature = "module-exports")]
mod exports {
    use super::*;

    #[no_mangle]
    #[allow(non_upper_case_globals)]
    pub static mut ngx_modules: [*const ngx_module_t; 2] = [addr_of!(ngx_stream_proxy_wasm_module), std::ptr::null()];

    #[no_mangle]
    #[allow(non_upper_case_globals)]
    pub static mut ngx_module_names: [*const c_char; 2] = [c"ngx_stream_proxy_wasm_module".as_ptr(), std::ptr::null()];
}
