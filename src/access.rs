//! The access-phase handler: on_request_headers for the location's chain.
//! Note: `return` answers in the rewrite phase, before access, so a location with `return`
//! never runs request callbacks (as with auth_basic); use a content handler instead.

use ngx::ffi::*;

use crate::chain::{self, ChainResult, Headers};

pub(crate) unsafe extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    crate::guard("access handler", NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t, || {
        let Some(ctx) = chain::get_or_create(r) else { return NGX_DECLINED as ngx_int_t };
        if ctx.request_headers_done {
            // Back after reading the body for the filters, or after an internal redirect.
            if ctx.answered {
                return NGX_DECLINED as ngx_int_t;
            }
            return crate::body::read_for_filters(r).unwrap_or(NGX_DECLINED as ngx_int_t);
        }
        ctx.request_headers_done = true;
        let mut from = 0;
        loop {
            match chain::run_headers(r, ctx, Headers::Request, from) {
                ChainResult::Continue => {
                    return crate::body::read_for_filters(r).unwrap_or(NGX_DECLINED as ngx_int_t);
                }
                ChainResult::Paused(i) => {
                    // Nothing can resume a paused request yet (no HTTP calls): go on rather
                    // than hang the request.
                    chain::log_at(
                        r,
                        NGX_LOG_WARN,
                        "chain",
                        "on_request_headers returned Pause with no local response and nothing pending: continuing",
                    );
                    from = i + 1;
                }
                ChainResult::Failed => {
                    ctx.answered = true;
                    return crate::conf::failure_status(r) as ngx_int_t;
                }
                ChainResult::Closed => {
                    ctx.answered = true;
                    // nginx's 444: close the connection without a response.
                    return NGX_HTTP_CLOSE as ngx_int_t;
                }
                ChainResult::Local(lr) => {
                    ctx.answered = true;
                    ctx.properties.code_details = Some(lr.details.clone());
                    let rc = crate::local_response::send(r, &lr);
                    // We answered, like a content handler: finalize here and stop the phases.
                    ngx_http_finalize_request(r, rc);
                    return NGX_DONE as ngx_int_t;
                }
            }
        }
    })
}
