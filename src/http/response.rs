//! Output filters: on_response_headers in the header filter, on_response_body in the body
//! filter. A filter may hold the response headers (Pause from on_response_headers) until it
//! continues from on_response_body; while they are held, it may still replace the response
//! with a local response. Once any filter has on_response_body, the body may change length,
//! so Content-Length is dropped (or set exactly when the whole body was held).

use std::ptr::addr_of_mut;

use ngx::ffi::*;
use proxy_wasm_host::LocalResponse;

use super::chain::{self, BodyEnd, ChainResult, Direction, Headers, RequestCtx};
use crate::http::stream::{NgxStream, Phase};

static mut NEXT_HEADER_FILTER: ngx_http_output_header_filter_pt = None;
static mut NEXT_BODY_FILTER: ngx_http_output_body_filter_pt = None;

/// Called from postconfiguration, once per configuration load, like every nginx filter.
pub(crate) unsafe fn install() {
    NEXT_HEADER_FILTER = ngx_http_top_header_filter;
    ngx_http_top_header_filter = Some(header_filter);
    NEXT_BODY_FILTER = ngx_http_top_body_filter;
    ngx_http_top_body_filter = Some(body_filter);
}

unsafe fn next_header(r: *mut ngx_http_request_t) -> ngx_int_t {
    match *addr_of_mut!(NEXT_HEADER_FILTER) {
        Some(f) => f(r),
        None => NGX_ERROR as ngx_int_t,
    }
}

unsafe fn next_body(r: *mut ngx_http_request_t, chain: *mut ngx_chain_t) -> ngx_int_t {
    match *addr_of_mut!(NEXT_BODY_FILTER) {
        Some(f) => f(r, chain),
        None => NGX_ERROR as ngx_int_t,
    }
}

/// The response of a failed filter: the location's failure status, empty.
fn internal_error() -> LocalResponse {
    LocalResponse {
        status: 500,
        details: b"wasm_filter_failed".to_vec(),
        body: Vec::new(),
        headers: Vec::new(),
        grpc_status: -1,
    }
}

pub(super) unsafe fn failed(r: *mut ngx_http_request_t) -> LocalResponse {
    LocalResponse { status: crate::conf::failure_status(r), ..internal_error() }
}

unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    crate::util::guard("header filter", NGX_ERROR as ngx_int_t, || {
        if let Some(call) = crate::calls::call_of(r) {
            // An HTTP call's response: captured for the plugin, never sent anywhere.
            return crate::calls::capture_headers(r, call, || super::calls::response_headers(r));
        }
        let Some(ctx) = chain::get_or_create(r) else { return next_header(r) };
        if let Some(lr) = ctx.pending_local.take() {
            // A local response from on_request_body, in place of nginx's error page.
            return replace_before_body(r, ctx, &lr);
        }
        if ctx.answered || ctx.response_headers_done {
            return next_header(r);
        }
        ctx.response_headers_done = true;
        let res = chain::run_headers(r, ctx, Headers::Response, 0);
        super::calls::send_new(r, ctx);
        match res {
            ChainResult::Continue => send_headers(r, ctx, None),
            ChainResult::Paused(i) if !chain::response_has_no_body(r) => {
                // Held: the body filter sends them once filter i continues (or, when it
                // waits for its calls, once they are answered).
                ctx.response_headers_held = Some(i);
                if super::calls::pending(ctx, i) > 0 {
                    ctx.response_waiting = Some(i);
                }
                (*r).set_filter_need_in_memory(1);
                NGX_OK as ngx_int_t
            }
            ChainResult::Paused(i) => {
                chain::log_at(r, NGX_LOG_WARN, "chain", "on_response_headers returned Pause on a response without a body: continuing");
                match resume_headers(r, ctx, i + 1, None) {
                    Some(lr) => replace_before_body(r, ctx, &lr),
                    None => NGX_OK as ngx_int_t,
                }
            }
            ChainResult::Local(lr) => replace_before_body(r, ctx, &lr),
            ChainResult::Failed => replace_before_body(r, ctx, &failed(r)),
            ChainResult::Closed => close(ctx),
        }
    })
}

