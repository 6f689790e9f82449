//! A scriptable test filter: its plugin configuration is a list of `action[=argument]`
//! separated by `;` (or newlines), so that one .wasm covers many test blocks.
//!
//! Request headers (on_http_request_headers):
//!   req_add=name:value    req_set=name:value    req_remove=name
//!   req_set_raw=name:v%0a  the raw hostcall (no SDK panic on a refusal), %XX decoded;
//!                         logs `req_set_raw name=<status>`
//!   req_get=name          logs `req_get name=<value|NONE>`
//!   req_log_pairs         logs every request header pair
//!   req_set_pairs=n:v,..  replaces all request headers (pseudo-headers kept)
//!   local=status:body     answers with a local response (header x-local: <plugin name>)
//!   local_hdr=status:name:value  a local response with one header and body "local body\n"
//!   echo_headers          answers 200 with every request header as `k: v` lines
//!   trap_request          panics (a wasm trap) in on_http_request_headers
//!   pause_request         returns Pause without anything pending
//! Response headers (on_http_response_headers):
//!   resp_add=name:value   resp_set=name:value   resp_remove=name
//!   resp_set_raw=name:v   as req_set_raw, on the response headers
//!   resp_get=name         logs `resp_get name=<value|NONE>`
//!   resp_log_pairs        logs every response header pair
//!   resp_local=status:body  replaces the response with a local response
//!   trap_response         panics in on_http_response_headers
//!   order=tag             appends tag to request header x-order and response header x-order
//! Response body (on_http_response_body):
//!   resp_body_log         logs `resp body size=N eos=B` for every call
//!   resp_body_upper       upper-cases every chunk as it passes (streaming rewrite)
//!   resp_body_replace=a:b buffers the whole body (Pause), then replaces every `a` by `b`
//!   resp_body_append=text appends text at end of stream
//!   resp_body_prepend=text  prepends text to the first chunk
//!   resp_headers_pause    Pause in on_http_response_headers; at end of body sets
//!                         x-body-length and continues (headers held until then)
//!   resp_body_local=status:body  local response from on_http_response_body
//!   resp_body_trap        panics in on_http_response_body
//! Request body (on_http_request_body):
//!   req_body_log          logs `req body size=N eos=B` for every call
//!   req_body_upper        upper-cases every chunk as it passes
//!   req_body_replace=a:b  buffers the whole body (Pause), then replaces every `a` by `b`
//!   req_body_append=text  appends text at end of stream
//!   req_body_echo         buffers the whole body and answers 200 with it (local response)
//!   req_body_local=status:body  local response from the first on_http_request_body
//!   req_body_pause        returns Pause until end of stream (buffering only)
//!   req_body_at=START:SIZE  the raw proxy_get_buffer_bytes on the chunk (START `end` = the
//!                         chunk's size, `end+N` past it; SIZE `max` = u32::MAX); logs
//!                         `req_body_at START:SIZE size=<chunk> -> <status> [<bytes>]`
//!   resp_body_at=START:SIZE the same in on_http_response_body
//! Properties (prefix r for on_http_response_headers, l for on_log; paths use dots):
//!   prop=request.path     logs `prop request.path=<value|NONE|ERR(status)>` (as text)
//!   prop_int=source.port  logs `prop_int source.port=<i64 from 8 bytes LE>`
//!   prop_bool=a.b         logs `prop_bool a.b=<0|1>`
//!   prop_map=a.b          logs `prop_map a.b pairs=<n> <k1>=<v1>` (a serialized map)
//!   prop_set=a.b:value    logs `prop_set a.b=<Ok|Err(status)>`
//!   prop_set_raw=a.b:v%0d%0a  the raw hostcall (no SDK panic on a refusal) with %XX
//!                         decoded in the value; logs `prop_set_raw a.b=<status>`
//!   rprop=, rprop_int=, rprop_set=, lprop=, lprop_int=  the same in the other callbacks
//! Stream control:
//!   close_request         proxy_close_stream(HTTP_REQUEST) in on_http_request_headers
//!   rclose_response       proxy_close_stream(HTTP_RESPONSE) in on_http_response_headers
//!   resume_then_pause     proxy_continue_stream(HTTP_REQUEST), then returns Pause
//!   done_false            on_done returns false (on_log waits for on_delete)
//!   done_call             on_done calls proxy_done, then returns false
//! Response trailers:
//!   trailer_add=k:v       adds a trailer from on_http_response_body at end of stream
//!   trailers_log          logs every trailer in on_http_response_trailers
//!   trailer_set=k:v       sets a trailer in on_http_response_trailers
//!   req_trailers_get      logs `req trailers=<n|NONE>` in on_http_request_headers
//! Timers (root context):
//!   tick=MS               sets the tick period in on_configure; on_tick logs `tick N <name>`
//!   tick_max=N            after N ticks, sets the period to 0 (stops)
//!   tick_trap=N           panics in the Nth on_tick
//! Lifecycle:
//!   log_eos               logs end_of_stream of both header callbacks
//!   log_done              logs `on_done`/`on_log`/`on_delete` with the context id
//!   configure_fail        on_configure returns false
//!   log_level             logs the host log level in on_configure
//!   req_log_level         logs the host log level in on_request_headers (the request's)
//! HTTP calls: see calls.rs (call=, body_call=, call_deny=, call_chain=, tick_call= ...).
//! VM configuration "fail" makes on_vm_start return false; anything else is logged.

