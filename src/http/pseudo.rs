//! Request pseudo-headers: `:method`, `:path` (parsed as nginx parses a request line) and
//! `:authority` (checked as nginx checks Host), `:scheme` read-only.

use std::ptr;

use ngx::ffi::*;
use ngx::http::HttpModuleServerConf;
use proxy_wasm_host::Status;

use super::stream::{eq_key, NgxStream};
use crate::util::list::{bytes, pool_str};

/// nginx's Host rules (ngx_http_validate_host, not exported by nginx 1.22): no path separator, no
/// space or control byte, no empty label (".."), an optional trailing dot dropped, IPv6
/// literals in brackets, a port after ':'. Returns the server name nginx derives from it
/// (lowercased, without port), which virtual hosts, `$host` and `root /srv/$host` use.
pub(crate) fn validate_host(host: &[u8]) -> Option<Vec<u8>> {
    #[derive(PartialEq)]
    enum St {
        Usual,
        Literal,
        Rest,
    }
    let mut state = St::Usual;
    let mut dot_pos: Option<usize> = None;
    let mut host_len = host.len();
    for (i, &ch) in host.iter().enumerate() {
        match ch {
            b'.' => {
                if i > 0 && dot_pos == Some(i - 1) {
                    return None;
                }
                dot_pos = Some(i);
            }
            b':' => {
                if state == St::Usual {
                    host_len = i;
                    state = St::Rest;
                }
            }
            b'[' => {
                if i == 0 {
                    state = St::Literal;
                }
            }
            b']' => {
                if state == St::Literal {
                    host_len = i + 1;
                    state = St::Rest;
                }
            }
            b'/' => return None,
            c if c <= 0x20 || c == 0x7f => return None,
            _ => {}
        }
    }
    if host_len > 0 && dot_pos == Some(host_len - 1) {
        host_len -= 1;
    }
    if host_len == 0 {
        return None;
    }
    Some(host[..host_len].to_ascii_lowercase())
}

/// A Host header written as a plain header obeys the rules of :authority.
pub(super) fn host_edit_ok(key: &[u8], value: &[u8]) -> bool {
    !eq_key(key, b"host") || validate_host(value).is_some()
}

/// Sets the request target as nginx's request-line parser would: the raw value stays the
/// unparsed URI (what proxy_pass sends), r->uri is percent-decoded with dot segments resolved
/// by nginx's own ngx_http_parse_complex_uri (a ".." above the root is refused, as nginx
/// answers 400 to such a request line), the query string is split off into r->args, and
/// `alias` is told the URI no longer matches the location (valid_location = 0, as `rewrite
/// ... break` does). A refused value leaves the request as it was.
unsafe fn set_path(r: *mut ngx_http_request_t, value: &[u8]) -> Status {
    if !value.starts_with(b"/") || value.iter().any(|&b| b <= b' ' || b == 0x7f || b == b'#') {
        return Status::BadArgument;
    }
    if (*r).valid_unparsed_uri() != 0 && bytes(&(*r).unparsed_uri) == value {
        // Unchanged: the location still matches the URI (`alias` keeps working).
        return Status::Ok;
    }
    // pool_str NUL-terminates: ngx_http_parse_complex_uri reads one byte past the end.
    let Some(raw) = pool_str(r, value) else { return Status::InternalFailure };
    let decoded = ngx_pnalloc((*r).pool, value.len() + 1) as *mut u8;
    if decoded.is_null() {
        return Status::InternalFailure;
    }
    // The parser works on the request's own fields: keep them to restore on refusal.
    let saved = (
        (*r).uri,
        (*r).args,
        (*r).exten,
        (*r).uri_start,
        (*r).uri_end,
        (*r).args_start,
        (*r).uri_ext,
        (*r).quoted_uri(),
        (*r).plus_in_uri(),
        (*r).empty_path_in_uri(),
    );
    (*r).uri_start = raw.data;
    (*r).uri_end = raw.data.add(raw.len);
    (*r).uri = ngx_str_t { len: value.len(), data: decoded };
    (*r).args = ngx_str_t { len: 0, data: ptr::null_mut() };
    (*r).exten = ngx_str_t { len: 0, data: ptr::null_mut() };
    (*r).set_quoted_uri(0);
    (*r).set_plus_in_uri(0);
    (*r).set_empty_path_in_uri(0);
    let merge_slashes = match ngx::http::NgxHttpCoreModule::server_conf(&*r) {
        Some(cscf) => cscf.merge_slashes as ngx_uint_t,
        None => 1,
    };
    let rc = ngx_http_parse_complex_uri(r, merge_slashes);
    let args_start = (*r).args_start;
    (*r).uri_start = saved.3;
    (*r).uri_end = saved.4;
    (*r).args_start = saved.5;
    (*r).uri_ext = saved.6;
    if rc != NGX_OK as ngx_int_t || (*r).uri.len == 0 {
        (*r).uri = saved.0;
        (*r).args = saved.1;
        (*r).exten = saved.2;
        (*r).set_quoted_uri(saved.7);
        (*r).set_plus_in_uri(saved.8);
        (*r).set_empty_path_in_uri(saved.9);
        return Status::BadArgument;
    }
    // As ngx_http_process_request_uri: the query string runs from '?' to the end.
    let end = raw.data.add(raw.len);
    if !args_start.is_null() && end > args_start {
        (*r).args = ngx_str_t { len: end.offset_from(args_start) as usize, data: args_start };
    }
    (*r).unparsed_uri = raw;
    (*r).set_valid_unparsed_uri(1);
    (*r).set_valid_location(0);
    Status::Ok
}