/// proxy_close_stream on the response: stop sending and close the connection.
pub(super) fn close(ctx: &mut RequestCtx) -> ngx_int_t {
    ctx.answered = true;
    ctx.swallow_body = true;
    ctx.response_headers_held = None;
    NGX_ERROR as ngx_int_t
}

/// Passes the response headers on. `final_len` is the exact body length when it is known
/// (the whole body was held); otherwise, with body callbacks, the length is dropped.
unsafe fn send_headers(r: *mut ngx_http_request_t, ctx: &RequestCtx, final_len: Option<usize>) -> ngx_int_t {
    if let Some(n) = final_len {
        let ho = &mut (*r).headers_out;
        if !ho.content_length.is_null() {
            (*ho.content_length).hash = 0;
            ho.content_length = std::ptr::null_mut();
        }
        ho.content_length_n = n as off_t;
        // The whole body is here: trailers exist now or never (only they need chunked).
        if ctx.response_trailers_wanted && (*r).headers_out.trailers.part.nelts > 0 {
            (*r).set_expect_trailers(1);
        }
    } else if (ctx.response_body_wanted || ctx.response_trailers_wanted) && !chain::response_has_no_body(r) {
        ngx_http_clear_content_length(r);
        ngx_http_clear_accept_ranges(r);
        // The response is chunked anyway: let filters add trailers at the end of the body.
        (*r).set_expect_trailers(1);
    }
    next_header(r)
}

unsafe fn ngx_http_clear_content_length(r: *mut ngx_http_request_t) {
    let ho = &mut (*r).headers_out;
    ho.content_length_n = -1;
    if !ho.content_length.is_null() {
        (*ho.content_length).hash = 0;
        ho.content_length = std::ptr::null_mut();
    }
}

unsafe fn ngx_http_clear_accept_ranges(r: *mut ngx_http_request_t) {
    let ho = &mut (*r).headers_out;
    (*r).set_allow_ranges(0);
    if !ho.accept_ranges.is_null() {
        (*ho.accept_ranges).hash = 0;
        ho.accept_ranges = std::ptr::null_mut();
    }
}

/// Runs on_response_headers from filter `from` on, after a held filter continued. Returns
/// a response to send instead when a filter answers or fails; held again if one pauses.
pub(super) unsafe fn resume_headers(r: *mut ngx_http_request_t, ctx: &mut RequestCtx, from: usize, final_len: Option<usize>) -> Option<LocalResponse> {
    let mut from = from;
    loop {
        match chain::run_headers(r, ctx, Headers::Response, from) {
            ChainResult::Continue => {
                ctx.response_headers_held = None;
                let rc = send_headers(r, ctx, final_len);
                if rc == NGX_ERROR as ngx_int_t {
                    return Some(internal_error());
                }
                return None;
            }
            ChainResult::Paused(i) if final_len.is_none() => {
                ctx.response_headers_held = Some(i);
                return None;
            }
            // The whole body is known: a later pause has nothing left to wait for.
            ChainResult::Paused(i) => from = i + 1,
            ChainResult::Local(lr) => return Some(lr),
            ChainResult::Failed | ChainResult::Closed => return Some(failed(r)),
        }
    }
}

/// replace_response from the header filter, before any of the original body: once the local
/// response is out whole, the handler that produced the response need not send its body at
/// all. As for a HEAD request (r->header_only), the static handler then skips its file and
/// the upstream module stops reading the upstream instead of passing a body to discard.
unsafe fn replace_before_body(r: *mut ngx_http_request_t, ctx: &mut RequestCtx, lr: &LocalResponse) -> ngx_int_t {
    let rc = replace_response(r, ctx, lr);
    if rc != NGX_ERROR as ngx_int_t {
        (*r).set_header_only(1);
    }
    rc
}

