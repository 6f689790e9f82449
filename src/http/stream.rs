//! The host core's `HttpStream` over an `ngx_http_request_t`: request and response header
//! maps, pseudo-headers, and keeping nginx's parsed shortcuts (r->headers_in.host, ...)
//! consistent with the header lists after a plugin edits them.


use ngx::ffi::*;
use proxy_wasm_host::maps::MapBuilder;
use proxy_wasm_host::abi::BufferType;
use proxy_wasm_host::hostcalls::framing_header;
use proxy_wasm_host::{HttpStream, LogLevel, MapType, Status};

use crate::util::chunk::{BodySlot, Chunk};
use crate::util::log;
use super::pseudo::host_edit_ok;
use crate::util::list::{bytes, each_elt};

/// Which maps exist at this point of the request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Request,
    Response,
}

pub(crate) struct NgxStream<'a> {
    pub(super) r: *mut ngx_http_request_t,
    label: &'a str,
    pub(super) phase: Phase,
    /// The body buffered for the running body callback.
    body: BodySlot<'a>,
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
        NgxStream { r, label, phase, body: BodySlot(None), properties: None }
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
        self.body = BodySlot::held(which, body);
        self
    }

    /// Gives the running body callback a chunk still in nginx's buffers, read straight from
    /// them, copied out only if the plugin changes it.
    pub fn with_chunk(mut self, which: BufferType, chunk: &'a mut Chunk) -> NgxStream<'a> {
        self.body = BodySlot::chunk(which, chunk);
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

/// A chunk's bytes, or None (the plugin then reads NOT_FOUND) when its file could not be
/// read (logged; the chunk stays as it was).
fn read_or_log<T>(r: *mut ngx_http_request_t, label: &str, res: Result<T, ()>) -> Option<T> {
    if res.is_err() {
        // SAFETY: the request of a live stream (constructor contract).
        unsafe { log::write((*(*r).connection).log, NGX_LOG_ERR as ngx_uint_t, label, b"cannot read the body chunk from its file") };
    }
    res.ok()
}

pub(super) fn eq_key(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

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


}

impl NgxStream<'_> {
    /// The first step of a request header edit: a pseudo-header is set as such, a Host
    /// value that :authority's rules refuse is BAD_ARGUMENT; None: a plain header, go on.
    unsafe fn pseudo_or_refused(&mut self, key: &[u8], value: &[u8]) -> Option<Status> {
        if key.starts_with(b":") {
            return Some(self.set_request_pseudo(key, value));
        }
        if !host_edit_ok(key, value) {
            return Some(Status::BadArgument);
        }
        None
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
        let (r, label) = (self.r, self.label);
        read_or_log(r, label, self.body.bytes_mut(which)?)
    }

    fn body_read(
        &mut self,
        which: BufferType,
        start: usize,
        end: usize,
        put: &mut dyn FnMut(&[u8]) -> Result<(), Status>,
    ) -> Option<Result<(), Status>> {
        let (r, label) = (self.r, self.label);
        let res = self.body.read(which, start, end, put)?;
        Some(read_or_log(r, label, res).unwrap_or(Err(Status::InternalFailure)))
    }

    fn body_size(&mut self, which: BufferType) -> Option<usize> {
        self.body.size(which)
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
                    if let Some(st) = self.pseudo_or_refused(key, value) {
                        return st;
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
                    if let Some(st) = self.pseudo_or_refused(key, value) {
                        return st;
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
