//! Response headers and trailers: the list plus the r->headers_out shortcuts that nginx's
//! header filter prefers to the list (server, date, content-length...).

use std::mem::offset_of;
use std::ptr;

use ngx::ffi::*;
use proxy_wasm_host::hostcalls::framing_header;
use proxy_wasm_host::{MapType, Status};

use super::headers_in::slot;
use super::stream::{eq_key, NgxStream};
use crate::util::list::{bytes, each_elt, pool_str};

/// Statuses a plugin may give a response: final ones nginx frames itself. 1xx would go out
/// with a body (and 101 makes nginx add `Connection: upgrade`); above 599 is no HTTP status.
pub(crate) const FRAMED_STATUS: std::ops::RangeInclusive<ngx_uint_t> = 200..=599;

type Shortcut = (&'static [u8], usize);

/// r->headers_out pointers that ngx_http_header_filter prefers to its own defaults.
const OUT_SHORTCUTS: &[Shortcut] = &[
    (b"server", offset_of!(ngx_http_headers_out_t, server)),
    (b"date", offset_of!(ngx_http_headers_out_t, date)),
    (b"content-length", offset_of!(ngx_http_headers_out_t, content_length)),
    (b"content-encoding", offset_of!(ngx_http_headers_out_t, content_encoding)),
    (b"location", offset_of!(ngx_http_headers_out_t, location)),
    (b"refresh", offset_of!(ngx_http_headers_out_t, refresh)),
    (b"last-modified", offset_of!(ngx_http_headers_out_t, last_modified)),
    (b"content-range", offset_of!(ngx_http_headers_out_t, content_range)),
    (b"accept-ranges", offset_of!(ngx_http_headers_out_t, accept_ranges)),
    (b"www-authenticate", offset_of!(ngx_http_headers_out_t, www_authenticate)),
    (b"expires", offset_of!(ngx_http_headers_out_t, expires)),
    (b"etag", offset_of!(ngx_http_headers_out_t, etag)),
    #[cfg(ngx_linked_headers)]
    (b"cache-control", offset_of!(ngx_http_headers_out_t, cache_control)),
    #[cfg(ngx_linked_headers)]
    (b"link", offset_of!(ngx_http_headers_out_t, link)),
];

impl NgxStream<'_> {

    // ---- response trailers: a plain list, sent by the chunked and HTTP/2 filters ----

    pub(super) unsafe fn remove_trailer(&mut self, key: &[u8]) -> Status {
        each_elt(&mut (*self.r).headers_out.trailers, &mut |e| {
            if eq_key(bytes(&(*e).key), key) {
                (*e).hash = 0;
            }
            false
        });
        Status::Ok
    }

    pub(super) unsafe fn add_trailer(&mut self, key: &[u8], value: &[u8]) -> Status {
        if key.starts_with(b":") {
            return Status::BadArgument;
        }
        match crate::util::list::push_header(self.r, &mut (*self.r).headers_out.trailers, key, value) {
            Some(e) => {
                (*e).hash = 1;
                Status::Ok
            }
            None => Status::InternalFailure,
        }
    }

    // ---- response headers ----

    pub(super) unsafe fn clear_out_shortcut(&mut self, key: &[u8]) {
        let ho = &mut (*self.r).headers_out as *mut ngx_http_headers_out_t;
        for (name, off) in OUT_SHORTCUTS {
            if eq_key(key, name) {
                *slot(ho as *mut u8, *off) = ptr::null_mut();
            }
        }
    }

    pub(super) unsafe fn remove_response(&mut self, key: &[u8]) -> Status {
        let ho = &mut (*self.r).headers_out;
        if eq_key(key, b":status") {
            return Status::BadArgument;
        }
        if eq_key(key, b"content-type") {
            ho.content_type.len = 0;
            ho.content_type_len = 0;
            ho.charset.len = 0;
            ho.content_type_lowcase = ptr::null_mut();
        }
        if eq_key(key, b"content-length") {
            ho.content_length_n = -1;
        }
        if eq_key(key, b"last-modified") {
            ho.last_modified_time = -1;
        }
        // ngx_http_header_filter skips elements whose hash is 0.
        each_elt(&mut ho.headers, &mut |e| {
            if eq_key(bytes(&(*e).key), key) {
                (*e).hash = 0;
            }
            false
        });
        self.clear_out_shortcut(key);
        Status::Ok
    }

    pub(super) unsafe fn add_response(&mut self, key: &[u8], value: &[u8]) -> Status {
        let r = self.r;
        let ho = &mut (*r).headers_out as *mut ngx_http_headers_out_t;
        if eq_key(key, b":status") {
            let code = std::str::from_utf8(value).ok().and_then(|s| s.parse::<ngx_uint_t>().ok());
            return match code {
                // Unchanged (a read-modify-write of a 101 upgrade, say) is always fine.
                Some(c) if c == (*ho).status => Status::Ok,
                Some(c) if FRAMED_STATUS.contains(&c) => {
                    (*ho).status = c;
                    (*ho).status_line.len = 0;
                    Status::Ok
                }
                _ => Status::BadArgument,
            };
        }
        if key.starts_with(b":") || framing_header(key) {
            return Status::BadArgument;
        }
        if eq_key(key, b"content-type") {
            let Some(s) = pool_str(r, value) else { return Status::InternalFailure };
            (*ho).content_type = s;
            (*ho).content_type_len = value.len();
            (*ho).charset.len = 0;
            (*ho).content_type_lowcase = ptr::null_mut();
            (*ho).content_type_hash = 0;
            return Status::Ok;
        }
        if eq_key(key, b"content-length") {
            // nginx sends the body it has: another length would desync the client (HTTP/1
            // reads the rest as the next response). Removing it (chunked) is always fine.
            return match std::str::from_utf8(value).ok().and_then(|s| s.parse::<i64>().ok()) {
                Some(n) if n >= 0 && n == (*ho).content_length_n as i64 => Status::Ok,
                _ => Status::BadArgument,
            };
        }
        let Some(e) = crate::util::list::push_header(r, &mut (*ho).headers, key, value) else { return Status::InternalFailure };
        // nginx's own response headers use hash 1; the header filter only checks non-zero.
        (*e).hash = 1;
        for (name, off) in OUT_SHORTCUTS {
            if eq_key(key, name) {
                let s = slot(ho as *mut u8, *off);
                if (*s).is_null() {
                    *s = e;
                } else {
                    // Repeats (Cache-Control, Link) are chained where nginx chains them.
                    #[cfg(ngx_linked_headers)]
                    {
                        let mut last = *s;
                        while !(*last).next.is_null() {
                            last = (*last).next;
                        }
                        (*last).next = e;
                    }
                }
            }
        }
        Status::Ok
    }

    pub(super) unsafe fn clear_response(&mut self) {
        let ho = &mut (*self.r).headers_out as *mut ngx_http_headers_out_t;
        each_elt(&mut (*ho).headers, &mut |e| {
            (*e).hash = 0;
            false
        });
        for (_, off) in OUT_SHORTCUTS {
            *slot(ho as *mut u8, *off) = ptr::null_mut();
        }
        let ho = &mut *ho;
        ho.content_type.len = 0;
        ho.content_type_len = 0;
        ho.charset.len = 0;
        ho.content_type_lowcase = ptr::null_mut();
        ho.content_length_n = -1;
        ho.last_modified_time = -1;
    }

    /// Replaces the whole response header set (local responses use it too). Pairs that only
    /// repeat the current response (a read-modify-write) pass the checks of add_response:
    /// the current status, content length and framing headers nginx put there itself.
    pub unsafe fn set_response_pairs(&mut self, pairs: &[(&[u8], &[u8])]) -> Status {
        let mut kept: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        self.visit(MapType::ResponseHeaders, &mut |k, v| {
            if framing_header(k) || eq_key(k, b"content-length") {
                kept.push((k.to_ascii_lowercase(), v.to_vec()));
            }
            false
        });
        for (k, v) in pairs {
            let framing = framing_header(k) || eq_key(k, b"content-length");
            if framing && !kept.iter().any(|(kk, vv)| eq_key(kk, k) && vv == v) {
                return Status::BadArgument;
            }
        }
        let length = (*self.r).headers_out.content_length_n;
        self.clear_response();
        for (k, v) in pairs {
            let st = if framing_header(k) {
                // Checked above: the same header nginx had, put back as it was.
                match crate::util::list::push_header(self.r, &mut (*self.r).headers_out.headers, k, v) {
                    Some(e) => {
                        (*e).hash = 1;
                        Status::Ok
                    }
                    None => Status::InternalFailure,
                }
            } else if eq_key(k, b"content-length") {
                (*self.r).headers_out.content_length_n = length;
                Status::Ok
            } else {
                self.add_response(k, v)
            };
            if st != Status::Ok {
                return st;
            }
        }
        Status::Ok
    }
}
