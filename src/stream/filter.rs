//! The data filter in nginx's stream filter chain, called for every chunk in both directions
//! (`from_upstream`): proxy_pass's reads, and what content handlers such as `return` send.
//! Untouched data goes on as nginx's own buffers; changed data goes on in our recycled
//! buffers (the input is then consumed, so nginx reuses its own); paused data is held by the
//! filter that paused (copied out, bounded by proxy_wasm_buffer_limit).

use ngx::ffi::*;

use super::chain::{self, DataEnd};
use super::session::{self, Dir, SessionCtx};
use crate::util::buf;
use crate::util::chunk::Chunk;

static mut NEXT: ngx_stream_filter_pt = None;

/// Puts the filter at the top of nginx's stream filter chain (postconfiguration).
///
/// # Safety
/// Called once per configuration load, in postconfiguration, as nginx's own filters do.
pub(crate) unsafe fn install() {
    NEXT = ngx_stream_top_filter;
    ngx_stream_top_filter = Some(data_filter);
}

unsafe fn next(s: *mut ngx_stream_session_t, cl: *mut ngx_chain_t, from_upstream: ngx_uint_t) -> ngx_int_t {
    match NEXT {
        Some(f) => f(s, cl, from_upstream),
        None => NGX_ERROR as ngx_int_t,
    }
}

unsafe extern "C" fn data_filter(s: *mut ngx_stream_session_t, input: *mut ngx_chain_t, from_upstream: ngx_uint_t) -> ngx_int_t {
    crate::util::guard("stream data filter", NGX_ERROR as ngx_int_t, || {
        let dir = Dir::from_upstream(from_upstream);
        let d = dir as usize;
        let Some(ctx) = session::get(s) else { return next(s, input, from_upstream) };
        if !ctx.wanted[d] || ctx.finished {
            return next(s, input, from_upstream);
        }
        if ctx.stopped {
            buf::discard(input);
            return NGX_ERROR as ngx_int_t;
        }
        let (len, flags) = buf::measure(input);
        if len == 0 && !flags.last_buf {
            // Nothing new (nginx flushing what is pending): our buffers go out as they can.
            let rc = next(s, input, from_upstream);
            ctx.out[d].update((*(*s).connection).pool, std::ptr::null_mut());
            return rc;
        }
        let eos = flags.last_buf;
        if eos {
            ctx.eof[d] = true;
        }
        let end = chain::run_data(s, ctx, dir, Chunk::from_chain(input, len as usize), eos, 0);
        let rc = pass(s, ctx, dir, end, input, eos);
        if rc == NGX_ERROR as ngx_int_t {
            return rc;
        }
        // A callback of this direction resumed the other one (proxy_continue_stream).
        let other = if dir == Dir::Downstream { Dir::Upstream } else { Dir::Downstream };
        // Data to the upstream needs its connection (nginx's write filter takes it as there).
        let writable = other == Dir::Upstream || (!(*s).upstream.is_null() && !(*(*s).upstream).peer.connection.is_null());
        if ctx.resume[other as usize] && writable {
            if let Some(end) = chain::release(s, ctx, other) {
                if pass(s, ctx, other, end, std::ptr::null_mut(), false) == NGX_ERROR as ngx_int_t {
                    return NGX_ERROR as ngx_int_t;
                }
            }
        }
        rc
    })
}

/// Sends what the chain passed in direction `dir` to the next filter: nginx's own buffers
/// (`input`) when untouched, else our copy (the input is then consumed, so nginx reuses it).
unsafe fn pass(s: *mut ngx_stream_session_t, ctx: &mut SessionCtx, dir: Dir, end: DataEnd, input: *mut ngx_chain_t, eos: bool) -> ngx_int_t {
    let d = dir as usize;
    let from_upstream = d as ngx_uint_t;
    match end {
        DataEnd::Done(chunk) => {
            if let Some(cl) = chunk.untouched() {
                return next(s, cl, from_upstream);
            }
            let Ok(bytes) = chunk.into_bytes() else { return NGX_ERROR as ngx_int_t };
            buf::discard(input);
            let pool = (*(*s).connection).pool;
            let Some(out) = ctx.out[d].chain(pool, &bytes) else { return NGX_ERROR as ngx_int_t };
            let last = buf::last_buf_of(out);
            if eos {
                (*last).set_last_buf(1);
            } else {
                (*last).set_flush(1);
            }
            let rc = next(s, out, from_upstream);
            ctx.out[d].update(pool, out);
            rc
        }
        DataEnd::Held => {
            // Nothing goes on (nginx calls again, with nothing new, for what it still has to
            // write).
            buf::discard(input);
            NGX_OK as ngx_int_t
        }
        DataEnd::OverLimit | DataEnd::Stopped => {
            ctx.stopped = true;
            buf::discard(input);
            // nginx's proxy ends the session on NGX_ERROR.
            NGX_ERROR as ngx_int_t
        }
    }
}