mod calls;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::traits::*;
use proxy_wasm::types::*;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

type Actions = Rc<Vec<(String, String)>>;

#[derive(Default)]
struct Root {
    actions: Actions,
    name: String,
    ticks: u64,
}

impl Root {
    fn each(&self, k: &str) -> Vec<String> {
        self.actions.iter().filter(|(a, _)| a == k).map(|(_, v)| v.clone()).collect()
    }
}

impl Root {
    fn num(&self, k: &str) -> Option<u64> {
        self.actions.iter().find(|(a, _)| a == k).and_then(|(_, v)| v.parse().ok())
    }
}

fn parse(config: &str) -> Vec<(String, String)> {
    config
        .split([';', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (s.to_string(), String::new()),
        })
        .collect()
}

/// `name:value`, where a pseudo-header name keeps its leading colon (`:path:/x`).
fn split2(s: &str) -> (&str, &str) {
    let skip = usize::from(s.starts_with(':'));
    match s[skip..].find(':') {
        Some(i) => (&s[..skip + i], &s[skip + i + 1..]),
        None => (s, ""),
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        let who = format!("root {}", self.name);
        let (status, _) = calls::log_response(self, &who, token, num_headers, body_size);
        if status.is_none() && !self.each("root_call_retry").is_empty() {
            for spec in self.each("tick_call").into_iter().chain(self.each("configure_call")) {
                let _ = calls::dispatch(self, &spec, &who);
            }
        }
    }
}

impl RootContext for Root {
    fn on_tick(&mut self) {
        self.ticks += 1;
        log::warn!("tick {} {}", self.ticks, self.name);
        if self.num("tick_trap") == Some(self.ticks) {
            panic!("tick_trap asked for a trap");
        }
        if self.num("tick_max").is_some_and(|m| self.ticks >= m) {
            self.set_tick_period(std::time::Duration::ZERO);
        }
        for spec in self.each("tick_call") {
            let who = format!("root {}", self.name);
            let _ = calls::dispatch(self, &spec, &who);
        }
    }

