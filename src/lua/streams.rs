//! The streams callbacks of the Lua path see: the request's (with api7's variable
//! properties), or a detached one once the request is gone.


use proxy_wasm_host::maps::MapBuilder;
use proxy_wasm_host::{HttpStream, LogLevel, MapType, Overlay, Status, StreamOverlay};

use crate::http::properties::VarWrite;
use crate::http::stream::NgxStream;
use crate::util::log::CycleLogger;

/// The request stream of the Lua path: as the native path's, plus api7's property names: a
/// one-segment path that names an nginx variable reads and writes it (`wasm_process_req_body`
/// and `wasm_process_resp_body` in APISIX).
pub(crate) struct Api7Vars<'s, 'a>(pub(super) &'s mut NgxStream<'a>);

/// What Lua callbacks get: the request stream with api7's variable properties over it.
pub(crate) type LuaStream<'s, 'a> = Overlay<Api7Vars<'s, 'a>>;

pub(crate) fn lua_stream<'s, 'a>(s: &'s mut NgxStream<'a>) -> LuaStream<'s, 'a> {
    Overlay(Api7Vars(s))
}

impl StreamOverlay for Api7Vars<'_, '_> {
    fn inner(&mut self) -> &mut dyn HttpStream {
        self.0
    }
    fn inner_ref(&self) -> &dyn HttpStream {
        self.0
    }
    fn get_property(&mut self, path: &[&[u8]], out: &mut Vec<u8>) -> Status {
        let st = self.0.get_property(path, out);
        if let (Status::NotFound, [name]) = (st, path) {
            return self.0.get_property(&[b"ngx", name], out);
        }
        st
    }
    fn set_property(&mut self, path: &[&[u8]], value: &[u8]) -> Status {
        if let [name] = path {
            // api7's answers (lua-nginx-module's variable setter): a variable that does not
            // exist (prefix ones such as `http_x` included) is NOT_FOUND, one that exists but
            // cannot be written (`host`) INTERNAL_FAILURE; neither is kept as a property.
            // SAFETY: the stream's request is live (NgxStream's contract).
            return match unsafe { crate::http::properties::set_variable(self.0.request(), name, value) } {
                VarWrite::Done => Status::Ok,
                // An nginx variable refuses a value that could split a header or request line.
                VarWrite::Invalid => Status::BadArgument,
                VarWrite::NoMemory => Status::InternalFailure,
                VarWrite::Unknown => Status::NotFound,
                VarWrite::Refused => {
                    let msg = format!("proxy_set_property: nginx variable \"{}\" is not changeable", String::from_utf8_lossy(name));
                    self.0.log(LogLevel::Warn, msg.as_bytes());
                    Status::InternalFailure
                }
            };
        }
        self.0.set_property(path, value)
    }
}

/// A stream for callbacks that run when no request is readable any more (request pool
/// cleanup, root contexts): maps are NOT_FOUND, logs go to the error log.
pub(super) struct Detached<'a> {
    pub(super) label: &'a str,
}

impl HttpStream for Detached<'_> {
    fn log(&mut self, level: LogLevel, msg: &[u8]) {
        CycleLogger { label: self.label.to_string() }.log(level, msg)
    }
    fn map_pairs(&mut self, _: MapType, _: &mut MapBuilder) -> Status {
        Status::NotFound
    }
    fn map_get(&mut self, _: MapType, _: &[u8], _: &mut Vec<u8>) -> Status {
        Status::NotFound
    }
    fn map_set_pairs(&mut self, _: MapType, _: &[(&[u8], &[u8])]) -> Status {
        Status::NotFound
    }
    fn map_add(&mut self, _: MapType, _: &[u8], _: &[u8]) -> Status {
        Status::NotFound
    }
    fn map_replace(&mut self, _: MapType, _: &[u8], _: &[u8]) -> Status {
        Status::NotFound
    }
    fn map_remove(&mut self, _: MapType, _: &[u8]) -> Status {
        Status::NotFound
    }
}

use proxy_wasm_host::Logger as _;
