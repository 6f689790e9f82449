//! A scriptable gRPC-call test filter (proxy_grpc_call / proxy_grpc_stream ...), for the
//! test.Echo service of t/lib/grpc_server.py. Plugin configuration: `action[=argument]`
//! separated by `;` (or newlines).
//!
//! A SPEC is `UPSTREAM SERVICE METHOD [msg=TEXT | msgsize=N] [timeout=MS] [md=key:value]...
//! [mdbin=key:HEX]...` (space-separated, taken literally; no msg = empty message; timeout
//! defaults to 5000 ms). A stream SPEC may add `msgs=a,b,c` (the messages sent;
//! default: the one msg) and the word `close`.
//!
//! HTTP context, on_http_request_headers:
//!   grpc=SPEC        dispatch_grpc_call (unary); several run concurrently
//!   stream=SPEC      open_grpc_stream, then send_grpc_stream_message for each message, the
//!                    last with end_stream=true; with `close`, all with end_stream=false and
//!                    then close_grpc_stream
//!   cancel           cancels every call/stream right after dispatching it; no Pause
//!   cancel_after=N   cancels a stream when its N-th message arrived, sets x-grpc-result
//!                    to the messages so far joined by `,` (no status) and (once all are
//!                    done) resumes
//!   send_after_end   after a stream's last send (or close), sends "late" once more
//!   deny_on_error    a call or stream ending with status S != 0 answers 403
//!                    "grpc status S: <grpc_message>\n"
//! With any call pending, the request pauses; each answer adds a request header
//! `x-grpc-result: S:<message, 200 bytes, CR/LF as |>` (streams: `S:<messages joined by ,>`)
//! and the request resumes when the last is answered. A refused dispatch adds
//! `x-grpc-result: dispatch-failed:<Status>` (the SDK traps on statuses other than Ok,
//! ParseFailure and InternalFailure).
//! Root context:
//!   tick_grpc=SPEC       dispatched from the first on_tick (period 100 ms, then stopped)
//!   configure_grpc=SPEC  dispatched from on_configure
//!   tick_cancel          the tick_grpc calls are cancelled on the next tick
//!
//! Log lines (warn):
//!   grpc dispatched token=T | grpc dispatch failed: <Status>
//!   grpc cancelled token=T result=<Result>        grpc late send result=<Result>
//!   grpc stream send failed token=T result=<Result> | grpc stream closed token=T result=<Result>
//!   grpc response token=T status=S size=N msg=<80 bytes> grpc_message=<m|-> md=<x-echo|->
//!       bin=<hex of x-seen-bin-bin|-> trailer=<x-trailer|->
//!   grpc stream initial metadata token=T x-stream=<v|->
//!   grpc stream message token=T body=<msg>
//!   grpc stream cancelled token=T after=N result=<Result>
//!   grpc stream trailing metadata token=T x-count=<v|->
//!   grpc stream close token=T status=S grpc_message=<m|->
//!   root grpc dispatched token=T | root grpc dispatch failed: <Status>
//!   root grpc response token=T status=S msg=<80 bytes> grpc_message=<m|->

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::*;
use proxy_wasm::types::*;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

type Actions = Rc<Vec<(String, String)>>;

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

fn each(actions: &Actions, k: &str) -> Vec<String> {
    actions.iter().filter(|(a, _)| a == k).map(|(_, v)| v.clone()).collect()
}

fn has(actions: &Actions, k: &str) -> bool {
    actions.iter().any(|(a, _)| a == k)
}

struct Spec {
    upstream: String,
    service: String,
    method: String,
    msg: Vec<u8>,
    msgs: Option<Vec<Vec<u8>>>,
    timeout: Duration,
    md: Vec<(String, Vec<u8>)>,
    close: bool,
}

impl Spec {
    fn parse(spec: &str) -> Spec {
        let mut w = spec.split_whitespace();
        let mut next = || w.next().unwrap_or("").to_string();
        let (upstream, service, method) = (next(), next(), next());
        let mut s = Spec { upstream, service, method, msg: Vec::new(), msgs: None, timeout: Duration::from_millis(5000), md: Vec::new(), close: false };
        for word in spec.split_whitespace().skip(3) {
            let (k, v) = word.split_once('=').unwrap_or((word, ""));
            match k {
                "msg" => s.msg = v.as_bytes().to_vec(),
                "msgsize" => s.msg = b"0123456789".iter().copied().cycle().take(v.parse().unwrap_or(0)).collect(),
                "msgs" => s.msgs = Some(v.split(',').map(|m| m.as_bytes().to_vec()).collect()),
                "timeout" => s.timeout = Duration::from_millis(v.parse().unwrap_or(5000)),
                "md" | "mdbin" => {
                    let (n, val) = v.split_once(':').unwrap_or((v, ""));
                    let val = if k == "md" { val.as_bytes().to_vec() } else { hex_decode(val) };
                    s.md.push((n.to_string(), val));
                }
                "close" => s.close = true,
                _ => {}
            }
        }
        s
    }

