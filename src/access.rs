//! The access-phase handler: on_request_headers for the location's chain.
//! Note: `return` answers in the rewrite phase, before access, so a location with `return`
//! never runs request callbacks (as with auth_basic); use a content handler instead.

use ngx::ffi::*;

use crate::chain::{self, ChainResult, Headers};

pub(crate) unsafe extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    crate::guard("access handler", NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t, || {
        let Some(ctx) = chain::get_or_create(r) else { return NGX_DECLINED as ngx_int_t };
        if ctx.request_headers_done {
            return NGX_DECLINED as ngx_int_t;
        }
        ctx.request_headers_done = true;
        match chain::run_headers(r, ctx, Headers::Request) {
            ChainResult::Continue => NGX_DECLINED as ngx_int_t,
            ChainResult::Failed => {
                ctx.answered = true;
                NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t
            }
            ChainResult::Local(lr) => {
                ctx.answered = true;
                let rc = crate::local_response::send(r, "local response", &lr);
                // We answered, like a content handler: finalize here and stop the phases.
                ngx_http_finalize_request(r, rc);
                NGX_DONE as ngx_int_t
            }
        }
    })
}
