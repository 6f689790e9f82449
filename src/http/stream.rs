//! The host core's `HttpStream` over an `ngx_http_request_t`: request and response header
//! maps, pseudo-headers, and keeping nginx's parsed shortcuts (r->headers_in.host, ...)
//! consistent with the header lists after a plugin edits them.

use std::mem::offset_of;
use std::ptr;

use ngx::ffi::*;
use ngx::http::{HttpModuleMainConf, HttpModuleServerConf, NgxHttpCoreModule};
use proxy_wasm_host::maps::MapBuilder;
use proxy_wasm_host::abi::BufferType;
use proxy_wasm_host::hostcalls::framing_header;
use proxy_wasm_host::{HttpStream, LogLevel, MapType, Status};

use crate::util::log;
use crate::util::list::{bytes, each_elt, pool_str};

/// Which maps exist at this point of the request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Request,
    Response,
}

pub(crate) struct NgxStream<'a> {
    r: *mut ngx_http_request_t,
    label: &'a str,
    phase: Phase,
    /// The body buffered for the running body callback.
    body: Option<(BufferType, &'a mut Vec<u8>)>,
    /// Properties set by the request's filters.
    properties: Option<&'a mut Properties>,
}

/// What one request's filters share beyond nginx's own state.
#[derive(Default)]
pub(crate) struct Properties {
    /// Properties set by the filters, by NUL-joined path (visible to the next filters).
    pub custom: std::collections::HashMap<Vec<u8>, Vec<u8>>,
    /// response.code_details of a local response.
    pub code_details: Option<Vec<u8>>,
    /// Response body bytes passed on (response.size, without chunked framing).
    pub response_body_bytes: u64,
}

