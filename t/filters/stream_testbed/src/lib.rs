//! An L4 (stream) test filter: its plugin configuration is a comma-separated list of words,
//! each a behaviour, so that one .wasm covers the stream test blocks. Every log line starts
//! with `stream: ` so the tests can grep it.
//!
//!   trace          logs every callback: `stream: new_connection`,
//!                  `stream: downstream_data size=N eos=B`, `stream: upstream_data size=N eos=B`,
//!                  `stream: downstream_close peer=P`, `stream: upstream_close peer=P`
//!                  (P: 0 unknown, 1 local, 2 remote), `stream: log`; and in on_new_connection
//!                  `stream: prop <name>=<value|<none>>` for source.address, source.port,
//!                  destination.address, destination.port, connection.id (8-byte integers
//!                  printed as numbers)
//!   upper          downstream data upper-cased in place (same length)
//!   grow           each downstream chunk replaced by `[` + chunk + `]`
//!   prepend        `>>` inserted before the first upstream chunk (set_upstream_data(0, 0, ..))
//!   append         `<<` appended to the upstream chunk carrying end of stream
//!                  (set_upstream_data(size, 0, ..))
//!   drop           every downstream chunk replaced by nothing
//!   pause:N        on_downstream_data returns Pause until N bytes are buffered (or end of
//!                  stream), then Continue; logs `stream: released N bytes`
//!   hold-up        upstream data is held (Pause, `stream: holding upstream size=N`) until
//!                  downstream data comes: on_downstream_data resumes it with
//!                  proxy_continue_stream(UPSTREAM) (`stream: continue upstream status=S`)
//!   http-call      on_new_connection dispatches an HTTP call; logs `stream: http call
//!                  status=S` (or the token)
//!   close-down:W   closes the downstream when downstream data contains W
//!                  (`stream: close downstream status=S`), returns Pause
//!   close-up:W     closes the upstream when upstream data contains W
//!                  (`stream: close upstream status=S`), returns Pause
//!   deny-new       on_new_connection closes the downstream, logs `stream: denied`, Pause
//!   tick           the root context ticks every 100 ms; the first tick logs `stream: tick`
//!                  and stops the ticks
//!   shared         on_downstream_data logs `stream: shared get=<"value"|none>` of shared data key
//!                  `stream_last` (escaped as show-down); on_downstream_data stores the chunk there, logs
//!                  `stream: shared set`
//!   queue          the root context registers shared queue `stream_q`; on_downstream_data
//!                  enqueues the chunk (`stream: enqueued`); the root's on_queue_ready logs
//!                  `stream: queue item "<data>"`
//!   metric         counter `stream_connections` incremented per connection; logs
//!                  `stream: metric stream_connections=N`
//!   sni            logs `stream: sni=<connection.requested_server_name|<none>>`
//!   var:NAME       logs `stream: var NAME=<value|<none>>` (property ngx.NAME) in
//!                  on_new_connection; `lvar:NAME` the same in on_log
//!   prop:A.B       logs `stream: prop A.B=<value|<none>>` in on_new_connection;
//!                  `lprop:A.B` the same in on_log (e.g. upstream.address)
//!   show-down      logs `stream: downstream="<data>"` for each downstream chunk as this filter
//!                  gets it (\r, \n, \t, \\ and other bytes escaped), after any rewrite of an
//!                  earlier filter of the chain (an echo for the tests); `show-up` the same for
//!                  upstream data (`stream: upstream="<data>"`)
//!   panic-down     panics (a trap) in on_downstream_data (the Rust way of failing)
use std::rc::Rc;
use std::time::Duration;

use log::{info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, RootContext, StreamContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, PeerType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { conf: Rc::new(Conf::default()), ticked: false })
    });
}}

#[derive(Default)]
struct Conf {
    words: Vec<String>,
    metric: Option<u32>,
    /// `queue`: the shared queue the root context registered.
    queue: Option<u32>,
}

impl Conf {
    fn has(&self, w: &str) -> bool {
        self.words.iter().any(|x| x == w)
    }
    /// values of every `key:value` word
    fn args<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.words.iter().filter_map(move |w| {
            w.strip_prefix(key).and_then(|rest| rest.strip_prefix(':'))
        })
    }
    fn arg<'a>(&'a self, key: &'a str) -> Option<&'a str> {
        self.args(key).next()
    }
}