    fn metadata(&self) -> Vec<(&str, &[u8])> {
        self.md.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect()
    }

    fn dispatch(&self) -> Result<u32, Status> {
        hostcalls::dispatch_grpc_call(&self.upstream, &self.service, &self.method, self.metadata(), Some(&self.msg), self.timeout)
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2).filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn text(b: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&b[..b.len().min(max)]).replace(['\r', '\n'], "|")
}

fn or_dash(v: Option<Vec<u8>>) -> String {
    v.map(|b| String::from_utf8_lossy(&b).into_owned()).filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into())
}

/// Raw hostcalls, so that a refusal shows as "-" instead of an SDK panic.
mod raw {
    use proxy_wasm::types::{BufferType, MapType, Status};
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_value(map: MapType, key: *const u8, key_len: usize, data: *mut *mut u8, size: *mut usize) -> Status;
        fn proxy_get_status(code: *mut u32, data: *mut *mut u8, size: *mut usize) -> Status;
        fn proxy_get_buffer_bytes(ty: BufferType, start: usize, max: usize, data: *mut *mut u8, size: *mut usize) -> Status;
    }

    /// SAFETY (all): the out-pointers are valid locals; what the host returns was allocated
    /// with proxy_on_memory_allocate (the SDK's allocator), taken back into a Vec.
    unsafe fn take(data: *mut u8, size: usize) -> Vec<u8> {
        if data.is_null() {
            Vec::new()
        } else {
            Vec::from_raw_parts(data, size, size)
        }
    }

    pub fn map_value(map: MapType, key: &str) -> Option<Vec<u8>> {
        let (mut d, mut n) = (std::ptr::null_mut(), 0);
        let st = unsafe { proxy_get_header_map_value(map, key.as_ptr(), key.len(), &mut d, &mut n) };
        let v = unsafe { take(d, n) };
        (st == Status::Ok).then_some(v)
    }

    pub fn status() -> (Option<u32>, Option<Vec<u8>>) {
        let (mut code, mut d, mut n) = (0u32, std::ptr::null_mut(), 0);
        let st = unsafe { proxy_get_status(&mut code, &mut d, &mut n) };
        let msg = unsafe { take(d, n) };
        if st == Status::Ok {
            (Some(code), Some(msg))
        } else {
            (None, None)
        }
    }

    pub fn message(size: usize) -> Vec<u8> {
        if size == 0 {
            return Vec::new();
        }
        let (mut d, mut n) = (std::ptr::null_mut(), 0);
        let st = unsafe { proxy_get_buffer_bytes(BufferType::GrpcReceiveBuffer, 0, size, &mut d, &mut n) };
        let v = unsafe { take(d, n) };
        if st == Status::Ok {
            v
        } else {
            Vec::new()
        }
    }
}

fn grpc_message() -> String {
    or_dash(raw::status().1)
}

#[derive(Default)]
struct Root {
    actions: Actions,
    /// Calls made from on_tick (cancelled on the next tick with tick_cancel).
    dispatched: Vec<u32>,
}

impl Root {
    fn dispatch_all(&mut self, key: &str) {
        for spec in each(&self.actions, key) {
            match Spec::parse(&spec).dispatch() {
                Ok(t) => {
                    log::warn!("root grpc dispatched token={t}");
                    self.dispatched.push(t);
                }
                Err(e) => log::warn!("root grpc dispatch failed: {e:?}"),
            }
        }
    }
}

impl Context for Root {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        let msg = raw::message(size);
        log::warn!("root grpc response token={token} status={status} msg={} grpc_message={}", text(&msg, 80), grpc_message());
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        self.actions = Rc::new(parse(&config));
        if has(&self.actions, "tick_grpc") {
            self.set_tick_period(Duration::from_millis(100));
        }
        self.dispatch_all("configure_grpc");
        true
    }

    fn on_tick(&mut self) {
        if has(&self.actions, "tick_cancel") && !self.dispatched.is_empty() {
            for t in std::mem::take(&mut self.dispatched) {
                log::warn!("root grpc cancelled token={t} result={:?}", proxy_wasm::hostcalls::cancel_grpc_call(t));
            }
            self.set_tick_period(Duration::ZERO);
            return;
        }
        if !has(&self.actions, "tick_cancel") {
            self.set_tick_period(Duration::ZERO);
        }
        self.dispatch_all("tick_grpc");
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter { actions: self.actions.clone(), calls: HashSet::new(), streams: HashMap::new(), done: false }))
    }
}

struct Filter {
    actions: Actions,
    /// Unary calls in flight.
    calls: HashSet<u32>,
    /// Streams in flight, with the messages received so far.
    streams: HashMap<u32, Vec<String>>,
    /// A local response was sent: nothing more to resume.
    done: bool,
}

impl Filter {
    fn has(&self, k: &str) -> bool {
        has(&self.actions, k)
    }

