//! A filter waiting for its HTTP or gRPC calls in the response (it paused in
//! on_response_headers or on_response_body with calls pending): what keeps the request
//! from finishing meanwhile, and what goes on when an answer continues it.

use ngx::ffi::*;

use super::chain::{self, ChainResult, RequestCtx};
use super::response::{close, failed, local_from_body, resume_headers, run_body_from};

/// Our bit of r->buffered while the end of the response waits at a filter for its calls:
/// nginx does not finish a request with buffered output (it waits in ngx_http_writer,
/// send_timeout running). The image filter's value: it buffers only what it is given, and
/// nothing passes us while the bit is ours.
const CALLS_BUFFERED: u32 = 0x08;

/// Filter `w` waits for its calls in the response; with `eos` the end of the body waits too.
pub(super) unsafe fn wait_for_calls(r: *mut ngx_http_request_t, ctx: &mut RequestCtx, w: usize, eos: bool) {
    ctx.response_waiting = Some(w);
    if eos {
        ctx.response_eos_held = true;
        (*r).set_buffered((*r).buffered() | CALLS_BUFFERED);
    }
}

/// Filter `i`, which waits for its calls in the response, goes on with `res` (from a call's
/// answer): the headers it holds go on, then the body it holds (through its own
/// on_response_body first); or its local response replaces the response; or the response
/// ends. When the end of the body was held, the request finishes from nginx's writer.
pub(crate) unsafe fn resume_after_calls(r: *mut ngx_http_request_t, ctx: &mut RequestCtx, i: usize, res: ChainResult) {
    ctx.response_waiting = None;
    let eos = std::mem::take(&mut ctx.response_eos_held);
    let rc = match res {
        ChainResult::Continue | ChainResult::Paused(_) => {
            let mut rc = NGX_OK as ngx_int_t;
            if ctx.response_headers_held == Some(i) {
                if let Some(lr) = resume_headers(r, ctx, i + 1, None) {
                    rc = local_from_body(r, ctx, &lr);
                }
            }
            let held = std::mem::take(&mut ctx.filters[i].response_body);
            // Held before its on_response_body saw it (waiting from the headers), or after.
            let from = if std::mem::take(&mut ctx.response_held_seen) { i + 1 } else { i };
            if rc != NGX_ERROR as ngx_int_t && !ctx.answered && (!held.is_empty() || eos) {
                rc = run_body_from(r, ctx, from, chain::Chunk::from_bytes(held), eos, false).0;
            }
            rc
        }
        ChainResult::Local(lr) => local_from_body(r, ctx, &lr),
        ChainResult::Failed => local_from_body(r, ctx, &failed(r)),
        ChainResult::Closed => close(ctx),
    };
    (*r).set_buffered((*r).buffered() & !CALLS_BUFFERED);
    if rc == NGX_ERROR as ngx_int_t {
        ngx_http_finalize_request(r, NGX_ERROR as ngx_int_t);
    } else if eos {
        // The handler finished while the end waited (nginx parked the request in its
        // writer): run the writer, which flushes what is left and finishes the request.
        ngx_http_post_request(r, std::ptr::null_mut());
    }
}
