//! A test filter for shared data, shared queues and metrics across workers.
//!
//! Plugin configuration (root context), `;`-separated:
//!   tick=MS        ticks every MS; until it has a worker number, each tick appends this
//!                  worker's random token to the shared key `members` (CAS, re-checked, so
//!                  two workers racing to create the key both end up in it); its position
//!                  is the worker number N. Then it sets `w<N>` = "written by worker N",
//!                  adds 1 to counter `ss.numbered`, N to gauge `ss_gauge`, records N*10 in
//!                  histogram `ss_hist`, and logs `worker N numbered`.
//!   queue=NAME     worker 1 registers queue NAME; worker 2 resolves it and enqueues
//!                  `hello from worker 2` and `bye from worker 2`. on_queue_ready logs
//!                  `worker N dequeued: <item>` for each item, then `worker N queue empty`.
//! Request (on_http_request_headers): the header `x-ops` lists operations, `;`-separated;
//! the filter answers 200 with one line per operation:
//!   set=k:v            `set k: Ok|CasMismatch`
//!   setcas=k:v:CAS     CAS a number, or `last` (the cas of the last get)
//!   get=k              `get k: <value> cas=<nonzero|0>` or `get k: NOT_FOUND`
//!   count=k            `count k: <entries of the comma-separated value>`
//!   fill=p:N:SIZE      sets keys p0..p<N-1> to SIZE bytes each: `fill p: Ok|<first error>`
//!   register=q         `register q: Ok`
//!   enqueue=q:item     `enqueue q: Ok|NOT_FOUND|<status>` (resolved in this VM)
//!   dequeue=q          `dequeue q: <item>|EMPTY|NOT_FOUND`
//!   enqueue_id=N:item, dequeue_id=N   the same on a raw queue id (a guess): `... N: ...`
//!   enqueue_vm=vm:q:item, dequeue_vm=vm:q   the same on queue q of VM `vm` (resolved by name)
//!   counter=name:d  gauge=name:d  gauge_set=name:v  hist=name:v
//!                      define then increment/record: `<op> name: Ok|<status>`
//!   metric=name:type   type counter|gauge|histogram: `metric name: <value>|<status>`

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::*;
use proxy_wasm::types::*;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    tick: u64,
    queue: Option<String>,
    token: String,
    number: Option<usize>,
    sent: bool,
}

