//! The log phase: on_done, on_log and on_delete once the response is complete.

use ngx::ffi::*;

use crate::http::chain;

pub(crate) unsafe extern "C" fn log_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    crate::util::guard("log handler", NGX_OK as ngx_int_t, || {
        if let Some(ctx) = chain::get(r) {
            chain::finish(r, ctx);
        }
        NGX_OK as ngx_int_t
    })
}
