//! What an embedder (nginx, or a test) provides to the host core for one HTTP stream.
//!
//! The host core never touches nginx: hostcalls that read or change a request go through this
//! trait. nginx implements it over `ngx_http_request_t` (src/http/stream.rs); `MemoryStream` below
//! implements it in memory for unit tests and fuzzing.

use crate::abi::{BufferType, LogLevel, MapType, Status};
use crate::maps::MapBuilder;

pub trait HttpStream {
    /// Logs a plugin message in the context of this request (already level-checked).
    fn log(&mut self, level: LogLevel, msg: &[u8]);
    /// The most verbose level this request's log records, when it differs from the
    /// instance logger's (nginx: a location's own error_log). Checked before any copy.
    fn log_level(&self) -> Option<LogLevel> {
        None
    }
    /// Serializes a whole map, pseudo-headers first. NotFound if the map does not exist now.
    fn map_pairs(&mut self, map: MapType, out: &mut MapBuilder) -> Status;
    /// The value of `key` (compared case-insensitively) into `out`: Ok or NotFound.
    fn map_get(&mut self, map: MapType, key: &[u8], out: &mut Vec<u8>) -> Status;
    fn map_set_pairs(&mut self, map: MapType, pairs: &[(&[u8], &[u8])]) -> Status;
    fn map_add(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Status;
    /// Sets `key` to `value`, replacing every existing value, or adds it.
    fn map_replace(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Status;
    /// Removes every value of `key`; Ok even when absent.
    fn map_remove(&mut self, map: MapType, key: &[u8]) -> Status;
    /// The body bytes buffered for the running body callback, for the plugin to change; None
    /// outside the body callbacks (the hostcall then says NOT_FOUND). An embedder whose body
    /// is still in its own buffers copies it out here, and only here.
    fn body(&mut self, _which: BufferType) -> Option<&mut Vec<u8>> {
        None
    }
    /// The body's size, without reading it.
    fn body_size(&mut self, which: BufferType) -> Option<usize> {
        self.body(which).map(|b| b.len())
    }
    /// Hands bytes `start..end` of the body to `put`, in order, in as many pieces as the
    /// embedder holds them in: a body still in the embedder's buffers reaches the plugin
    /// with no copy in between. None outside the body callbacks; INTERNAL_FAILURE when the
    /// range is not inside the body or the bytes cannot be read.
    fn body_read(
        &mut self,
        which: BufferType,
        start: usize,
        end: usize,
        put: &mut dyn FnMut(&[u8]) -> Result<(), Status>,
    ) -> Option<Result<(), Status>> {
        let b = self.body(which)?;
        Some(b.get(start..end).map_or(Err(Status::InternalFailure), put))
    }
    /// A property of the request (`path` is the attribute path split on its NUL separators,
    /// e.g. ["request", "path"]), encoded as Envoy encodes it, into `out`.
    fn get_property(&mut self, _path: &[&[u8]], _out: &mut Vec<u8>) -> Status {
        Status::NotFound
    }
    fn set_property(&mut self, _path: &[&[u8]], _value: &[u8]) -> Status {
        Status::NotFound
    }
}

/// A stream that answers as another one does except where it says otherwise, so that an
/// embedder (or a test) changes one or two answers without forwarding every method by hand.
/// The maps and the body always come from the inner stream; `Overlay(x)` is the stream.
pub trait StreamOverlay {
    /// The stream answering everything not overridden.
    fn inner(&mut self) -> &mut dyn HttpStream;
    fn inner_ref(&self) -> &dyn HttpStream;
    fn log(&mut self, level: LogLevel, msg: &[u8]) {
        self.inner().log(level, msg)
    }
    fn log_level(&self) -> Option<LogLevel> {
        self.inner_ref().log_level()
    }
    fn get_property(&mut self, path: &[&[u8]], out: &mut Vec<u8>) -> Status {
        self.inner().get_property(path, out)
    }
    fn set_property(&mut self, path: &[&[u8]], value: &[u8]) -> Status {
        self.inner().set_property(path, value)
    }
}

/// The `HttpStream` of a `StreamOverlay`.
pub struct Overlay<O>(pub O);

impl<O: StreamOverlay> HttpStream for Overlay<O> {
    fn log(&mut self, level: LogLevel, msg: &[u8]) {
        self.0.log(level, msg)
    }
    fn log_level(&self) -> Option<LogLevel> {
        self.0.log_level()
    }
    fn map_pairs(&mut self, map: MapType, out: &mut MapBuilder) -> Status {
        self.0.inner().map_pairs(map, out)
    }
    fn map_get(&mut self, map: MapType, key: &[u8], out: &mut Vec<u8>) -> Status {
        self.0.inner().map_get(map, key, out)
    }
    fn map_set_pairs(&mut self, map: MapType, pairs: &[(&[u8], &[u8])]) -> Status {
        self.0.inner().map_set_pairs(map, pairs)
    }
    fn map_add(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Status {
        self.0.inner().map_add(map, key, value)
    }
    fn map_replace(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Status {
        self.0.inner().map_replace(map, key, value)
    }
    fn map_remove(&mut self, map: MapType, key: &[u8]) -> Status {
        self.0.inner().map_remove(map, key)
    }
    fn body(&mut self, which: BufferType) -> Option<&mut Vec<u8>> {
        self.0.inner().body(which)
    }
    fn body_size(&mut self, which: BufferType) -> Option<usize> {
        self.0.inner().body_size(which)
    }
    fn body_read(
        &mut self,
        which: BufferType,
        start: usize,
        end: usize,
        put: &mut dyn FnMut(&[u8]) -> Result<(), Status>,
    ) -> Option<Result<(), Status>> {
        self.0.inner().body_read(which, start, end, put)
    }
    fn get_property(&mut self, path: &[&[u8]], out: &mut Vec<u8>) -> Status {
        self.0.get_property(path, out)
    }
    fn set_property(&mut self, path: &[&[u8]], value: &[u8]) -> Status {
        self.0.set_property(path, value)
    }
}

/// A local response requested by a plugin with `proxy_send_local_response`; the embedder
/// sends it once the callback has returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    pub details: Vec<u8>,
    pub body: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub grpc_status: i32,
}

/// An in-memory stream: header maps as ordered pair lists. Pseudo-headers are plain entries.
#[derive(Debug, Default, Clone)]
pub struct MemoryStream {
    pub request_headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub response_headers: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    pub request_body: Option<Vec<u8>>,
    pub response_body: Option<Vec<u8>>,
    /// An L4 connection's data (DOWNSTREAM_DATA / UPSTREAM_DATA).
    pub downstream_data: Option<Vec<u8>>,
    pub upstream_data: Option<Vec<u8>>,
    /// Properties by their NUL-joined path.
    pub properties: std::collections::HashMap<Vec<u8>, Vec<u8>>,
    pub logs: Vec<(LogLevel, String)>,
}

impl MemoryStream {
    fn map_mut(&mut self, map: MapType) -> Option<&mut Vec<(Vec<u8>, Vec<u8>)>> {
        match map {
            MapType::RequestHeaders => Some(&mut self.request_headers),
            MapType::ResponseHeaders => self.response_headers.as_mut(),
            _ => None,
        }
    }

    pub fn header(&self, map: MapType, key: &str) -> Option<String> {
        let m = match map {
            MapType::RequestHeaders => &self.request_headers,
            MapType::ResponseHeaders => self.response_headers.as_ref()?,
            _ => return None,
        };
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

impl HttpStream for MemoryStream {
    fn log(&mut self, level: LogLevel, msg: &[u8]) {
        self.logs.push((level, String::from_utf8_lossy(msg).into_owned()));
    }

    fn map_pairs(&mut self, map: MapType, out: &mut MapBuilder) -> Status {
        let Some(m) = self.map_mut(map) else { return Status::NotFound };
        for (k, v) in m.iter() {
            out.push_lowercase_key(k, v);
        }
        Status::Ok
    }

    fn map_get(&mut self, map: MapType, key: &[u8], out: &mut Vec<u8>) -> Status {
        let Some(m) = self.map_mut(map) else { return Status::NotFound };
        match m.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
            Some((_, v)) => {
                out.extend_from_slice(v);
                Status::Ok
            }
            None => Status::NotFound,
        }
    }

    fn map_set_pairs(&mut self, map: MapType, pairs: &[(&[u8], &[u8])]) -> Status {
        let Some(m) = self.map_mut(map) else { return Status::NotFound };
        *m = pairs.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        Status::Ok
    }

    fn map_add(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Status {
        let Some(m) = self.map_mut(map) else { return Status::NotFound };
        m.push((key.to_vec(), value.to_vec()));
        Status::Ok
    }

    fn map_replace(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Status {
        let Some(m) = self.map_mut(map) else { return Status::NotFound };
        m.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        m.push((key.to_vec(), value.to_vec()));
        Status::Ok
    }

    fn map_remove(&mut self, map: MapType, key: &[u8]) -> Status {
        let Some(m) = self.map_mut(map) else { return Status::NotFound };
        m.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        Status::Ok
    }

    fn get_property(&mut self, path: &[&[u8]], out: &mut Vec<u8>) -> Status {
        match self.properties.get(&path.join(&0u8)) {
            Some(v) => {
                out.extend_from_slice(v);
                Status::Ok
            }
            None => Status::NotFound,
        }
    }

    fn set_property(&mut self, path: &[&[u8]], value: &[u8]) -> Status {
        self.properties.insert(path.join(&0u8), value.to_vec());
        Status::Ok
    }

    fn body(&mut self, which: BufferType) -> Option<&mut Vec<u8>> {
        match which {
            BufferType::HttpRequestBody => self.request_body.as_mut(),
            BufferType::HttpResponseBody => self.response_body.as_mut(),
            BufferType::DownstreamData => self.downstream_data.as_mut(),
            BufferType::UpstreamData => self.upstream_data.as_mut(),
            _ => None,
        }
    }
}
