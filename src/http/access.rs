//! The access-phase handler: on_request_headers for the location's chain, and the parking
//! place of a request whose filter waits for its HTTP calls.
//! Note: `return` answers in the rewrite phase, before access, so a location with `return`
//! never runs request callbacks (as with auth_basic); use a content handler instead.

use ngx::ffi::*;

use crate::http::chain::{self, ChainResult, Headers, RequestCtx};


pub(crate) unsafe extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    crate::util::guard("access handler", NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t, || {
        let Some(ctx) = chain::get_or_create(r) else { return NGX_DECLINED as ngx_int_t };
        if ctx.request_headers_done {
            if ctx.answered {
                return NGX_DECLINED as ngx_int_t;
            }
            if ctx.waiting.is_some() {
                // Woken by a call response (or by an unrelated write event): go on only
                // once the parked filter has.
                return match super::calls::take_resume(ctx) {
                    Some((i, res)) if ctx.waiting_in_body => crate::http::request_body::resume(r, ctx, i, res),
                    // The parked filter went on: the rest of the chain runs.
                    Some((i, ChainResult::Continue)) => run_from(r, ctx, i + 1),
                    Some((_, res)) => apply(r, ctx, res),
                    None => NGX_AGAIN as ngx_int_t,
                };
            }
            // Back after reading the body for the filters, or after an internal redirect.
            return crate::http::request_body::read_for_filters(r).unwrap_or(NGX_DECLINED as ngx_int_t);
        }
        ctx.request_headers_done = true;
        run_from(r, ctx, 0)
    })
}

/// Runs on_request_headers of filters `from..`, then reads the body for the filters.
unsafe fn run_from(r: *mut ngx_http_request_t, ctx: &mut RequestCtx, from: usize) -> ngx_int_t {
    let res = chain::run_headers(r, ctx, Headers::Request, from);
    super::calls::send_new(r, ctx);
    match res {
        ChainResult::Paused(i) if super::calls::pending(ctx, i) > 0 => {
            // Parked until the calls are answered: the phase engine calls us again.
            ctx.waiting = Some(i);
            NGX_AGAIN as ngx_int_t
        }
        other => apply(r, ctx, other),
    }
}

/// Applies what the chain decided.
unsafe fn apply(r: *mut ngx_http_request_t, ctx: &mut RequestCtx, res: ChainResult) -> ngx_int_t {
    match res {
        ChainResult::Continue => crate::http::request_body::read_for_filters(r).unwrap_or(NGX_DECLINED as ngx_int_t),
        ChainResult::Paused(i) => {
            chain::log_at(
                r,
                NGX_LOG_WARN,
                "chain",
                "on_request_headers returned Pause with no local response and no HTTP call pending: continuing",
            );
            run_from(r, ctx, i + 1)
        }
        res @ (ChainResult::Failed | ChainResult::Closed) => {
            chain::mark_answered(ctx);
            chain::end_status(r, &res)
        }
        ChainResult::Local(lr) => {
            chain::mark_answered(ctx);
            ctx.properties.code_details = Some(lr.details.clone());
            let rc = crate::http::local_response::send(r, &lr);
            // We answered, like a content handler: finalize here and stop the phases.
            ngx_http_finalize_request(r, rc);
            NGX_DONE as ngx_int_t
        }
    }
}