const NGX_HTTP_METHODS: &[(&[u8], u32)] = &[
    (b"GET", NGX_HTTP_GET),
    (b"HEAD", NGX_HTTP_HEAD),
    (b"POST", NGX_HTTP_POST),
    (b"PUT", NGX_HTTP_PUT),
    (b"DELETE", NGX_HTTP_DELETE),
    (b"OPTIONS", NGX_HTTP_OPTIONS),
    (b"PATCH", NGX_HTTP_PATCH),
    (b"TRACE", NGX_HTTP_TRACE),
    (b"CONNECT", NGX_HTTP_CONNECT),
    (b"MKCOL", NGX_HTTP_MKCOL),
    (b"COPY", NGX_HTTP_COPY),
    (b"MOVE", NGX_HTTP_MOVE),
    (b"PROPFIND", NGX_HTTP_PROPFIND),
    (b"PROPPATCH", NGX_HTTP_PROPPATCH),
    (b"LOCK", NGX_HTTP_LOCK),
    (b"UNLOCK", NGX_HTTP_UNLOCK),
];

impl NgxStream<'_> {

    pub(super) unsafe fn set_request_pseudo(&mut self, key: &[u8], value: &[u8]) -> Status {
        let r = self.r;
        match key {
            b":method" => {
                if value.is_empty() || !value.iter().all(|b| b.is_ascii_alphabetic()) {
                    return Status::BadArgument;
                }
                let Some(s) = pool_str(r, value) else { return Status::InternalFailure };
                (*r).method_name = s;
                (*r).method = NGX_HTTP_METHODS
                    .iter()
                    .find(|(m, _)| *m == value)
                    .map(|(_, v)| *v as ngx_uint_t)
                    .unwrap_or(NGX_HTTP_UNKNOWN as ngx_uint_t);
                Status::Ok
            }
            b":path" => set_path(r, value),
            b":authority" => {
                if validate_host(value).is_none() {
                    return Status::BadArgument;
                }
                let st = self.rebuild_in(&|k| eq_key(k, b"host"));
                if st != Status::Ok {
                    return st;
                }
                if crate::util::list::push_header(r, &mut (*r).headers_in.headers, b"Host", value).is_none() {
                    return Status::InternalFailure;
                }
                self.refresh_in_shortcuts();
                Status::Ok
            }
            // nginx cannot change the scheme of a connection; accept only the current one.
            b":scheme" if value == self.scheme() => Status::Ok,
            _ => Status::BadArgument,
        }
    }
}