    fn on_vm_start(&mut self, _size: usize) -> bool {
        let vm = self.get_vm_configuration().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        if vm == "fail" {
            log::error!("on_vm_start: refusing to start (vm config \"fail\")");
            return false;
        }
        if !vm.is_empty() {
            log::info!("on_vm_start: vm config \"{vm}\"");
        }
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let actions = parse(&config);
        self.name = actions.iter().find(|(k, _)| k == "name").map(|(_, v)| v.clone()).unwrap_or_else(|| "testbed".into());
        if actions.iter().any(|(k, _)| k == "configure_fail") {
            log::error!("on_configure: rejecting configuration");
            return false;
        }
        if actions.iter().any(|(k, _)| k == "log_level") {
            log::warn!("host log level is {:?}", proxy_wasm::hostcalls::get_log_level());
        }
        let now = self.get_current_time().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if actions.iter().any(|(k, _)| k == "log_time") {
            log::warn!("time is after 2020: {}", now > 1_577_836_800);
        }
        self.actions = Rc::new(actions);
        if let Some(ms) = self.num("tick") {
            self.set_tick_period(std::time::Duration::from_millis(ms));
        }
        for spec in self.each("configure_call") {
            let who = format!("root {}", self.name);
            let _ = calls::dispatch(self, &spec, &who);
        }
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            id: context_id,
            actions: self.actions.clone(),
            name: self.name.clone(),
            log: Rc::new(RefCell::new(())),
            chunks: 0,
            chained: false,
        }))
    }
}

struct Filter {
    id: u32,
    actions: Actions,
    name: String,
    #[allow(dead_code)]
    log: Rc<RefCell<()>>,
    chunks: usize,
    /// call_chain already dispatched its call.
    chained: bool,
}

impl Filter {
    fn has(&self, k: &str) -> bool {
        self.actions.iter().any(|(a, _)| a == k)
    }

    /// Runs the property actions whose name starts with `prefix` ("", "r" or "l").
    fn properties(&self, prefix: &str) {
        for (k, v) in self.actions.iter() {
            let Some(action) = k.strip_prefix(prefix) else { continue };
            let path_of = |p: &str| -> Vec<String> { p.split('.').map(str::to_string).collect() };
            match action {
                "prop" | "prop_int" | "prop_bool" | "prop_map" => {
                    let path = path_of(v);
                    let got = proxy_wasm::hostcalls::get_property(path.iter().map(|s| s.as_str()).collect());
                    let shown = match (&got, action) {
                        (Ok(None), _) => "NONE".to_string(),
                        (Err(s), _) => format!("ERR({s:?})"),
                        (Ok(Some(b)), "prop_int") if b.len() == 8 => {
                            i64::from_le_bytes(b[..8].try_into().unwrap()).to_string()
                        }
                        (Ok(Some(b)), "prop_int") => format!("BADLEN({})", b.len()),
                        (Ok(Some(b)), "prop_bool") if b.len() == 1 => b[0].to_string(),
                        (Ok(Some(b)), "prop_bool") => format!("BADLEN({})", b.len()),
                        (Ok(Some(b)), "prop_map") => {
                            let pairs = deserialize_map(b);
                            let first = pairs.iter().find(|(k, _)| !k.starts_with(':')).cloned().unwrap_or_default();
                            format!("pairs={} {}={}", pairs.len(), first.0, first.1)
                        }
                        (Ok(Some(b)), _) => String::from_utf8_lossy(b).into_owned(),
                    };
                    log::warn!("{k} {v}={shown}");
                }
                "prop_set_raw" => {
                    let (p, val) = split2(v);
                    let path = p.split('.').collect::<Vec<_>>().join("\0");
                    let val = percent_decode(val);
                    // SAFETY: both buffers outlive the call; the host only reads them.
                    let st = unsafe { raw::proxy_set_property(path.as_ptr(), path.len(), val.as_ptr(), val.len()) };
                    log::warn!("{k} {p}={st:?}");
                }
                "prop_set" => {
                    let (p, val) = split2(v);
                    let path = path_of(p);
                    let r = proxy_wasm::hostcalls::set_property(path.iter().map(|s| s.as_str()).collect(), Some(val.as_bytes()));
                    log::warn!("{k} {p}={:?}", r.map_err(|e| format!("{e:?}")));
                }
                _ => {}
            }
        }
    }
}