struct Root {
    conf: Rc<Conf>,
    ticked: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let text = self
            .get_plugin_configuration()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let words: Vec<String> = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect();
        let mut conf = Conf { words, metric: None, queue: None };
        if conf.has("queue") {
            conf.queue = Some(self.register_shared_queue("stream_q"));
        }
        if conf.has("metric") {
            match hostcalls::define_metric(MetricType::Counter, "stream_connections") {
                Ok(id) => conf.metric = Some(id),
                Err(e) => warn!("stream: define_metric failed: {:?}", e),
            }
        }
        if conf.has("tick") {
            self.set_tick_period(Duration::from_millis(100));
        }
        info!("stream: configured [{}]", conf.words.join(","));
        self.conf = Rc::new(conf);
        true
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        while let Ok(Some(item)) = self.dequeue_shared_queue(queue_id) {
            info!("stream: queue item \"{}\"", esc(&item));
        }
    }

    fn on_tick(&mut self) {
        if !self.ticked {
            self.ticked = true;
            info!("stream: tick");
        }
        self.set_tick_period(Duration::from_millis(0));
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::StreamContext)
    }

    fn create_stream_context(&self, context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Stream {
            id: context_id,
            conf: self.conf.clone(),
            up_chunks: 0,
            released: false,
            holding_up: false,
        }))
    }
}

struct Stream {
    #[allow(dead_code)]
    id: u32,
    conf: Rc<Conf>,
    up_chunks: usize,
    released: bool,
    /// hold-up: upstream data is held until downstream data comes.
    holding_up: bool,
}

fn show(path: &str, v: Option<Vec<u8>>) -> String {
    match v {
        None => "<none>".into(),
        Some(b) => {
            let numeric = path.ends_with(".port") || path == "connection.id";
            if numeric && b.len() == 8 {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b);
                u64::from_le_bytes(a).to_string()
            } else {
                String::from_utf8_lossy(&b).into_owned()
            }
        }
    }
}

fn prop(path: &str) -> String {
    let parts: Vec<&str> = path.split('.').collect();
    match hostcalls::get_property(parts) {
        Ok(v) => show(path, v),
        Err(e) => format!("<error {:?}>", e),
    }
}

fn var(name: &str) -> String {
    match hostcalls::get_property(vec!["ngx", name]) {
        Ok(v) => show("", v),
        Err(e) => format!("<error {:?}>", e),
    }
}

fn esc(b: &[u8]) -> String {
    b.iter().flat_map(|&c| std::ascii::escape_default(c)).map(char::from).collect()
}

fn peer(p: PeerType) -> u32 {
    p as u32
}

#[link(wasm_import_module = "env")]
extern "C" {
    #[link_name = "proxy_close_stream"]
    fn raw_close_stream(stream_type: u32) -> u32;
    #[link_name = "proxy_continue_stream"]
    fn raw_continue_stream(stream_type: u32) -> u32;
}

/// proxy_continue_stream; returns the status.
fn continue_stream(stream_type: u32) -> u32 {
    unsafe { raw_continue_stream(stream_type) }
}

/// proxy_close_stream without the SDK's panic on a non-Ok status; returns the status.
fn close_stream(stream_type: u32) -> u32 {
    unsafe { raw_close_stream(stream_type) }
}

impl Context for Stream {}