/// Sends `lr` in place of the response whose headers have not been passed on yet.
unsafe fn replace_response(r: *mut ngx_http_request_t, ctx: &mut RequestCtx, lr: &LocalResponse) -> ngx_int_t {
    ctx.answered = true;
    ctx.swallow_body = true;
    ctx.response_headers_held = None;
    ctx.properties.code_details = Some(lr.details.clone());
    if !crate::http::local_response::set_headers(r, lr) {
        return NGX_ERROR as ngx_int_t;
    }
    let rc = next_header(r);
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
        return rc;
    }
    ctx.properties.response_body_bytes = lr.body.len() as u64;
    let Some(mut out) = super::local_response::body_chain(r, &lr.body) else { return NGX_ERROR as ngx_int_t };
    next_body(r, &mut out)
}

unsafe extern "C" fn body_filter(r: *mut ngx_http_request_t, chain: *mut ngx_chain_t) -> ngx_int_t {
    crate::util::guard("body filter", NGX_ERROR as ngx_int_t, || {
        if let Some(call) = crate::calls::call_of(r) {
            return crate::calls::capture_body(call, chain);
        }
        let ctx = match chain::get(r) {
            Some(ctx) if r == (*r).main => ctx,
            _ => return next_body(r, chain),
        };
        if ctx.swallow_body {
            // A local response was already sent whole: consume the original body.
            crate::util::buf::discard(chain);
            return NGX_OK as ngx_int_t;
        }
        // A response a filter already answered (local response, failure) passes untouched.
        if ctx.answered
            || (!ctx.response_body_wanted && !ctx.response_trailers_wanted && ctx.response_headers_held.is_none())
        {
            ctx.properties.response_body_bytes += crate::util::buf::size(chain);
            return next_body(r, chain);
        }
        let pool = (*r).pool;
        let mut chain = chain;
        if !ctx.pending_in.is_null() || (!chain.is_null() && ctx.out_bufs.backlogged(r)) {
            // The client is behind: keep the input (not consumed, so what feeds us waits)
            // until what we sent has gone out.
            if !chain.is_null() && ngx_chain_add_copy(pool, &mut ctx.pending_in, chain) != NGX_OK as ngx_int_t {
                return NGX_ERROR as ngx_int_t;
            }
            let rc = next_body(r, std::ptr::null_mut());
            if rc == NGX_ERROR as ngx_int_t {
                return rc;
            }
            ctx.out_bufs.update(pool, std::ptr::null_mut());
            if ctx.out_bufs.backlogged(r) {
                return NGX_AGAIN as ngx_int_t;
            }
            chain = std::mem::replace(&mut ctx.pending_in, std::ptr::null_mut());
        }
        let measured = crate::util::buf::measure(chain);
        if measured.0 <= PIECE as u64 {
            return run_piece(r, ctx, chain, measured);
        }
        let Ok(pieces) = crate::util::buf::pieces(pool, chain, PIECE) else { return NGX_ERROR as ngx_int_t };
        for (k, &piece) in pieces.iter().enumerate() {
            if ctx.swallow_body {
                // Answered or closed by an earlier piece: the rest of the body is dropped.
                crate::util::buf::discard(piece);
                continue;
            }
            if k > 0 && ctx.out_bufs.backlogged(r) {
                // The rest waits for the client, as above.
                for w in pieces[k..].windows(2) {
                    (*crate::util::buf::last_link(w[0])).next = w[1];
                }
                ctx.pending_in = piece;
                return NGX_AGAIN as ngx_int_t;
            }
            let rc = run_piece(r, ctx, piece, crate::util::buf::measure(piece));
            if rc == NGX_ERROR as ngx_int_t {
                for &rest in &pieces[k + 1..] {
                    crate::util::buf::discard(rest);
                }
                return rc;
            }
        }
        NGX_OK as ngx_int_t
    })
}

/// The most body bytes the filters get in one on_response_body: what a filter reads or
/// holds per call stays bounded when nginx hands over a whole file as one buffer.
const PIECE: usize = 256 * 1024;