mod raw {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_replace_header_map_value(
            map: proxy_wasm::types::MapType,
            key: *const u8,
            key_len: usize,
            value: *const u8,
            value_len: usize,
        ) -> proxy_wasm::types::Status;
        pub fn proxy_set_property(path: *const u8, path_len: usize, value: *const u8, value_len: usize) -> proxy_wasm::types::Status;
        pub fn proxy_get_buffer_bytes(
            buffer_type: proxy_wasm::types::BufferType,
            start: usize,
            max_size: usize,
            return_data: *mut *mut u8,
            return_size: *mut usize,
        ) -> proxy_wasm::types::Status;
    }
}

/// `req_body_at` / `resp_body_at`: the raw hostcall, so that a refusal is logged, not a panic.
fn body_at(action: &str, ty: proxy_wasm::types::BufferType, spec: &str, chunk: usize) {
    let (a, b) = split2(spec);
    let start = match a.strip_prefix("end") {
        Some(rest) => chunk + rest.trim_start_matches('+').parse::<usize>().unwrap_or(0),
        None => a.parse().unwrap_or(0),
    };
    let size = if b == "max" { u32::MAX as usize } else { b.parse().unwrap_or(0) };
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut len = 0usize;
    // SAFETY: the out-pointers are valid locals; the host allocates what it returns with
    // proxy_on_memory_allocate (the SDK's allocator), which we take back into a Vec.
    let st = unsafe { raw::proxy_get_buffer_bytes(ty, start, size, &mut data, &mut len) };
    let bytes = if data.is_null() { Vec::new() } else { unsafe { Vec::from_raw_parts(data, len, len) } };
    log::warn!("{action} {spec} size={chunk} -> {st:?} [{}]", String::from_utf8_lossy(&bytes));
}

/// `%XX` escapes decoded (so test configurations can carry CR, LF, `;` and NUL).
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(x) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn deserialize_map(b: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if b.len() < 4 {
        return out;
    }
    let n = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize;
    let mut pos = 4 + n * 8;
    for i in 0..n {
        let kl = u32::from_le_bytes(b[4 + i * 8..8 + i * 8].try_into().unwrap()) as usize;
        let vl = u32::from_le_bytes(b[8 + i * 8..12 + i * 8].try_into().unwrap()) as usize;
        let k = String::from_utf8_lossy(&b[pos..pos + kl]).into_owned();
        pos += kl + 1;
        let v = String::from_utf8_lossy(&b[pos..pos + vl]).into_owned();
        pos += vl + 1;
        out.push((k, v));
    }
    out
}

impl Filter {
    fn arg(&self, k: &str) -> Option<String> {
        self.actions.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone())
    }

    /// The request-side call actions: dispatches every `key` spec; true if any went out.
    fn dispatch_calls(&mut self, key: &str) -> bool {
        let specs: Vec<String> = self.actions.iter().filter(|(a, _)| a == key).map(|(_, v)| v.clone()).collect();
        let who = self.name.clone();
        let mut any = false;
        for spec in specs {
            any |= calls::dispatch(self, &spec, &who).is_ok();
        }
        if any {
            if let Some(v) = self.arg("call_then_local") {
                let (status, body) = split2(&v);
                self.send_http_response(status.parse().unwrap_or(500), vec![], Some(body.as_bytes()));
            }
        }
        any
    }
}

