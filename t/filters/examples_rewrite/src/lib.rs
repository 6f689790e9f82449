//! Example filter of nginx-conf/rewrite.conf: replaces every FROM by TO in text responses.
//! Plugin configuration: `FROM TO`. The body is buffered to its end (Pause on each chunk),
//! so a FROM split across two chunks is still found; proxy_wasm_body_buffer_limit bounds it.

use proxy_wasm::traits::*;
use proxy_wasm::types::*;
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { pair: Rc::new((String::new(), String::new())) }) });
}}

struct Root {
    pair: Rc<(String, String)>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&raw);
        let words: Vec<&str> = text.split_whitespace().collect();
        let [from, to] = words.as_slice() else {
            log::error!("rewrite: the configuration must be \"FROM TO\"");
            return false;
        };
        self.pair = Rc::new((from.to_string(), to.to_string()));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Rewrite { pair: self.pair.clone(), active: false }))
    }
}

struct Rewrite {
    pair: Rc<(String, String)>,
    active: bool,
}

impl Context for Rewrite {}

impl HttpContext for Rewrite {
    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        let ct = self.get_http_response_header("content-type").unwrap_or_default();
        self.active = ct.starts_with("text/");
        if self.active {
            // The length changes: nginx sends the rewritten body chunked.
            self.set_http_response_header("content-length", None);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !self.active {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause; // keep buffering until the whole body is here
        }
        let Some(body) = self.get_http_response_body(0, size) else { return Action::Continue };
        let text = String::from_utf8_lossy(&body);
        let (from, to) = &*self.pair;
        let out = text.replace(from.as_str(), to.as_str());
        self.set_http_response_body(0, size, out.as_bytes());
        Action::Continue
    }
}