/// One piece of the response body through the filters (all of it when it is small), with
/// its size and flags (`buf::measure`).
unsafe fn run_piece(
    r: *mut ngx_http_request_t,
    ctx: &mut RequestCtx,
    chain: *mut ngx_chain_t,
    (len, flags): (u64, crate::util::buf::Flags),
) -> ngx_int_t {
    let pool = (*r).pool;
    // A subrequest's output ends with last_in_chain (last_buf is the main request's).
    let eos = flags.last_buf || (flags.last_in_chain && r != (*r).main);
    let flush = flags.flush;
    if len == 0 && !eos {
        // A bare flush: nothing for the plugins, let the writer flush what it has.
        if ctx.response_headers_held.is_some() {
            crate::util::buf::discard(chain);
            return NGX_OK as ngx_int_t;
        }
        // Also how nginx's writer calls again once the client can take more: our
        // buffers it has written since are free again.
        let rc = next_body(r, chain);
        ctx.out_bufs.update(pool, std::ptr::null_mut());
        return rc;
    }
    let (rc, passed) = run_body(r, ctx, chain::Chunk::from_chain(chain, len as usize), eos, flush);
    if !passed {
        // Copied, changed or held: nginx's buffers are done with.
        crate::util::buf::discard(chain);
    }
    rc
}

/// Passes `data` through the filters' on_response_body in order, buffering at a filter that
/// pauses, and sends what comes out of the last one: nginx's buffers as they came when no
/// filter changed them, else the new bytes. While filter h holds the response headers, the
/// body goes no further than h; once h passes it on, the headers go on through the filters
/// after h (which may hold them again) and so does the body. Returns the status and whether
/// the chunk's own buffers were passed on.
unsafe fn run_body(r: *mut ngx_http_request_t, ctx: &mut RequestCtx, data: chain::Chunk, eos: bool, flush: bool) -> (ngx_int_t, bool) {
    run_body_from(r, ctx, 0, data, eos, flush)
}

/// `run_body` from filter `from` on (a filter that waited for its calls resumes there).
pub(super) unsafe fn run_body_from(
    r: *mut ngx_http_request_t,
    ctx: &mut RequestCtx,
    from: usize,
    mut data: chain::Chunk,
    eos: bool,
    flush: bool,
) -> (ngx_int_t, bool) {
    let n = ctx.filters.len();
    let mut from = from;
    loop {
        let held = ctx.response_headers_held;
        let mut to = held.map_or(n, |h| h + 1);
        if let Some(w) = ctx.response_waiting {
            // Filter w waits for its calls: the body goes no further than the filters
            // before it, and waits at w (its on_response_body runs when it resumes).
            to = to.min(w);
        }
        data = match chain::run_body(r, ctx, Direction::Response, from..to, data, eos) {
            BodyEnd::Done(data) if ctx.response_waiting.is_some_and(|w| w == to) => {
                let w = to;
                let Ok(mut bytes) = data.into_bytes() else { return (local_from_body(r, ctx, &failed(r)), false) };
                let held = &mut ctx.filters[w].response_body;
                held.append(&mut bytes);
                if held.len() > crate::conf::body_buffer_limit(r) {
                    chain::log_at(r, NGX_LOG_ERR, "chain", "a filter waiting for its calls holds more than proxy_wasm_body_buffer_limit of the response body");
                    return (replace_or_cut(r, ctx), false);
                }
                if eos {
                    super::response_wait::wait_for_calls(r, ctx, w, true);
                }
                return (NGX_OK as ngx_int_t, false);
            }
            BodyEnd::Done(data) => data,
            BodyEnd::Held => return (NGX_OK as ngx_int_t, false),
            BodyEnd::Waiting(w) => {
                ctx.response_held_seen = true;
                super::response_wait::wait_for_calls(r, ctx, w, eos);
                return (NGX_OK as ngx_int_t, false);
            }
            BodyEnd::OverLimit => return (replace_or_cut(r, ctx), false),
            BodyEnd::Stopped(ChainResult::Local(lr)) => return (local_from_body(r, ctx, &lr), false),
            BodyEnd::Stopped(ChainResult::Closed) => return (close(ctx), false),
            BodyEnd::Stopped(_) => return (local_from_body(r, ctx, &failed(r)), false),
        };
        let Some(h) = held else { break };
        // The filter that held the headers continued: headers go on now.
        let later_body = ctx.filters[h + 1..].iter().any(|f| f.exports.response_body);
        let final_len = (eos && !later_body).then_some(data.len());
        if let Some(lr) = resume_headers(r, ctx, h + 1, final_len) {
            return (local_from_body(r, ctx, &lr), false);
        }
        from = h + 1;
    }
    if ctx.response_headers_held.is_some() {
        return (NGX_OK as ngx_int_t, false);
    }
    if eos && ctx.response_trailers_wanted {
        if let Err(rc) = run_trailers(r, ctx) {
            return (rc, false);
        }
    }
    ctx.properties.response_body_bytes += data.len() as u64;
    if let Some(cl) = data.untouched() {
        return (next_body(r, cl), true);
    }
    // Changed bytes, never nginx's buffers: nothing left to read.
    let data = data.into_bytes().unwrap_or_default();
    if data.is_empty() && !eos && !flush {
        return (NGX_OK as ngx_int_t, false);
    }
    let pool = (*r).pool;
    let Some(out) = ctx.out_bufs.chain(pool, &data) else { return (NGX_ERROR as ngx_int_t, false) };
    let last = crate::util::buf::last_buf_of(out);
    (*last).set_last_buf(u32::from(eos && r == (*r).main));
    (*last).set_last_in_chain(u32::from(eos));
    (*last).set_flush(u32::from(flush));
    let rc = next_body(r, out);
    ctx.out_bufs.update(pool, out);
    (rc, false)
}

