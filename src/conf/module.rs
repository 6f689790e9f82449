//! The module's identity as the configuration layer sees it: the `Module` type through which
//! every layer reaches its configuration, and the module's ngx_module_t, for whichever
//! subsystem this .so serves (feature `http` or `stream`, see lib.rs).
//!
//! The ngx_module_t itself is defined by the composition root (http_root.rs or
//! stream_root.rs: it names the directive table and the process hooks of every layer). Lower
//! layers need only its address (ctx_index, the shared zone's tag), so they reach it through
//! an extern declaration, as a C module does, instead of importing the root.

use ngx::ffi::*;

use super::MainConf;

extern "C" {
    /// Defined (`#[no_mangle]`) in http_root.rs / stream_root.rs.
    #[cfg_attr(feature = "http", link_name = "ngx_http_proxy_wasm_module")]
    #[cfg_attr(feature = "stream", link_name = "ngx_stream_proxy_wasm_module")]
    static mut MODULE: ngx_module_t;
}

/// The block whose main configuration holds `wasm_module` (for messages).
pub(crate) const BLOCK: &str = if cfg!(feature = "stream") { "stream" } else { "http" };

/// The module's ngx_module_t (ctx_index, index; the shared zone's tag).
pub(crate) fn module_ptr() -> *mut ngx_module_t {
    // Only the address is taken (no read or write of the static).
    std::ptr::addr_of_mut!(MODULE)
}

/// The main configuration of the cycle (None when the cycle has no http/stream block).
///
/// # Safety
/// `cycle` is a live cycle whose configuration was loaded.
pub(crate) unsafe fn main_conf_of_cycle(cycle: *mut ngx_cycle_t) -> Option<&'static mut MainConf> {
    #[cfg(feature = "http")]
    {
        use ngx::http::HttpModuleMainConf;
        Module::main_conf_mut(&*cycle)
    }
    #[cfg(feature = "stream")]
    {
        let ctx = *(*cycle).conf_ctx.add(ngx_stream_module.index) as *mut ngx_stream_conf_ctx_t;
        if ctx.is_null() {
            return None;
        }
        let p = *(*ctx).main_conf.add((*module_ptr()).ctx_index) as *mut MainConf;
        p.as_mut()
    }
}

/// The main configuration of the block being parsed.
///
/// # Safety
/// `cf` is the live configuration, inside the http/stream block.
pub(crate) unsafe fn main_conf_of(cf: *mut ngx_conf_t) -> Option<&'static mut MainConf> {
    #[cfg(feature = "http")]
    {
        use ngx::http::HttpModuleMainConf;
        Module::main_conf_mut(&*cf)
    }
    #[cfg(feature = "stream")]
    {
        let ctx = (*cf).ctx as *mut ngx_stream_conf_ctx_t;
        if ctx.is_null() {
            return None;
        }
        let p = *(*ctx).main_conf.add((*module_ptr()).ctx_index) as *mut MainConf;
        p.as_mut()
    }
}

pub(crate) struct Module;

#[cfg(feature = "http")]
mod http {
    use ngx::ffi::*;
    use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf};

    use super::{module_ptr, Module};
    use crate::conf::{LocConf, MainConf};

    impl HttpModule for Module {
        fn module() -> &'static ngx_module_t {
            // SAFETY: a static that nginx only writes (ctx_index, index) before any request runs.
            unsafe { &*module_ptr() }
        }
    }

    // SAFETY: the configuration types are the ones create_main_conf / create_loc_conf allocate.
    unsafe impl HttpModuleMainConf for Module {
        type MainConf = MainConf;
    }
    unsafe impl HttpModuleLocationConf for Module {
        type LocationConf = LocConf;
    }
}
