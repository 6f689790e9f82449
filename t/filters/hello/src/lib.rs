//! The example filter of nginx-conf/nginx.conf.
//!
//! Plugin configuration: the name of a request header that blocks a request
//! (default `x-block`). Requests that carry it get a 403 from the filter; every other
//! response gets an `x-hello` header naming the worker's context id.

use proxy_wasm::traits::*;
use proxy_wasm::types::*;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(HelloRoot { block: "x-block".into() }) });
}}

struct HelloRoot {
    block: String,
}

impl Context for HelloRoot {}

impl RootContext for HelloRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        if let Some(cfg) = self.get_plugin_configuration() {
            let name = String::from_utf8_lossy(&cfg).trim().to_ascii_lowercase();
            if !name.is_empty() {
                self.block = name;
            }
        }
        log::info!("hello filter: requests with header \"{}\" are blocked", self.block);
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Hello { id: context_id, block: self.block.clone() }))
    }
}

struct Hello {
    id: u32,
    block: String,
}

impl Context for Hello {}

impl HttpContext for Hello {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if self.get_http_request_header(&self.block).is_some() {
            log::info!("hello filter: blocking request #{}", self.id);
            self.send_http_response(403, vec![("x-blocked-by", "hello-filter")], Some(b"blocked by the hello filter\n"));
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.set_http_response_header("x-hello", Some(&format!("from proxy-wasm, context {}", self.id)));
        Action::Continue
    }
}