impl<'a> NgxStream<'a> {
    /// SAFETY: `r` must be a live request for the lifetime of the stream.
    pub unsafe fn new(r: *mut ngx_http_request_t, label: &'a str, phase: Phase) -> NgxStream<'a> {
        NgxStream { r, label, phase, body: None, properties: None }
    }

    pub fn with_properties(mut self, properties: &'a mut Properties) -> NgxStream<'a> {
        self.properties = Some(properties);
        self
    }

    pub fn request(&self) -> *mut ngx_http_request_t {
        self.r
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Gives the running body callback access to its buffered body.
    pub fn with_body(mut self, which: BufferType, body: &'a mut Vec<u8>) -> NgxStream<'a> {
        self.body = Some((which, body));
        self
    }

    /// The number of headers the plugin will see in `map` (pseudo-headers included).
    pub fn count(&mut self, map: MapType) -> u32 {
        let mut n = 0u32;
        // SAFETY: the request is live (constructor contract).
        unsafe { self.visit(map, &mut |_, _| { n += 1; false }) };
        n
    }
}

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
fn host_edit_ok(key: &[u8], value: &[u8]) -> bool {
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

fn eq_key(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

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

/// Empties an ngx_array_t of element pointers (nginx < 1.23 keeps Cookie headers in one),
/// initialising it if nginx never did (ngx_array_init is inline, not exported).
#[cfg(not(ngx_linked_headers))]
unsafe fn reset_ptr_array(r: *mut ngx_http_request_t, a: *mut ngx_array_t) -> bool {
    let size = std::mem::size_of::<*mut ngx_table_elt_t>();
    if (*a).elts.is_null() || (*a).size != size {
        let elts = ngx_palloc((*r).pool, 2 * size);
        if elts.is_null() {
            return false;
        }
        (*a).elts = elts;
        (*a).nalloc = 2;
        (*a).size = size;
        (*a).pool = (*r).pool;
    }
    (*a).nelts = 0;
    true
}

/// nginx's table of the request headers it files in r->headers_in (ends with an empty name).
unsafe fn headers_in_table() -> impl Iterator<Item = &'static ngx_http_header_t> {
    // SAFETY: an array nginx exports, terminated by an entry with an empty name.
    let base = ptr::addr_of!(ngx_http_headers_in) as *const ngx_http_header_t;
    (0..).map(move |i| &*base.add(i)).take_while(|h| h.name.len != 0)
}

unsafe fn slot(base: *mut u8, off: usize) -> *mut *mut ngx_table_elt_t {
    base.add(off) as *mut *mut ngx_table_elt_t
}

/// The handlers of ngx_http_headers_in that need telling apart: Host's and the unique
/// headers' refuse a duplicate by finalizing the request with 400, and (nginx < 1.23) the
/// one that files Cookie and X-Forwarded-For in arrays. Looked up once per process: the
/// table is nginx's, fixed for the life of the binary.
#[derive(Clone, Copy)]
struct InHandlers {
    host: usize,
    unique: usize,
    #[cfg_attr(ngx_linked_headers, allow(dead_code))]
    multi: usize,
}

impl InHandlers {
    fn get() -> InHandlers {
        static H: std::sync::OnceLock<(usize, usize, usize)> = std::sync::OnceLock::new();
        let &(host, unique, multi) = H.get_or_init(|| {
            // SAFETY: reads nginx's static table (see headers_in_table).
            let of = |name: &[u8]| unsafe {
                headers_in_table()
                    .find(|h| eq_key(bytes(&h.name), name))
                    .and_then(|h| h.handler)
                    .map_or(0, |f| f as usize)
            };
            (of(b"host"), of(b"content-length"), of(b"cookie"))
        });
        InHandlers { host, unique, multi }
    }

    fn same(a: ngx_http_header_handler_pt, b: usize) -> bool {
        b != 0 && a.map(|f| f as usize) == Some(b)
    }
}

/// Files one request header element in its headers_in shortcut the way nginx's parser
/// does: through nginx's own handler (which also derives the connection type and browser
/// flags), except Host and the unique headers, filed directly with the first occurrence
/// winning (their handlers would finalize the request with 400 on a duplicate).
///
/// # Safety
/// `e` is a live element of `r`'s headers_in.headers.
unsafe fn file_in_shortcut(r: *mut ngx_http_request_t, handlers: &InHandlers, e: *mut ngx_table_elt_t) {
    let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(&*r) else { return };
    let key_len = (*e).key.len;
    let hh = ngx_hash_find(&mut cmcf.headers_in_hash, ngx_hash_key((*e).lowcase_key, key_len), (*e).lowcase_key, key_len)
        as *mut ngx_http_header_t;
    if hh.is_null() {
        return;
    }
    if InHandlers::same((*hh).handler, handlers.host) || InHandlers::same((*hh).handler, handlers.unique) {
        let s = slot(&mut (*r).headers_in as *mut ngx_http_headers_in_t as *mut u8, (*hh).offset);
        if (*s).is_null() {
            *s = e;
        }
    } else if let Some(handler) = (*hh).handler {
        // The remaining handlers only file the element (chaining repeats where nginx
        // >= 1.23 chains them) and derive flags; they fail only when out of memory.
        handler(r, e, (*hh).offset);
    }
}

/// $host and virtual-host logic read headers_in.server, derived from Host.
///
/// # Safety
/// `r` is a live request.
unsafe fn derive_server(r: *mut ngx_http_request_t) {
    let host = (*r).headers_in.host;
    if !host.is_null() {
        // Edits were validated (host_edit_ok); a Host nginx itself accepted passes too.
        if let Some(s) = validate_host(bytes(&(*host).value)).and_then(|h| pool_str(r, &h)) {
            (*r).headers_in.server = s;
        }
    }
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
    pub(crate) unsafe fn scheme(&self) -> &'static [u8] {
        #[cfg(ngx_feature = "ssl")]
        if !(*(*self.r).connection).ssl.is_null() {
            return b"https";
        }
        b"http"
    }

    pub(crate) unsafe fn authority(&self) -> &[u8] {
        let hi = &(*self.r).headers_in;
        if !hi.host.is_null() {
            bytes(&(*hi.host).value)
        } else {
            bytes(&hi.server)
        }
    }

    /// Walks a map in the order a plugin sees it; `f` returns true to stop.
    pub(crate) unsafe fn visit(&mut self, map: MapType, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Status {
        let r = self.r;
        match map {
            MapType::RequestHeaders => {
                let pseudo: [(&[u8], &[u8]); 4] = [
                    (b":authority", self.authority()),
                    (b":method", bytes(&(*r).method_name)),
                    (b":path", bytes(&(*r).unparsed_uri)),
                    (b":scheme", self.scheme()),
                ];
                for (k, v) in pseudo {
                    if f(k, v) {
                        return Status::Ok;
                    }
                }
                each_elt(&mut (*r).headers_in.headers, &mut |e| (*e).hash != 0 && f(bytes(&(*e).key), bytes(&(*e).value)));
                Status::Ok
            }
            MapType::ResponseHeaders if self.phase == Phase::Response => {
                let ho = &mut (*r).headers_out;
                let code = ho.status.min(999);
                let status = [b'0' + (code / 100) as u8, b'0' + (code / 10 % 10) as u8, b'0' + (code % 10) as u8];
                if f(b":status", &status) {
                    return Status::Ok;
                }
                if ho.content_type.len > 0 {
                    let mut ct = bytes(&ho.content_type).to_vec();
                    if ho.charset.len > 0 {
                        ct.extend_from_slice(b"; charset=");
                        ct.extend_from_slice(bytes(&ho.charset));
                    }
                    if f(b"content-type", &ct) {
                        return Status::Ok;
                    }
                }
                if ho.content_length.is_null() && ho.content_length_n >= 0 {
                    let n = ho.content_length_n.to_string();
                    if f(b"content-length", n.as_bytes()) {
                        return Status::Ok;
                    }
                }
                if ho.last_modified.is_null() && ho.last_modified_time != -1 {
                    let mut buf = [0u8; 64];
                    let end = ngx_http_time(buf.as_mut_ptr(), ho.last_modified_time);
                    let len = end.offset_from(buf.as_ptr()) as usize;
                    if f(b"last-modified", &buf[..len]) {
                        return Status::Ok;
                    }
                }
                each_elt(&mut ho.headers, &mut |e| (*e).hash != 0 && f(bytes(&(*e).key), bytes(&(*e).value)));
                Status::Ok
            }
            MapType::ResponseTrailers if self.phase == Phase::Response => {
                each_elt(&mut (*r).headers_out.trailers, &mut |e| {
                    (*e).hash != 0 && f(bytes(&(*e).key), bytes(&(*e).value))
                });
                Status::Ok
            }
            // nginx does not keep request trailers.
            _ => Status::NotFound,
        }
    }

    // ---- request headers ----

    /// Points every headers_in shortcut at the list again after an edit that moved or
    /// removed elements (replace, remove, set pairs), as nginx's parser files them: the
    /// headers come from nginx's own table (ngx_http_headers_in, as compiled into the running
    /// nginx: gzip's Accept-Encoding and Via, realip's X-Real-IP, dav's Destination, Depth,
    /// Overwrite and Date...), each run through its own handler (see `file_in_shortcut`).
    unsafe fn refresh_in_shortcuts(&mut self) {
        let r = self.r;
        let hi = &mut (*r).headers_in as *mut ngx_http_headers_in_t;
        let handlers = InHandlers::get();
        for h in headers_in_table() {
            // nginx < 1.23 files Cookie (and X-Forwarded-For) in arrays of element pointers.
            #[cfg(not(ngx_linked_headers))]
            if InHandlers::same(h.handler, handlers.multi) {
                reset_ptr_array(r, (hi as *mut u8).add(h.offset) as *mut ngx_array_t);
                continue;
            }
            *slot(hi as *mut u8, h.offset) = ptr::null_mut();
        }
        // What the handlers derive: set again only by the headers present now.
        (*hi).set_connection_type(0);
        (*hi).set_msie(0);
        (*hi).set_msie6(0);
        (*hi).set_opera(0);
        (*hi).set_gecko(0);
        (*hi).set_chrome(0);
        (*hi).set_safari(0);
        (*hi).set_konqueror(0);
        each_elt(&mut (*hi).headers, &mut |e| {
            if (*e).hash != 0 && !(*e).lowcase_key.is_null() {
                #[cfg(ngx_linked_headers)]
                {
                    (*e).next = ptr::null_mut();
                }
                file_in_shortcut(r, &handlers, e);
            }
            false
        });
        derive_server(r);
    }

    /// Files one element just appended to headers_in.headers (an add moves no other
    /// element, so the other shortcuts stand): nginx's parser does the same per header.
    unsafe fn file_added_in_shortcut(&mut self, e: *mut ngx_table_elt_t) {
        file_in_shortcut(self.r, &InHandlers::get(), e);
        if (*self.r).headers_in.host == e {
            derive_server(self.r);
        }
    }

    /// Rebuilds headers_in.headers without the elements `drop` selects. nginx lists cannot
    /// delete, and a zeroed hash is not enough: proxy_pass and $http_* still see the header.
    unsafe fn rebuild_in(&mut self, drop: &dyn Fn(&[u8]) -> bool) -> Status {
        let r = self.r;
        let mut kept: Vec<ngx_table_elt_t> = Vec::new();
        each_elt(&mut (*r).headers_in.headers, &mut |e| {
            if (*e).hash != 0 && !drop(bytes(&(*e).key)) {
                kept.push(ptr::read(e));
            }
            false
        });
        let mut list: ngx_list_t = std::mem::zeroed();
        if ngx_list_init(&mut list, (*r).pool, kept.len().max(8), std::mem::size_of::<ngx_table_elt_t>()) != NGX_OK as ngx_int_t {
            return Status::InternalFailure;
        }
        (*r).headers_in.headers = list;
        // The list head moved: fix its `last` pointer before pushing into it.
        (*r).headers_in.headers.last = &mut (*r).headers_in.headers.part;
        for e in kept {
            let slot = ngx_list_push(&mut (*r).headers_in.headers) as *mut ngx_table_elt_t;
            if slot.is_null() {
                return Status::InternalFailure;
            }
            ptr::write(slot, e);
        }
        Status::Ok
    }

    unsafe fn set_request_pseudo(&mut self, key: &[u8], value: &[u8]) -> Status {
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

    // ---- response trailers: a plain list, sent by the chunked and HTTP/2 filters ----

    unsafe fn remove_trailer(&mut self, key: &[u8]) -> Status {
        each_elt(&mut (*self.r).headers_out.trailers, &mut |e| {
            if eq_key(bytes(&(*e).key), key) {
                (*e).hash = 0;
            }
            false
        });
        Status::Ok
    }

    unsafe fn add_trailer(&mut self, key: &[u8], value: &[u8]) -> Status {
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

    unsafe fn clear_out_shortcut(&mut self, key: &[u8]) {
        let ho = &mut (*self.r).headers_out as *mut ngx_http_headers_out_t;
        for (name, off) in OUT_SHORTCUTS {
            if eq_key(key, name) {
                *slot(ho as *mut u8, *off) = ptr::null_mut();
            }
        }
    }

    unsafe fn remove_response(&mut self, key: &[u8]) -> Status {
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

    unsafe fn add_response(&mut self, key: &[u8], value: &[u8]) -> Status {
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

    unsafe fn clear_response(&mut self) {
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

impl HttpStream for NgxStream<'_> {
    fn get_property(&mut self, path: &[&[u8]], out: &mut Vec<u8>) -> Status {
        if let Some(p) = self.properties.as_ref() {
            let found = match path {
                [b"response", b"code_details"] => p.code_details.clone(),
                [b"response", b"size"] if self.phase == Phase::Response => {
                    Some((p.response_body_bytes as i64).to_le_bytes().to_vec())
                }
                _ => p.custom.get(&path.join(&0u8)).cloned(),
            };
            if let Some(v) = found {
                out.extend_from_slice(&v);
                return Status::Ok;
            }
        }
        // SAFETY: the request is live (constructor contract).
        unsafe { crate::http::properties::get(self, path, out) }
    }

    fn set_property(&mut self, path: &[&[u8]], value: &[u8]) -> Status {
        // SAFETY: as above.
        match unsafe { crate::http::properties::set(self, path, value) } {
            Status::NotFound => match self.properties.as_mut() {
                Some(p) => {
                    p.custom.insert(path.join(&0u8), value.to_vec());
                    Status::Ok
                }
                None => Status::NotFound,
            },
            st => st,
        }
    }

    fn body(&mut self, which: BufferType) -> Option<&mut Vec<u8>> {
        match &mut self.body {
            Some((t, b)) if *t == which => Some(&mut **b),
            _ => None,
        }
    }

    fn log(&mut self, level: LogLevel, msg: &[u8]) {
        // SAFETY: the request and its connection are live (constructor contract).
        unsafe { log::write((*(*self.r).connection).log, log::ngx_level(level), self.label, msg) }
    }

    fn log_level(&self) -> Option<LogLevel> {
        // SAFETY: as above.
        Some(unsafe { log::proxy_level((*(*self.r).connection).log) })
    }

    fn map_pairs(&mut self, map: MapType, out: &mut MapBuilder) -> Status {
        // SAFETY: as above.
        unsafe {
            self.visit(map, &mut |k, v| {
                out.push_lowercase_key(k, v);
                false
            })
        }
    }

    fn map_get(&mut self, map: MapType, key: &[u8], out: &mut Vec<u8>) -> Status {
        let mut found = false;
        // SAFETY: as above.
        let st = unsafe {
            self.visit(map, &mut |k, v| {
                if eq_key(k, key) {
                    out.extend_from_slice(v);
                    found = true;
                }
                found
            })
        };
        match st {
            Status::Ok if found => Status::Ok,
            Status::Ok => Status::NotFound,
            s => s,
        }
    }

    fn map_set_pairs(&mut self, map: MapType, pairs: &[(&[u8], &[u8])]) -> Status {
        // SAFETY: as above; all writes go to pool memory of this request.
        unsafe {
            match (map, self.phase) {
                (MapType::RequestHeaders, Phase::Request) => {
                    if pairs.iter().any(|(k, v)| !host_edit_ok(k, v)) {
                        return Status::BadArgument;
                    }
                    for (k, v) in pairs.iter().filter(|(k, _)| k.starts_with(b":")) {
                        // Unchanged pseudo-headers in a read-modify-write are fine.
                        let mut cur = Vec::new();
                        if self.map_get(map, k, &mut cur) == Status::Ok && cur == *v {
                            continue;
                        }
                        let st = self.set_request_pseudo(k, v);
                        if st != Status::Ok {
                            return st;
                        }
                    }
                    let st = self.rebuild_in(&|_| true);
                    if st != Status::Ok {
                        return st;
                    }
                    for (k, v) in pairs.iter().filter(|(k, _)| !k.starts_with(b":")) {
                        if crate::util::list::push_header(self.r, &mut (*self.r).headers_in.headers, k, v).is_none() {
                            return Status::InternalFailure;
                        }
                    }
                    self.refresh_in_shortcuts();
                    Status::Ok
                }
                (MapType::ResponseHeaders, Phase::Response) => self.set_response_pairs(pairs),
                (MapType::ResponseTrailers, Phase::Response) => {
                    each_elt(&mut (*self.r).headers_out.trailers, &mut |e| {
                        (*e).hash = 0;
                        false
                    });
                    for (k, v) in pairs {
                        let st = self.add_trailer(k, v);
                        if st != Status::Ok {
                            return st;
                        }
                    }
                    Status::Ok
                }
                (MapType::RequestHeaders, _) => Status::BadArgument,
                _ => Status::NotFound,
            }
        }
    }

    fn map_add(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Status {
        // SAFETY: as above.
        unsafe {
            match (map, self.phase) {
                (MapType::RequestHeaders, Phase::Request) => {
                    if key.starts_with(b":") {
                        return self.set_request_pseudo(key, value);
                    }
                    if !host_edit_ok(key, value) {
                        return Status::BadArgument;
                    }
                    let Some(e) = crate::util::list::push_header(self.r, &mut (*self.r).headers_in.headers, key, value) else {
                        return Status::InternalFailure;
                    };
                    self.file_added_in_shortcut(e);
                    Status::Ok
                }
                (MapType::ResponseHeaders, Phase::Response) => self.add_response(key, value),
                (MapType::ResponseTrailers, Phase::Response) => self.add_trailer(key, value),
                (MapType::RequestHeaders, _) => Status::BadArgument,
                _ => Status::NotFound,
            }
        }
    }

    fn map_replace(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Status {
        // SAFETY: as above.
        unsafe {
            match (map, self.phase) {
                (MapType::RequestHeaders, Phase::Request) => {
                    if key.starts_with(b":") {
                        return self.set_request_pseudo(key, value);
                    }
                    if !host_edit_ok(key, value) {
                        return Status::BadArgument;
                    }
                    let st = self.rebuild_in(&|k| eq_key(k, key));
                    if st != Status::Ok {
                        return st;
                    }
                    if crate::util::list::push_header(self.r, &mut (*self.r).headers_in.headers, key, value).is_none() {
                        return Status::InternalFailure;
                    }
                    self.refresh_in_shortcuts();
                    Status::Ok
                }
                (MapType::ResponseHeaders, Phase::Response) => {
                    // Refusals (framing headers, another length) keep the header as it was.
                    if eq_key(key, b"content-length") || framing_header(key) {
                        return self.add_response(key, value);
                    }
                    if !key.starts_with(b":") {
                        self.remove_response(key);
                    }
                    self.add_response(key, value)
                }
                (MapType::ResponseTrailers, Phase::Response) => {
                    self.remove_trailer(key);
                    self.add_trailer(key, value)
                }
                (MapType::RequestHeaders, _) => Status::BadArgument,
                _ => Status::NotFound,
            }
        }
    }

    fn map_remove(&mut self, map: MapType, key: &[u8]) -> Status {
        // SAFETY: as above.
        unsafe {
            match (map, self.phase) {
                (MapType::RequestHeaders, Phase::Request) => {
                    if key.starts_with(b":") {
                        return Status::BadArgument;
                    }
                    let st = self.rebuild_in(&|k| eq_key(k, key));
                    if st == Status::Ok {
                        self.refresh_in_shortcuts();
                    }
                    st
                }
                (MapType::ResponseHeaders, Phase::Response) => self.remove_response(key),
                (MapType::ResponseTrailers, Phase::Response) => self.remove_trailer(key),
                (MapType::RequestHeaders, _) => Status::BadArgument,
                _ => Status::NotFound,
            }
        }
    }
}