impl Context for Filter {
    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        let who = self.name.clone();
        let (status, body) = calls::log_response(self, &who, token, num_headers, body_size);
        if let Some(h) = self.arg("call_to_header") {
            let v = format!("{}:{}", status.as_deref().unwrap_or("NONE"), body);
            let v = match self.get_http_request_header(&h) {
                Some(cur) => format!("{cur}, {v}"),
                None => v,
            };
            self.set_http_request_header(&h, Some(&v));
        }
        if let Some(deny) = self.arg("call_deny") {
            if status.as_deref() != Some("200") {
                let msg = format!("denied by call: {}\n", status.as_deref().unwrap_or("failed"));
                self.send_http_response(deny.parse().unwrap_or(403), vec![("x-denied", "1")], Some(msg.as_bytes()));
                return;
            }
        }
        if self.has("call_forever") || (status.is_none() && self.has("call_retry")) {
            let specs: Vec<String> = self.actions.iter().filter(|(a, _)| a == "call").map(|(_, v)| v.clone()).collect();
            for spec in specs {
                let _ = calls::dispatch(self, &spec, &who);
            }
            return;
        }
        if let Some(spec) = self.arg("call_chain") {
            if !self.chained {
                self.chained = true;
                let _ = calls::dispatch(self, &spec, &who);
                return;
            }
        }
        if let Some(h) = self.arg("call_to_resp_header") {
            let v = format!("{}:{}", status.as_deref().unwrap_or("NONE"), body);
            self.add_http_response_header(&h, &v);
        }
        if self.has("call_resume") {
            self.resume_http_request();
        }
        if self.has("call_resume_response") {
            self.resume_http_response();
        }
    }

    fn on_done(&mut self) -> bool {
        if self.has("log_done") {
            log::warn!("{} on_done ctx={}", self.name, self.id);
        }
        if self.has("done_call") {
            let r = proxy_wasm::hostcalls::done();
            log::warn!("{} proxy_done={:?}", self.name, r);
            return false;
        }
        !self.has("done_false")
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        if self.has("log_done") {
            log::warn!("{} on_delete ctx={}", self.name, self.id);
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.properties("");
        let actions = self.actions.clone();
        for (k, v) in actions.iter() {
            match k.as_str() {
                "log_eos" => log::warn!("request headers n={num_headers} eos={end_of_stream}"),
                "req_log_level" => log::warn!("request log level is {:?}", proxy_wasm::hostcalls::get_log_level()),
                "req_add" => {
                    let (n, val) = split2(v);
                    self.add_http_request_header(n, val);
                }
                "req_set" => {
                    let (n, val) = split2(v);
                    self.set_http_request_header(n, Some(val));
                }
                "req_set_raw" => {
                    let (n, val) = split2(v);
                    let val = percent_decode(val);
                    // SAFETY: both buffers outlive the call; the host only reads them.
                    let st = unsafe {
                        raw::proxy_replace_header_map_value(MapType::HttpRequestHeaders, n.as_ptr(), n.len(), val.as_ptr(), val.len())
                    };
                    log::warn!("req_set_raw {n}={st:?}");
                }
                "req_remove" => self.set_http_request_header(v, None),
                "req_get" => {
                    let got = self.get_http_request_header(v).unwrap_or_else(|| "NONE".into());
                    log::warn!("req_get {v}={got}");
                }
                "req_log_pairs" => {
                    for (hk, hv) in self.get_http_request_headers() {
                        log::warn!("req header {hk}: {hv}");
                    }
                }
                "req_set_pairs" => {
                    let mut pairs: Vec<(String, String)> = self
                        .get_http_request_headers()
                        .into_iter()
                        .filter(|(k, _)| k.starts_with(':'))
                        .collect();
                    for p in v.split(',').filter(|p| !p.is_empty()) {
                        let (n, val) = split2(p);
                        pairs.push((n.to_string(), val.to_string()));
                    }
                    self.set_http_request_headers(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect());
                }
                "order" => {
                    let cur = self.get_http_request_header("x-order").unwrap_or_default();
                    self.set_http_request_header("x-order", Some(&format!("{cur}{v}")));
                }
                "local" => {
                    let (status, body) = split2(v);
                    let status: u32 = status.parse().unwrap_or(500);
                    let name = self.name.clone();
                    self.send_http_response(status, vec![("x-local", name.as_str())], Some(body.as_bytes()));
                    return Action::Pause;
                }
                "local_hdr" => {
                    let (status, header) = split2(v);
                    let (name, value) = split2(header);
                    let status: u32 = status.parse().unwrap_or(500);
                    self.send_http_response(status, vec![(name, value)], Some(b"local body\n"));
                    return Action::Pause;
                }
                "echo_headers" => {
                    let mut body = String::new();
                    for (hk, hv) in self.get_http_request_headers() {
                        body.push_str(&format!("{hk}: {hv}\n"));
                    }
                    self.send_http_response(200, vec![("content-type", "text/plain")], Some(body.as_bytes()));
                    return Action::Pause;
                }
                "trap_request" => panic!("trap_request asked for a trap"),
                "req_trailers_get" => {
                    let r = proxy_wasm::hostcalls::get_map(MapType::HttpRequestTrailers);
                    log::warn!("req trailers={:?}", r.map(|m| m.len()));
                }
                "close_request" => {
                    self.reset_http_request();
                    return Action::Pause;
                }
                "resume_then_pause" => {
                    self.resume_http_request();
                    return Action::Pause;
                }
                "pause_request" => return Action::Pause,
                _ => {}
            }
        }
        if self.dispatch_calls("call") {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        let mut waiting = false;
        self.properties("r");
        let actions = self.actions.clone();
        for (k, v) in actions.iter() {
            match k.as_str() {
                "log_eos" => log::warn!("response headers n={num_headers} eos={end_of_stream}"),
                "resp_add" => {
                    let (n, val) = split2(v);
                    self.add_http_response_header(n, val);
                }
                "resp_set" => {
                    let (n, val) = split2(v);
                    self.set_http_response_header(n, Some(val));
                }
                "resp_set_raw" => {
                    let (n, val) = split2(v);
                    let val = percent_decode(val);
                    // SAFETY: both buffers outlive the call; the host only reads them.
                    let st = unsafe {
                        raw::proxy_replace_header_map_value(MapType::HttpResponseHeaders, n.as_ptr(), n.len(), val.as_ptr(), val.len())
                    };
                    log::warn!("resp_set_raw {n}={st:?}");
                }
                "resp_remove" => self.set_http_response_header(v, None),
                "resp_get" => {
                    let got = self.get_http_response_header(v).unwrap_or_else(|| "NONE".into());
                    log::warn!("resp_get {v}={got}");
                }
                "resp_log_pairs" => {
                    for (hk, hv) in self.get_http_response_headers() {
                        log::warn!("resp header {hk}: {hv}");
                    }
                }
                "order" => {
                    let cur = self.get_http_response_header("x-order").unwrap_or_default();
                    self.set_http_response_header("x-order", Some(&format!("{cur}{v}")));
                }
                "resp_local" => {
                    let (status, body) = split2(v);
                    let status: u32 = status.parse().unwrap_or(500);
                    let name = self.name.clone();
                    self.send_http_response(status, vec![("x-local", name.as_str())], Some(body.as_bytes()));
                    return Action::Pause;
                }
                "trap_response" => panic!("trap_response asked for a trap"),
                "resp_call" => {
                    let who = self.name.clone();
                    if calls::dispatch(self, v, &who).is_ok() {
                        waiting = true;
                    }
                }
                "resp_headers_pause" => return Action::Pause,
                "rclose_response" => {
                    self.reset_http_response();
                    return Action::Pause;
                }
                _ => {}
            }
        }
        if waiting {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let actions = self.actions.clone();
        for (k, v) in actions.iter() {
            match k.as_str() {
                "req_body_log" => log::warn!("req body size={body_size} eos={end_of_stream}"),
                "req_body_upper" => {
                    if let Some(b) = self.get_http_request_body(0, body_size) {
                        self.set_http_request_body(0, body_size, &b.to_ascii_uppercase());
                    }
                }
                "req_body_replace" => {
                    if !end_of_stream {
                        return Action::Pause;
                    }
                    let (from, to) = split2(v);
                    let body = self.get_http_request_body(0, body_size).unwrap_or_default();
                    let text = String::from_utf8_lossy(&body).replace(from, to);
                    self.set_http_request_body(0, body_size, text.as_bytes());
                }
                "req_body_append" => {
                    if end_of_stream {
                        self.set_http_request_body(body_size, 0, v.as_bytes());
                    }
                }
                "req_body_echo" => {
                    if !end_of_stream {
                        return Action::Pause;
                    }
                    let body = self.get_http_request_body(0, body_size).unwrap_or_default();
                    let len = body.len().to_string();
                    self.send_http_response(200, vec![("x-echo-length", len.as_str())], Some(&body));
                    return Action::Pause;
                }
                "req_body_local" => {
                    let (status, body) = split2(v);
                    let status: u32 = status.parse().unwrap_or(500);
                    self.send_http_response(status, vec![("x-local", "request-body")], Some(body.as_bytes()));
                    return Action::Pause;
                }
                "req_body_at" => body_at(k, BufferType::HttpRequestBody, v, body_size),
                "req_body_pause" => {
                    if !end_of_stream {
                        return Action::Pause;
                    }
                }
                _ => {}
            }
        }
        if end_of_stream && self.dispatch_calls("body_call") {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.chunks += 1;
        let actions = self.actions.clone();
        for (k, v) in actions.iter() {
            match k.as_str() {
                "resp_body_log" => log::warn!("resp body size={body_size} eos={end_of_stream}"),
                "resp_body_at" => body_at(k, BufferType::HttpResponseBody, v, body_size),
                "resp_body_upper" => {
                    if let Some(b) = self.get_http_response_body(0, body_size) {
                        self.set_http_response_body(0, body_size, &b.to_ascii_uppercase());
                    }
                }
                "resp_body_replace" => {
                    if !end_of_stream {
                        return Action::Pause;
                    }
                    let (from, to) = split2(v);
                    let body = self.get_http_response_body(0, body_size).unwrap_or_default();
                    let text = String::from_utf8_lossy(&body).replace(from, to);
                    self.set_http_response_body(0, body_size, text.as_bytes());
                }
                "resp_body_append" => {
                    if end_of_stream {
                        self.set_http_response_body(body_size, 0, v.as_bytes());
                    }
                }
                "resp_body_prepend" => {
                    if self.chunks == 1 {
                        self.set_http_response_body(0, 0, v.as_bytes());
                    }
                }
                "resp_headers_pause" => {
                    if !end_of_stream {
                        return Action::Pause;
                    }
                    self.set_http_response_header("x-body-length", Some(&body_size.to_string()));
                }
                "resp_body_local" => {
                    let (status, body) = split2(v);
                    let status: u32 = status.parse().unwrap_or(500);
                    self.send_http_response(status, vec![("x-local", "body")], Some(body.as_bytes()));
                    return Action::Pause;
                }
                "resp_body_trap" => panic!("resp_body_trap asked for a trap"),
                "body_resp_call" if end_of_stream => {
                    let who = self.name.clone();
                    if calls::dispatch(self, v, &who).is_ok() {
                        return Action::Pause;
                    }
                }
                "trailer_add" if end_of_stream => {
                    let (n, val) = split2(v);
                    self.add_http_response_trailer(n, val);
                }
                _ => {}
            }
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, num_trailers: usize) -> Action {
        let actions = self.actions.clone();
        for (k, v) in actions.iter() {
            match k.as_str() {
                "trailers_log" => {
                    log::warn!("response trailers n={num_trailers}");
                    for (tk, tv) in self.get_http_response_trailers() {
                        log::warn!("trailer {tk}: {tv}");
                    }
                }
                "trailer_set" => {
                    let (n, val) = split2(v);
                    self.set_http_response_trailer(n, Some(val));
                }
                _ => {}
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.properties("l");
        if self.has("log_done") {
            let status = self.get_http_response_header(":status").unwrap_or_default();
            log::warn!("{} on_log ctx={} status={}", self.name, self.id, status);
        }
    }
}