    fn send_all(&self, token: u32, s: &Spec) {
        let msgs = s.msgs.clone().unwrap_or_else(|| vec![s.msg.clone()]);
        for (i, m) in msgs.iter().enumerate() {
            let end = !s.close && i + 1 == msgs.len();
            let r = hostcalls::send_grpc_stream_message(token, Some(m), end);
            if r.is_err() {
                log::warn!("grpc stream send failed token={token} result={r:?}");
            }
        }
        if s.close {
            log::warn!("grpc stream closed token={token} result={:?}", hostcalls::close_grpc_stream(token));
        }
        if self.has("send_after_end") {
            log::warn!("grpc late send result={:?}", hostcalls::send_grpc_stream_message(token, Some(b"late"), true));
        }
    }

    /// One call or stream ended with `status`: records `value`, denies or resumes.
    fn finish(&mut self, status: u32, value: String) {
        if self.done {
            return;
        }
        if status != 0 && self.has("deny_on_error") {
            self.done = true;
            let body = format!("grpc status {status}: {}\n", grpc_message());
            self.send_http_response(403, vec![], Some(body.as_bytes()));
            return;
        }
        self.add_http_request_header("x-grpc-result", &value);
        if self.calls.is_empty() && self.streams.is_empty() {
            self.resume_http_request();
        }
    }
}

impl Context for Filter {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        let msg = raw::message(size);
        let md = |map, k| or_dash(raw::map_value(map, k));
        let bin = raw::map_value(MapType::GrpcReceiveInitialMetadata, "x-seen-bin-bin").map(|b| hex(&b)).unwrap_or_else(|| "-".into());
        log::warn!(
            "grpc response token={token} status={status} size={size} msg={} grpc_message={} md={} bin={bin} trailer={}",
            text(&msg, 80),
            grpc_message(),
            md(MapType::GrpcReceiveInitialMetadata, "x-echo"),
            md(MapType::GrpcReceiveTrailingMetadata, "x-trailer"),
        );
        if self.calls.remove(&token) {
            self.finish(status, format!("{status}:{}", text(&msg, 200)));
        }
    }

    fn on_grpc_stream_initial_metadata(&mut self, token: u32, _n: u32) {
        log::warn!("grpc stream initial metadata token={token} x-stream={}", or_dash(raw::map_value(MapType::GrpcReceiveInitialMetadata, "x-stream")));
    }

    fn on_grpc_stream_message(&mut self, token: u32, size: usize) {
        let body = text(&raw::message(size), 200);
        log::warn!("grpc stream message token={token} body={body}");
        let Some(got) = self.streams.get_mut(&token) else { return };
        got.push(body);
        let n = got.len();
        if self.actions.iter().any(|(k, v)| k == "cancel_after" && v.parse() == Ok(n)) {
            let got = self.streams.remove(&token).unwrap_or_default();
            log::warn!("grpc stream cancelled token={token} after={n} result={:?}", hostcalls::cancel_grpc_stream(token));
            self.finish(0, got.join(","));
        }
    }

    fn on_grpc_stream_trailing_metadata(&mut self, token: u32, _n: u32) {
        log::warn!("grpc stream trailing metadata token={token} x-count={}", or_dash(raw::map_value(MapType::GrpcReceiveTrailingMetadata, "x-count")));
    }

    fn on_grpc_stream_close(&mut self, token: u32, status: u32) {
        log::warn!("grpc stream close token={token} status={status} grpc_message={}", grpc_message());
        if let Some(got) = self.streams.remove(&token) {
            self.finish(status, format!("{status}:{}", got.join(",")));
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let cancel = self.has("cancel");
        for spec in each(&self.actions, "grpc") {
            match Spec::parse(&spec).dispatch() {
                Ok(t) if cancel => {
                    log::warn!("grpc dispatched token={t}");
                    log::warn!("grpc cancelled token={t} result={:?}", hostcalls::cancel_grpc_call(t));
                }
                Ok(t) => {
                    log::warn!("grpc dispatched token={t}");
                    self.calls.insert(t);
                }
                Err(e) => {
                    log::warn!("grpc dispatch failed: {e:?}");
                    self.add_http_request_header("x-grpc-result", &format!("dispatch-failed:{e:?}"));
                }
            }
        }
        for spec in each(&self.actions, "stream") {
            let s = Spec::parse(&spec);
            match hostcalls::open_grpc_stream(&s.upstream, &s.service, &s.method, s.metadata()) {
                Ok(t) => {
                    log::warn!("grpc dispatched token={t}");
                    self.send_all(t, &s);
                    if cancel {
                        log::warn!("grpc cancelled token={t} result={:?}", hostcalls::cancel_grpc_stream(t));
                    } else {
                        self.streams.insert(t, Vec::new());
                    }
                }
                Err(e) => {
                    log::warn!("grpc dispatch failed: {e:?}");
                    self.add_http_request_header("x-grpc-result", &format!("dispatch-failed:{e:?}"));
                }
            }
        }
        if self.calls.is_empty() && self.streams.is_empty() {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}
