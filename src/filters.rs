//! Output filters. The header filter runs on_response_headers; a local response sent from
//! there replaces the response, and the body filter then drops the original body.

use std::ptr::addr_of_mut;

use ngx::ffi::*;

use crate::chain::{self, ChainResult, Headers};

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

unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // A panic must not reach nginx: fail this response instead.
    let res = crate::guard("header filter", None, || {
        let Some(ctx) = chain::get_or_create(r) else { return Some(next_header(r)) };
        if ctx.answered || ctx.response_headers_done {
            return Some(next_header(r));
        }
        ctx.response_headers_done = true;
        let lr = match chain::run_headers(r, ctx, Headers::Response) {
            ChainResult::Continue => return Some(next_header(r)),
            ChainResult::Local(lr) => lr,
            ChainResult::Failed => proxy_wasm_host::LocalResponse {
                status: 500,
                details: b"wasm_filter_failed".to_vec(),
                body: Vec::new(),
                headers: Vec::new(),
                grpc_status: -1,
            },
        };
        ctx.answered = true;
        ctx.swallow_body = true;
        Some(replace_response(r, &lr))
    });
    res.unwrap_or(NGX_ERROR as ngx_int_t)
}

/// Sends `lr` in place of the response whose headers are passing through.
unsafe fn replace_response(r: *mut ngx_http_request_t, lr: &proxy_wasm_host::LocalResponse) -> ngx_int_t {
    if !crate::local_response::set_headers(r, "local response", lr) {
        return NGX_ERROR as ngx_int_t;
    }
    let rc = next_header(r);
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
        return rc;
    }
    let Some(mut out) = crate::local_response::body_chain(r, &lr.body) else { return NGX_ERROR as ngx_int_t };
    next_body(r, &mut out)
}

unsafe extern "C" fn body_filter(r: *mut ngx_http_request_t, chain: *mut ngx_chain_t) -> ngx_int_t {
    crate::guard("body filter", NGX_ERROR as ngx_int_t, || {
        match chain::get(r) {
            Some(ctx) if ctx.swallow_body && r == (*r).main => {
                // The local response was already sent whole: consume the original body.
                let mut cl = chain;
                while !cl.is_null() {
                    let b = (*cl).buf;
                    if !b.is_null() {
                        (*b).pos = (*b).last;
                        (*b).file_pos = (*b).file_last;
                    }
                    cl = (*cl).next;
                }
                NGX_OK as ngx_int_t
            }
            _ => next_body(r, chain),
        }
    })
}
