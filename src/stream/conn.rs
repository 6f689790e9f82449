//! The host core's stream over an nginx stream session: no header maps (an L4 connection has
//! none), the running data callback's DOWNSTREAM_DATA or UPSTREAM_DATA buffer, properties,
//! and plugin logs in the connection's error log.

use ngx::ffi::*;
use proxy_wasm_host::abi::BufferType;
use proxy_wasm_host::maps::MapBuilder;
use proxy_wasm_host::{HttpStream, LogLevel, MapType, Status};

use crate::util::chunk::{BodySlot, Chunk};
use crate::util::log;

pub(crate) struct NgxConn<'a> {
    s: *mut ngx_stream_session_t,
    label: &'a str,
    properties: &'a mut std::collections::HashMap<Vec<u8>, Vec<u8>>,
    /// The data the running callback may read and change.
    data: BodySlot<'a>,
}

impl<'a> NgxConn<'a> {
    /// # Safety
    /// `s` is a live session for the lifetime of the stream.
    pub unsafe fn new(
        s: *mut ngx_stream_session_t,
        label: &'a str,
        properties: &'a mut std::collections::HashMap<Vec<u8>, Vec<u8>>,
    ) -> NgxConn<'a> {
        NgxConn { s, label, properties, data: BodySlot(None) }
    }

    pub fn with_held(mut self, which: BufferType, held: &'a mut Vec<u8>) -> NgxConn<'a> {
        self.data = BodySlot::held(which, held);
        self
    }

    pub fn with_chunk(mut self, which: BufferType, chunk: &'a mut Chunk) -> NgxConn<'a> {
        self.data = BodySlot::chunk(which, chunk);
        self
    }
}

impl HttpStream for NgxConn<'_> {
    fn log(&mut self, level: LogLevel, msg: &[u8]) {
        // SAFETY: the session and its connection are live (constructor contract).
        unsafe { log::write((*(*self.s).connection).log, log::ngx_level(level), self.label, msg) }
    }

    fn log_level(&self) -> Option<LogLevel> {
        // SAFETY: as above.
        Some(unsafe { log::proxy_level((*(*self.s).connection).log) })
    }

    fn map_pairs(&mut self, _map: MapType, _out: &mut MapBuilder) -> Status {
        Status::NotFound
    }
    fn map_get(&mut self, _map: MapType, _key: &[u8], _out: &mut Vec<u8>) -> Status {
        Status::NotFound
    }
    fn map_set_pairs(&mut self, _map: MapType, _pairs: &[(&[u8], &[u8])]) -> Status {
        Status::NotFound
    }
    fn map_add(&mut self, _map: MapType, _key: &[u8], _value: &[u8]) -> Status {
        Status::NotFound
    }
    fn map_replace(&mut self, _map: MapType, _key: &[u8], _value: &[u8]) -> Status {
        Status::NotFound
    }
    fn map_remove(&mut self, _map: MapType, _key: &[u8]) -> Status {
        Status::NotFound
    }

    fn body(&mut self, which: BufferType) -> Option<&mut Vec<u8>> {
        // Stream data is always in memory: a chunk is never unreadable.
        self.data.bytes_mut(which)?.ok()
    }

    fn body_size(&mut self, which: BufferType) -> Option<usize> {
        self.data.size(which)
    }

    fn body_read(
        &mut self,
        which: BufferType,
        start: usize,
        end: usize,
        put: &mut dyn FnMut(&[u8]) -> Result<(), Status>,
    ) -> Option<Result<(), Status>> {
        Some(self.data.read(which, start, end, put)?.unwrap_or(Err(Status::InternalFailure)))
    }

    fn get_property(&mut self, path: &[&[u8]], out: &mut Vec<u8>) -> Status {
        if let Some(v) = self.properties.get(&path.join(&0u8)) {
            out.extend_from_slice(v);
            return Status::Ok;
        }
        // SAFETY: the session is live (constructor contract).
        unsafe { super::properties::get(self.s, path, out) }
    }

    fn set_property(&mut self, path: &[&[u8]], value: &[u8]) -> Status {
        // SAFETY: as above.
        match unsafe { super::properties::set(self.s, path, value) } {
            Status::NotFound => {
                // Bounded by the host core (MAX_PROPERTY_SETS per context).
                self.properties.insert(path.join(&0u8), value.to_vec());
                Status::Ok
            }
            st => st,
        }
    }
}
