//! Sending a plugin's local response: status, headers and body exactly as given (no newline
//! appended, unlike Kong), text/plain when a body comes without a content type.

use ngx::ffi::*;
use proxy_wasm_host::{LocalResponse, Status};

use crate::http::stream::{NgxStream, Phase};

/// Replaces r->headers_out with the local response's status and headers.
pub(crate) unsafe fn set_headers(r: *mut ngx_http_request_t, lr: &LocalResponse) -> bool {
    let mut pairs: Vec<(&[u8], &[u8])> = lr
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(b"content-length") && !k.starts_with(b":"))
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    let status = lr.status.to_string();
    pairs.push((b":status", status.as_bytes()));
    if !lr.body.is_empty() && !lr.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(b"content-type")) {
        pairs.push((b"content-type", b"text/plain"));
    }
    let mut stream = NgxStream::new(r, "local response", Phase::Response);
    if stream.set_response_pairs(&pairs) != Status::Ok {
        return false;
    }
    (*r).headers_out.content_length_n = lr.body.len() as off_t;
    true
}

/// A one-buffer chain holding `body`, the last buffer of the response.
pub(crate) unsafe fn body_chain(r: *mut ngx_http_request_t, body: &[u8]) -> Option<ngx_chain_t> {
    crate::util::buf::chain_of((*r).pool, body, r == (*r).main)
}

/// Sends a local response from a phase handler; returns the rc to finalize the request with.
pub(crate) unsafe fn send(r: *mut ngx_http_request_t, lr: &LocalResponse) -> ngx_int_t {
    if ngx_http_discard_request_body(r) != NGX_OK as ngx_int_t {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    if !set_headers(r, lr) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    let rc = ngx_http_send_header(r);
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
        return rc;
    }
    let Some(mut out) = body_chain(r, &lr.body) else { return NGX_ERROR as ngx_int_t };
    ngx_http_output_filter(r, &mut out)
}
