//! Example filter of nginx-conf/ratelimit.conf: at most LIMIT requests per client address per
//! WINDOW seconds, counted in shared data so that every worker shares the count. Plugin
//! configuration: `LIMIT WINDOW`, e.g. `10 60`. Past the limit: 429.
//!
//! The counter is updated with compare-and-swap (the CAS value of proxy_get_shared_data):
//! two workers counting the same client at once retry instead of losing an increment.

use proxy_wasm::traits::*;
use proxy_wasm::types::*;
use std::time::UNIX_EPOCH;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { limit: 10, window: 60 }) });
}}

struct Root {
    limit: u64,
    window: u64,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&raw);
        let nums: Vec<Option<u64>> = text.split_whitespace().map(|w| w.parse().ok()).collect();
        match nums.as_slice() {
            [Some(l), Some(w)] if *w > 0 => {
                self.limit = *l;
                self.window = *w;
                true
            }
            _ => {
                log::error!("ratelimit: the configuration must be \"LIMIT WINDOW_SECONDS\"");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Limiter { limit: self.limit, window: self.window }))
    }
}

struct Limiter {
    limit: u64,
    window: u64,
}

impl Context for Limiter {}

impl Limiter {
    /// Adds one to this client's count in the current window; returns the new count.
    fn count(&self, key: &str) -> Option<u64> {
        for _ in 0..16 {
            let (old, cas) = self.get_shared_data(key);
            let n = old.and_then(|b| String::from_utf8(b).ok()).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) + 1;
            // cas None (no entry yet) asks for an unconditional write; a race on the first
            // write can lose one count, which a limiter can afford.
            match self.set_shared_data(key, Some(n.to_string().as_bytes()), cas) {
                Ok(()) => return Some(n),
                Err(Status::CasMismatch) => continue,
                Err(st) => {
                    log::error!("ratelimit: shared data write failed: {:?}", st);
                    return None;
                }
            }
        }
        None
    }
}

impl HttpContext for Limiter {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        // source.address is "ip:port": count by ip.
        let addr = self.get_property(vec!["source", "address"]).and_then(|b| String::from_utf8(b).ok()).unwrap_or_default();
        let ip = addr.rsplit_once(':').map_or(addr.as_str(), |(ip, _)| ip);
        let now = self.get_current_time().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let key = format!("ratelimit:{}:{}", ip, now / self.window);
        match self.count(&key) {
            Some(n) if n > self.limit => {
                log::info!("ratelimit: {} over the limit ({} > {})", ip, n, self.limit);
                self.send_http_response(429, vec![("retry-after", &self.window.to_string())], Some(b"too many requests\n"));
                Action::Pause
            }
            // Within the limit, or the count could not be kept: let it through (fail open).
            _ => Action::Continue,
        }
    }
}
