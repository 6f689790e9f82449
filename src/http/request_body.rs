//! Request bodies: on_request_body, chunk by chunk, as nginx reads the body.
//!
//! A request body filter (in nginx's request body filter chain, after chunked decoding)
//! passes each chunk through the filters in order, buffering at a filter that pauses.
//! When no content handler would read the body (or before it does), the access phase reads
//! it for the filters, the way ngx_http_mirror_module does, and then resumes the phases;
//! the body stays available to proxy_pass and friends. Body edits change what upstreams
//! receive: at the end of the body, r->headers_in.content_length_n is the new length, which
//! proxy_pass sends as Content-Length (with request buffering, nginx's default).

use std::ptr::addr_of_mut;

use ngx::ffi::*;

use super::chain::{self, BodyEnd, BodyRead, ChainResult, Direction};

static mut NEXT_REQUEST_BODY_FILTER: ngx_http_request_body_filter_pt = None;

pub(crate) unsafe fn install() {
    NEXT_REQUEST_BODY_FILTER = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = Some(request_body_filter);
}

unsafe fn next(r: *mut ngx_http_request_t, cl: *mut ngx_chain_t) -> ngx_int_t {
    match *addr_of_mut!(NEXT_REQUEST_BODY_FILTER) {
        Some(f) => f(r, cl),
        None => NGX_ERROR as ngx_int_t,
    }
}

/// From the access handler once the request headers went through: reads the body if a
/// filter wants it. Returns None to go on with the phases, or the handler's return code.
pub(crate) unsafe fn read_for_filters(r: *mut ngx_http_request_t) -> Option<ngx_int_t> {
    let ctx = chain::get(r)?;
    match ctx.request_body_read {
        BodyRead::Done => return None,
        BodyRead::Reading => return Some(NGX_DONE as ngx_int_t),
        BodyRead::NotStarted => {}
    }
    if !ctx.request_body_wanted || !chain::request_has_body(r) || !(*r).request_body.is_null() {
        return None;
    }
    ctx.request_body_read = BodyRead::Reading;
    // The request body filter runs inside this call (and later, as data arrives).
    let rc = ngx_http_read_client_request_body(r, Some(body_read_done));
    if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
        return Some(rc);
    }
    if ctx.waiting_in_body {
        // Parked while nginx read the part that came with the headers: nginx has set its
        // reader's handler (and timer) only now.
        park_reader(r, ctx);
    }
    // Like a content handler that read the body: the reader holds a reference (r->count).
    ngx_http_finalize_request(r, NGX_DONE as ngx_int_t);
    Some(NGX_DONE as ngx_int_t)
}

unsafe extern "C" fn body_read_done(r: *mut ngx_http_request_t) {
    crate::util::guard("request body handler", (), || {
        if let Some(ctx) = chain::get(r) {
            ctx.request_body_read = BodyRead::Done;
        }
        // Keep the body for the content handler, and run the phases again from access.
        (*r).set_preserve_body(1);
        (*r).write_event_handler = Some(ngx_http_core_run_phases);
        ngx_http_core_run_phases(r);
    })
}

unsafe extern "C" fn request_body_filter(r: *mut ngx_http_request_t, input: *mut ngx_chain_t) -> ngx_int_t {
    crate::util::guard("request body filter", NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t, || {
        let ctx = match chain::get(r) {
            Some(ctx) if r == (*r).main && ctx.request_body_wanted && !ctx.answered && !ctx.request_body_passed => ctx,
            _ => return next(r, input),
        };
        let mut data = Vec::new();
        let Ok(flags) = crate::util::buf::drain(input, &mut data) else { return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t };
        let eos = flags.last_buf;
        if ctx.waiting.is_some() {
            // A filter holds the whole body while its HTTP calls run (a flush meanwhile).
            return NGX_OK as ngx_int_t;
        }
        match run_chain(r, ctx, 0, data, eos) {
            Ok(Some(data)) => pass(r, ctx, data, eos),
            Ok(None) => NGX_OK as ngx_int_t,
            Err(rc) => rc,
        }
    })
}

/// Runs on_request_body of filters `from..` over `data`. Ok(Some) is what goes on to
/// nginx; Ok(None) means a filter holds it (paused, or waiting for its HTTP calls at the
/// end of the body); Err is the status that stops the request.
unsafe fn run_chain(
    r: *mut ngx_http_request_t,
    ctx: &mut chain::RequestCtx,
    from: usize,
    data: Vec<u8>,
    eos: bool,
) -> Result<Option<Vec<u8>>, ngx_int_t> {
    let n = ctx.filters.len();
    match chain::run_body(r, ctx, Direction::Request, from..n, chain::Chunk::from_bytes(data), eos) {
        // Bytes, never nginx's buffers: nothing to read.
        BodyEnd::Done(chunk) => Ok(Some(chunk.into_bytes().unwrap_or_default())),
        BodyEnd::Held => Ok(None),
        BodyEnd::Waiting(i) => {
            // Held whole until the calls are answered (access_handler -> resume). The body
            // is all read: nginx's reader must not time the client out meanwhile.
            ctx.waiting = Some(i);
            ctx.waiting_in_body = true;
            park_reader(r, ctx);
            Ok(None)
        }
        BodyEnd::OverLimit => {
            chain::mark_answered(ctx);
            Err(NGX_HTTP_REQUEST_ENTITY_TOO_LARGE as ngx_int_t)
        }
        BodyEnd::Stopped(res) => Err(stop(r, ctx, res)),
    }
}

