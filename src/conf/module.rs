//! The module's identity as the configuration layer sees it: the `Module` type through which
//! every layer reaches its main and location configuration, and the module's ngx_module_t.
//!
//! The ngx_module_t itself is defined in lib.rs (the composition root: it names the
//! directive table and the process hooks of every layer). Lower layers need only its address
//! (ctx_index, the shared zone's tag), so they reach it through an extern declaration, as a C
//! module does, instead of importing the root.

use ngx::ffi::*;
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf};

use super::{LocConf, MainConf};

extern "C" {
    /// Defined (`#[no_mangle]`) in lib.rs.
    #[link_name = "ngx_http_proxy_wasm_module"]
    static mut MODULE: ngx_module_t;
}

/// The module's ngx_module_t (ctx_index, index; the shared zone's tag).
pub(crate) fn module_ptr() -> *mut ngx_module_t {
    // Only the address is taken (no read or write of the static).
    std::ptr::addr_of_mut!(MODULE)
}

pub(crate) struct Module;

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
