//! HTTP calls for the Lua-path tests (t/lua/): its plugin configuration is `;`-separated
//! `key=value` settings.
//!
//! on_http_request_headers dispatches `call=UPSTREAM` (`:path` from `path=`, default /call;
//! `:method` from `method=`, default GET; `:authority` from `authority=`; body from `body=`;
//! `:scheme` from `scheme=`; `method=-` / `path=-` leave that pseudo-header out, as plugins
//! written for api7's module may; header x-from: wasm) and returns Pause. `calls=2` dispatches two calls at once.
//! on_http_call_response logs `call <token> status=<:status|NONE> body=<body>` and then, by
//! `then=`:
//!   header (default)  sets request header x-call: <status>/<body> and resumes;
//!   local             answers with a local response 200 whose body is the call's body;
//!   chain             dispatches a second call: GET /call/second with :authority only (no
//!                     x-from, no :scheme, no body: nothing of the first call may leak into
//!                     it), then `header` on its response.
//! `pause_only` returns Pause without dispatching anything.

use std::time::Duration;

use proxy_wasm::traits::*;
use proxy_wasm::types::*;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { conf: Vec::new() }) });
}}

struct Root {
    conf: Vec<(String, String)>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let c = self.get_plugin_configuration().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        self.conf = c
            .split(';')
            .filter(|s| !s.trim().is_empty())
            .map(|s| match s.split_once('=') {
                Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
                None => (s.trim().to_string(), String::new()),
            })
            .collect();
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Callout { conf: self.conf.clone(), chained: false, answers: 0 }))
    }
}

struct Callout {
    conf: Vec<(String, String)>,
    chained: bool,
    answers: u32,
}

impl Callout {
    fn get(&self, k: &str) -> Option<&str> {
        self.conf.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }

    fn dispatch(&self, bare: bool) -> Result<u32, Status> {
        let upstream = self.get("call").unwrap_or("127.0.0.1:1");
        let authority = self.get("authority").unwrap_or("callout.test");
        let mut headers = vec![(":authority", authority)];
        if bare {
            headers.push((":method", "GET"));
            headers.push((":path", "/call/second"));
        } else {
            for (name, default) in [(":method", "GET"), (":path", "/call")] {
                match self.get(&name[1..]).unwrap_or(default) {
                    "-" => {}
                    v => headers.push((name, v)),
                }
            }
            headers.push(("x-from", "wasm"));
            if let Some(s) = self.get("scheme") {
                headers.push((":scheme", s));
            }
        }
        let body = if bare { None } else { self.get("body").map(|b| b.as_bytes()) };
        self.dispatch_http_call(upstream, headers, body, vec![], Duration::from_secs(2))
    }
}

impl Context for Callout {
    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        self.answers += 1;
        let status = self.get_http_call_response_header(":status").unwrap_or_else(|| "NONE".into());
        let body = self
            .get_http_call_response_body(0, body_size)
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .unwrap_or_default();
        log::warn!("call {token} status={status} body={body}");
        let then = self.get("then").unwrap_or("header").to_string();
        if then == "chain" && !self.chained {
            self.chained = true;
            match self.dispatch(true) {
                Ok(t) => log::warn!("chained call {t}"),
                Err(e) => log::error!("chained call failed: {e:?}"),
            }
            return;
        }
        if then == "local" {
            self.send_http_response(200, vec![("x-call-status", status.as_str())], Some(body.as_bytes()));
            return;
        }
        let prev = self.get_http_request_header("x-call").map(|p| format!("{p},")).unwrap_or_default();
        self.set_http_request_header("x-call", Some(&format!("{prev}{status}/{body}")));
        self.resume_http_request();
    }
}

impl HttpContext for Callout {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if self.get("pause_only").is_some() {
            return Action::Pause;
        }
        let n: u32 = self.get("calls").and_then(|n| n.parse().ok()).unwrap_or(1);
        for _ in 0..n {
            match self.dispatch(false) {
                Ok(t) => log::warn!("dispatched call {t}"),
                Err(e) => {
                    log::error!("dispatch failed: {e:?}");
                    return Action::Continue;
                }
            }
        }
        Action::Pause
    }
}