/// A filter answered, failed or closed during the request body: the status that ends the
/// request. A local response is sent by the header filter in place of the error page nginx
/// produces when body reading stops with that status.
unsafe fn stop(r: *mut ngx_http_request_t, ctx: &mut chain::RequestCtx, res: ChainResult) -> ngx_int_t {
    chain::mark_answered(ctx);
    match res {
        ChainResult::Local(lr) => {
            ctx.pending_local = Some(lr);
            NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t
        }
        res => chain::end_status(r, &res),
    }
}

/// Passes the filtered bytes on to nginx's next request body filter.
unsafe fn pass(r: *mut ngx_http_request_t, ctx: &mut chain::RequestCtx, data: Vec<u8>, eos: bool) -> ngx_int_t {
    ctx.request_body_out += data.len();
    if eos {
        set_request_length(r, ctx.request_body_out);
        ctx.request_body_passed = true;
    }
    if data.is_empty() && !eos {
        return NGX_OK as ngx_int_t;
    }
    let Some(mut out) = crate::util::buf::chain_of((*r).pool, &data, true) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    (*out.buf).set_last_buf(u32::from(eos));
    (*out.buf).set_last_in_chain(u32::from(eos));
    next(r, &mut out)
}

/// From the access handler: filter `i` held the body for its HTTP calls and went on with
/// `res`. Finishes the body (the rest of the chain, then nginx's reader completes and runs
/// the phases again), or ends the request.
pub(crate) unsafe fn resume(r: *mut ngx_http_request_t, ctx: &mut chain::RequestCtx, i: usize, res: ChainResult) -> ngx_int_t {
    ctx.waiting_in_body = false;
    let rc = match res {
        ChainResult::Continue | ChainResult::Paused(_) => {
            let data = std::mem::take(&mut ctx.filters[i].request_body);
            match run_chain(r, ctx, i + 1, data, true) {
                Ok(Some(data)) => {
                    let rc = pass(r, ctx, data, true);
                    if rc == NGX_OK as ngx_int_t {
                        // nginx's reader waits for the end of the body: let it see it. It
                        // runs the phases again when done; until then they stay parked.
                        (*r).read_event_handler = ctx.saved_read_handler.take();
                        (*r).write_event_handler = Some(ngx_http_request_empty_handler);
                        crate::util::event::post((*(*r).connection).read);
                        return NGX_DONE as ngx_int_t;
                    }
                    rc
                }
                Ok(None) => return NGX_DONE as ngx_int_t,
                Err(rc) => rc,
            }
        }
        res => stop(r, ctx, res),
    };
    ngx_http_finalize_request(r, rc);
    NGX_DONE as ngx_int_t
}

/// While a filter holds the (completely read) body for its HTTP calls, nginx's body reader
/// must not run: it would time the client out (client_body_timeout). Its handler is set
/// aside (restored by `resume`) and ours ignores read events and that timer.
unsafe fn park_reader(r: *mut ngx_http_request_t, ctx: &mut chain::RequestCtx) {
    let current = (*r).read_event_handler;
    if current.map(|h| h as usize) != Some(parked_read as *const () as usize) {
        ctx.saved_read_handler = current;
        (*r).read_event_handler = Some(parked_read);
    }
    let rev = (*(*r).connection).read;
    if (*rev).timer_set() != 0 {
        ngx_del_timer(rev);
    }
}

unsafe extern "C" fn parked_read(r: *mut ngx_http_request_t) {
    let rev = (*(*r).connection).read;
    (*rev).set_timedout(0);
    if (*rev).timer_set() != 0 {
        ngx_del_timer(rev);
    }
}

/// The body's final length: what proxy_pass sends as Content-Length, and $content_length.
unsafe fn set_request_length(r: *mut ngx_http_request_t, len: usize) {
    (*r).headers_in.content_length_n = len as off_t;
    let h = (*r).headers_in.content_length;
    if !h.is_null() {
        let s = len.to_string();
        let p = ngx_pnalloc((*r).pool, s.len()) as *mut u8;
        if !p.is_null() {
            std::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
            (*h).value = ngx_str_t { len: s.len(), data: p };
        }
    }
}