impl StreamContext for Stream {
    fn on_new_connection(&mut self) -> Action {
        let c = self.conf.clone();
        if c.has("trace") {
            info!("stream: new_connection");
            for p in [
                "source.address",
                "source.port",
                "destination.address",
                "destination.port",
                "connection.id",
            ] {
                info!("stream: prop {}={}", p, prop(p));
            }
        }
        for p in c.args("prop") {
            info!("stream: prop {}={}", p, prop(p));
        }
        for v in c.args("var") {
            info!("stream: var {}={}", v, var(v));
        }
        if c.has("sni") {
            info!("stream: sni={}", prop("connection.requested_server_name"));
        }
        if let Some(id) = c.metric {
            match hostcalls::increment_metric(id, 1) {
                Ok(()) => {
                    let n = hostcalls::get_metric(id).unwrap_or(0);
                    info!("stream: metric stream_connections={}", n);
                }
                Err(e) => warn!("stream: increment_metric failed: {:?}", e),
            }
        }
        if c.has("http-call") {
            // The stream module sends no HTTP calls: the status says so (UNIMPLEMENTED).
            match self.dispatch_http_call("127.0.0.1:1", vec![(":method", "GET"), (":path", "/"), (":authority", "x")], None, vec![], std::time::Duration::from_secs(1)) {
                Ok(t) => info!("stream: http call token={}", t),
                Err(st) => info!("stream: http call status={:?}", st),
            }
        }
        if c.has("deny-new") {
            let st = close_stream(2);
            info!("stream: denied (close downstream status={})", st);
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_downstream_data(&mut self, size: usize, eos: bool) -> Action {
        let c = self.conf.clone();
        if c.has("trace") {
            info!("stream: downstream_data size={} eos={}", size, eos);
        }
        if c.has("panic-down") {
            panic!("stream: panic-down");
        }
        let data = self.get_downstream_data(0, size).unwrap_or_default();
        if c.has("show-down") {
            info!("stream: downstream=\"{}\"", esc(&data));
        }
        if let (Some(q), false) = (c.queue, data.is_empty()) {
            match hostcalls::enqueue_shared_queue(q, Some(&data)) {
                Ok(()) => info!("stream: enqueued"),
                Err(e) => warn!("stream: enqueue failed: {:?}", e),
            }
        }
        if c.has("shared") && !data.is_empty() {
            let v = match hostcalls::get_shared_data("stream_last") {
                Ok((Some(b), _)) => format!("\"{}\"", esc(&b)),
                Ok((None, _)) => "none".into(),
                Err(e) => format!("<error {:?}>", e),
            };
            info!("stream: shared get={}", v);
            match hostcalls::set_shared_data("stream_last", Some(&data), None) {
                Ok(()) => info!("stream: shared set"),
                Err(e) => warn!("stream: shared set failed: {:?}", e),
            }
        }
        if c.has("hold-up") && self.holding_up {
            self.holding_up = false;
            info!("stream: continue upstream status={}", continue_stream(3));
        }
        for w in c.args("close-down") {
            if contains(&data, w.as_bytes()) {
                let st = close_stream(2);
                info!("stream: close downstream status={}", st);
                return Action::Pause;
            }
        }
        if let Some(n) = c.arg("pause").and_then(|n| n.parse::<usize>().ok()) {
            if !self.released {
                if size < n && !eos {
                    info!("stream: pausing at {} bytes", size);
                    return Action::Pause;
                }
                self.released = true;
                info!("stream: released {} bytes", size);
            }
        }
        if c.has("drop") {
            self.set_downstream_data(0, size, b"");
        } else if c.has("grow") {
            let mut v = Vec::with_capacity(size + 2);
            v.push(b'[');
            v.extend_from_slice(&data);
            v.push(b']');
            self.set_downstream_data(0, size, &v);
        } else if c.has("upper") && size > 0 {
            self.set_downstream_data(0, size, &data.to_ascii_uppercase());
        }
        Action::Continue
    }

    fn on_downstream_close(&mut self, p: PeerType) {
        if self.conf.has("trace") {
            info!("stream: downstream_close peer={}", peer(p));
        }
    }

    fn on_upstream_data(&mut self, size: usize, eos: bool) -> Action {
        let c = self.conf.clone();
        if c.has("trace") {
            info!("stream: upstream_data size={} eos={}", size, eos);
        }
        if c.has("show-up") {
            let data = self.get_upstream_data(0, size).unwrap_or_default();
            info!("stream: upstream=\"{}\"", esc(&data));
        }
        if c.args("close-up").next().is_some() {
            let data = self.get_upstream_data(0, size).unwrap_or_default();
            for w in c.args("close-up") {
                if contains(&data, w.as_bytes()) {
                    let st = close_stream(3);
                    info!("stream: close upstream status={}", st);
                    return Action::Pause;
                }
            }
        }
        if c.has("hold-up") && !eos && self.up_chunks == 0 {
            self.holding_up = true;
            self.up_chunks += 1;
            info!("stream: holding upstream size={}", size);
            return Action::Pause;
        }
        let mut len = size;
        if c.has("prepend") && self.up_chunks == 0 && (size > 0 || eos) {
            self.set_upstream_data(0, 0, b">>");
            len += 2;
        }
        if c.has("append") && eos {
            // At the buffer's current end: Envoy appends only for a start at or past it.
            self.set_upstream_data(len, 0, b"<<");
        }
        if size > 0 {
            self.up_chunks += 1;
        }
        Action::Continue
    }

    fn on_upstream_close(&mut self, p: PeerType) {
        if self.conf.has("trace") {
            info!("stream: upstream_close peer={}", peer(p));
        }
    }

    fn on_log(&mut self) {
        let c = self.conf.clone();
        if c.has("trace") {
            info!("stream: log");
        }
        for p in c.args("lprop") {
            info!("stream: prop {}={}", p, prop(p));
        }
        for v in c.args("lvar") {
            info!("stream: var {}={}", v, var(v));
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