fn kv(config: &str) -> impl Iterator<Item = (&str, &str)> {
    config.split(';').filter(|s| !s.is_empty()).map(|s| s.split_once('=').unwrap_or((s, "")))
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        for (k, v) in kv(&config) {
            match k {
                "tick" => self.tick = v.parse().unwrap_or(0),
                "queue" => self.queue = Some(v.to_string()),
                _ => {}
            }
        }
        // RandomState is seeded from WASI random_get: a token per instance (per worker).
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(0);
        self.token = format!("{:016x}", h.finish());
        if self.tick > 0 {
            self.set_tick_period(Duration::from_millis(self.tick));
        }
        true
    }

    fn on_tick(&mut self) {
        match self.number {
            None => self.join(),
            Some(2) => self.produce(),
            Some(_) => {}
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        let n = self.number.unwrap_or(0);
        loop {
            match self.dequeue_shared_queue(queue_id) {
                Ok(Some(item)) => log::info!("worker {n} dequeued: {}", String::from_utf8_lossy(&item)),
                Ok(None) => {
                    log::info!("worker {n} queue empty");
                    break;
                }
                Err(s) => {
                    log::info!("worker {n} dequeue failed: {s:?}");
                    break;
                }
            }
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http { last_cas: Cell::new(None) }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Root {
    fn join(&mut self) {
        let (value, cas) = self.get_shared_data("members");
        let value = value.map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_default();
        let members: Vec<&str> = value.split(',').filter(|s| !s.is_empty()).collect();
        if let Some(pos) = members.iter().position(|m| *m == self.token) {
            let n = pos + 1;
            self.number = Some(n);
            let _ = self.set_shared_data(&format!("w{n}"), Some(format!("written by worker {n}").as_bytes()), None);
            let id = |t, name| hostcalls::define_metric(t, name).expect("define_metric");
            let _ = hostcalls::increment_metric(id(MetricType::Counter, "ss.numbered"), 1);
            let _ = hostcalls::increment_metric(id(MetricType::Gauge, "ss_gauge"), n as i64);
            let _ = hostcalls::record_metric(id(MetricType::Histogram, "ss_hist"), n as u64 * 10);
            if let (1, Some(q)) = (n, &self.queue) {
                let qid = self.register_shared_queue(q);
                log::info!("worker 1 registered queue {q} id={qid}");
            }
            log::info!("worker {n} numbered");
            return;
        }
        let mut next = value.clone();
        if !next.is_empty() {
            next.push(',');
        }
        next.push_str(&self.token);
        // Confirmed by the next tick's read: an unconditional create may be overwritten.
        let _ = self.set_shared_data("members", Some(next.as_bytes()), cas);
    }

    fn produce(&mut self) {
        let Some(q) = self.queue.clone() else { return };
        if self.sent {
            return;
        }
        if let Some(id) = self.resolve_shared_queue("", &q) {
            for item in ["hello from worker 2", "bye from worker 2"] {
                let r = self.enqueue_shared_queue(id, Some(item.as_bytes()));
                log::info!("worker 2 enqueued to {q}: {r:?}");
            }
            self.sent = true;
        }
    }
}

struct Http {
    last_cas: Cell<Option<u32>>,
}

impl Context for Http {}

fn metric_type(t: &str) -> MetricType {
    match t {
        "gauge" | "gauge_set" => MetricType::Gauge,
        "hist" | "histogram" => MetricType::Histogram,
        _ => MetricType::Counter,
    }
}

impl Http {
    fn op(&self, op: &str, arg: &str) -> String {
        let mut parts = arg.splitn(3, ':');
        let (a, b, c) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        match op {
            "set" | "setcas" => {
                let cas = match (op, c) {
                    ("set", _) => None,
                    (_, "last") => self.last_cas.get(),
                    (_, n) => n.parse().ok(),
                };
                match self.set_shared_data(a, Some(b.as_bytes()), cas) {
                    Ok(()) => format!("{op} {a}: Ok"),
                    Err(s) => format!("{op} {a}: {s:?}"),
                }
            }
            "get" | "count" => match self.get_shared_data(a) {
                (Some(v), cas) => {
                    self.last_cas.set(cas);
                    let v = String::from_utf8_lossy(&v).into_owned();
                    if op == "count" {
                        format!("count {a}: {}", v.split(',').filter(|s| !s.is_empty()).count())
                    } else {
                        format!("get {a}: {v} cas={}", if cas.is_some() { "nonzero" } else { "0" })
                    }
                }
                (None, _) => format!("{op} {a}: NOT_FOUND"),
            },
            "fill" => {
                let (n, size): (usize, usize) = (b.parse().unwrap_or(0), c.parse().unwrap_or(0));
                let value = vec![b'x'; size];
                let r = (0..n).try_for_each(|i| self.set_shared_data(&format!("{a}{i}"), Some(&value), None));
                format!("fill {a}: {}", if r.is_ok() { "Ok".to_string() } else { format!("{:?}", r.unwrap_err()) })
            }
            "register" => format!("register {a}: id={}", self.register_shared_queue(a)),
            "enqueue" => match self.resolve_shared_queue("", a) {
                None => format!("enqueue {a}: NOT_FOUND"),
                Some(id) => format!("enqueue {a}: {:?}", self.enqueue_shared_queue(id, Some(b.as_bytes()))),
            },
            "dequeue" => match self.resolve_shared_queue("", a) {
                None => format!("dequeue {a}: NOT_FOUND"),
                Some(id) => match self.dequeue_shared_queue(id) {
                    Ok(Some(item)) => format!("dequeue {a}: {}", String::from_utf8_lossy(&item)),
                    Ok(None) => format!("dequeue {a}: EMPTY"),
                    Err(s) => format!("dequeue {a}: {s:?}"),
                },
            },
            "enqueue_id" => format!("enqueue_id {a}: {:?}", self.enqueue_shared_queue(a.parse().unwrap_or(0), Some(b.as_bytes()))),
            "dequeue_id" => match self.dequeue_shared_queue(a.parse().unwrap_or(0)) {
                Ok(Some(item)) => format!("dequeue_id {a}: {}", String::from_utf8_lossy(&item)),
                Ok(None) => format!("dequeue_id {a}: EMPTY"),
                Err(s) => format!("dequeue_id {a}: {s:?}"),
            },
            "enqueue_vm" => match self.resolve_shared_queue(a, b) {
                None => format!("enqueue_vm {a}:{b}: NOT_FOUND"),
                Some(id) => format!("enqueue_vm {a}:{b}: {:?}", self.enqueue_shared_queue(id, Some(c.as_bytes()))),
            },
            "dequeue_vm" => match self.resolve_shared_queue(a, b) {
                None => format!("dequeue_vm {a}:{b}: NOT_FOUND"),
                Some(id) => match self.dequeue_shared_queue(id) {
                    Ok(Some(item)) => format!("dequeue_vm {a}:{b}: {}", String::from_utf8_lossy(&item)),
                    Ok(None) => format!("dequeue_vm {a}:{b}: EMPTY"),
                    Err(s) => format!("dequeue_vm {a}:{b}: {s:?}"),
                },
            },
            "counter" | "gauge" | "gauge_set" | "hist" => {
                let r = hostcalls::define_metric(metric_type(op), a).and_then(|id| match op {
                    "counter" | "gauge" => hostcalls::increment_metric(id, b.parse().unwrap_or(0)),
                    _ => hostcalls::record_metric(id, b.parse().unwrap_or(0)),
                });
                format!("{op} {a}: {}", if r.is_ok() { "Ok".to_string() } else { format!("{:?}", r.unwrap_err()) })
            }
            "metric" => match hostcalls::define_metric(metric_type(b), a).and_then(hostcalls::get_metric) {
                Ok(v) => format!("metric {a}: {}", v as i64),
                Err(s) => format!("metric {a}: {s:?}"),
            },
            _ => format!("unknown op {op}"),
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let Some(ops) = self.get_http_request_header("x-ops") else { return Action::Continue };
        let mut out = String::new();
        for (op, arg) in kv(&ops) {
            out.push_str(&self.op(op, arg));
            out.push('\n');
        }
        self.send_http_response(200, vec![], Some(out.as_bytes()));
        Action::Pause
    }
}