/// Past the body buffer limit: a 502 while the headers are held, else the response is cut.
unsafe fn replace_or_cut(r: *mut ngx_http_request_t, ctx: &mut RequestCtx) -> ngx_int_t {
    if ctx.response_headers_held.is_some() {
        return replace_response(r, ctx, &LocalResponse { status: 502, ..internal_error() });
    }
    NGX_ERROR as ngx_int_t
}

/// on_response_trailers over the chain, when the response has trailers (from add_trailer
/// or added by a filter in on_response_body at end of stream). The headers are gone: a
/// local response is no longer possible, a failure or close cuts the response.
unsafe fn run_trailers(r: *mut ngx_http_request_t, ctx: &mut RequestCtx) -> Result<(), ngx_int_t> {
    let mut n = 0u32;
    {
        let mut s = NgxStream::new(r, "", Phase::Response);
        s.visit(proxy_wasm_host::MapType::ResponseTrailers, &mut |_, _| {
            n += 1;
            false
        });
    }
    if n == 0 {
        return Ok(());
    }
    for i in 0..ctx.filters.len() {
        if !ctx.filters[i].exports.response_trailers {
            continue;
        }
        let res = chain::step(r, ctx, i, &mut |inst, id, _, seed| {
            let mut stream = seed.stream(Phase::Response);
            Some(inst.on_response_trailers(id, &mut stream, n))
        });
        match res {
            ChainResult::Continue | ChainResult::Paused(_) => {}
            ChainResult::Local(_) => {
                chain::log_at(r, NGX_LOG_ERR, "chain", "a local response from on_response_trailers comes too late: ignored");
            }
            ChainResult::Failed | ChainResult::Closed => return Err(close(ctx)),
        }
    }
    Ok(())
}

/// A local response (or a failure) from on_response_body: possible only while the headers
/// are still held; once they are sent, the response can only be cut short.
pub(super) unsafe fn local_from_body(r: *mut ngx_http_request_t, ctx: &mut RequestCtx, lr: &LocalResponse) -> ngx_int_t {
    if ctx.response_headers_held.is_some() || (*r).header_sent() == 0 {
        return replace_response(r, ctx, lr);
    }
    chain::log_at(r, NGX_LOG_ERR, "chain", "a local response or failure after the response headers were sent: closing the connection");
    ctx.swallow_body = true;
    NGX_ERROR as ngx_int_t
}
