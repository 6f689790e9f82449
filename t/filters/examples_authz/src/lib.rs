//! Example filter of nginx-conf/authz.conf: asks an authorization service before a request
//! goes on. Plugin configuration: `UPSTREAM PATH`, e.g. `auth_service /check`. Each request's
//! `Authorization` header is sent (GET PATH) to the `upstream {}` block named UPSTREAM; a 200
//! lets the request through, anything else (another status, a failed or timed-out call)
//! answers 403.

use proxy_wasm::traits::*;
use proxy_wasm::types::*;
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(AuthzRoot { cfg: Rc::new(Config { upstream: String::new(), path: "/".into() }) })
    });
}}

struct Config {
    upstream: String,
    path: String,
}

struct AuthzRoot {
    cfg: Rc<Config>,
}

impl Context for AuthzRoot {}

impl RootContext for AuthzRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&raw);
        let mut words = text.split_whitespace();
        let (Some(upstream), path) = (words.next(), words.next()) else {
            log::error!("authz: the configuration must be \"UPSTREAM [PATH]\"");
            return false; // nginx -t fails
        };
        self.cfg = Rc::new(Config { upstream: upstream.into(), path: path.unwrap_or("/").into() });
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Authz { cfg: self.cfg.clone() }))
    }
}

struct Authz {
    cfg: Rc<Config>,
}

impl Context for Authz {
    fn on_http_call_response(&mut self, _: u32, _: usize, _: usize, _: usize) {
        // No :status when the call failed or timed out: denied as well.
        match self.get_http_call_response_header(":status").as_deref() {
            Some("200") => self.resume_http_request(),
            status => {
                log::info!("authz: denied (auth service answered {})", status.unwrap_or("nothing"));
                self.send_http_response(403, vec![], Some(b"forbidden\n"));
            }
        }
    }
}

impl HttpContext for Authz {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let auth = self.get_http_request_header("authorization").unwrap_or_default();
        let headers = vec![(":method", "GET"), (":path", self.cfg.path.as_str()), (":authority", "auth"), ("authorization", auth.as_str())];
        match self.dispatch_http_call(&self.cfg.upstream, headers, None, vec![], Duration::from_secs(2)) {
            Ok(_) => Action::Pause, // on_http_call_response decides
            Err(st) => {
                log::error!("authz: cannot call {}: {:?}", self.cfg.upstream, st);
                self.send_http_response(403, vec![], Some(b"forbidden\n"));
                Action::Pause
            }
        }
    }
}
