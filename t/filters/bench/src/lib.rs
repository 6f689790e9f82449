//! Filters for scripts/bench. The plugin configuration picks the behaviour:
//! - `{"http_status":200,"body":"hello world"}`: fault injection (APISIX's fault-injection
//!   `abort` logic): answers from on_http_request_headers with that status and body.
//! - `headers`: reads two request headers and adds two response headers.
//! - `noop`: every HTTP callback returns Continue (the SDK exports them all).
//! - `upper`: upper-cases the response body chunk by chunk.
//! - `read`: reads every response body chunk and passes it on unchanged.
//! - `stream-noop`: an L4 (stream) filter whose callbacks all return Continue (the SDK
//!   exports every StreamContext callback).

use proxy_wasm::traits::*;
use proxy_wasm::types::*;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(BenchRoot { mode: Mode::Noop }) });
}}

#[derive(Clone)]
enum Mode {
    Fault { status: u32, body: Vec<u8> },
    Headers,
    Noop,
    Upper,
    Read,
    StreamNoop,
}

struct BenchRoot {
    mode: Mode,
}

/// The value of `"key":` in a flat JSON object: a number or a string (no escapes needed here).
fn json_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = json[at..].trim_start().strip_prefix(':')?.trim_start();
    if let Some(s) = rest.strip_prefix('"') {
        return s.find('"').map(|end| &s[..end]);
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

impl Context for BenchRoot {}

impl RootContext for BenchRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let config = config.trim();
        self.mode = match config {
            "headers" => Mode::Headers,
            "noop" | "" => Mode::Noop,
            "upper" => Mode::Upper,
            "read" => Mode::Read,
            "stream-noop" => Mode::StreamNoop,
            json => {
                let status = json_field(json, "http_status").and_then(|s| s.parse().ok());
                let body = json_field(json, "body").unwrap_or("");
                match status {
                    Some(status) => Mode::Fault { status, body: body.as_bytes().to_vec() },
                    None => {
                        log::error!("bench filter: unknown configuration {json:?}");
                        return false;
                    }
                }
            }
        };
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(match self.mode {
            Mode::StreamNoop => ContextType::StreamContext,
            _ => ContextType::HttpContext,
        })
    }

    fn create_stream_context(&self, _: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(StreamNoop))
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Bench { mode: self.mode.clone() }))
    }
}

struct Bench {
    mode: Mode,
}

impl Context for Bench {}

impl HttpContext for Bench {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        match &self.mode {
            Mode::Fault { status, body } => {
                self.send_http_response(*status, vec![], Some(body));
                Action::Pause
            }
            Mode::Headers => {
                let ua = self.get_http_request_header("user-agent").unwrap_or_default();
                let host = self.get_http_request_header(":authority").unwrap_or_default();
                if ua.len() + host.len() > 1_000_000 {
                    log::warn!("unreachable: keeps the reads alive");
                }
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if let Mode::Headers = self.mode {
            self.add_http_response_header("x-bench-one", "1");
            self.add_http_response_header("x-bench-two", "2");
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _: bool) -> Action {
        match self.mode {
            Mode::Upper => {
                if let Some(mut b) = self.get_http_response_body(0, body_size) {
                    upper(&mut b);
                    self.set_http_response_body(0, body_size, &b);
                }
            }
            Mode::Read => {
                let b = self.get_http_response_body(0, body_size).unwrap_or_default();
                if b.len() > body_size {
                    log::warn!("unreachable: keeps the read alive");
                }
            }
            _ => {}
        }
        Action::Continue
    }
}

/// Upper-cases ASCII with wasm SIMD (the engine accepts SIMD; wasm32-wasip1 does not enable it
/// by default, so the function asks for it).
#[target_feature(enable = "simd128")]
fn upper(b: &mut [u8]) {
    b.make_ascii_uppercase();
}

/// The no-op L4 filter: every callback is the SDK's default (Continue).
struct StreamNoop;

impl Context for StreamNoop {}

impl StreamContext for StreamNoop {}
