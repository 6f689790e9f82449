//! The location configuration: its filter chain and per-location policies, merged downward.

use ngx::ffi::*;
use ngx::http::{HttpModuleLocationConf, Merge, MergeConfigError};

use super::Module;

#[derive(Default, Clone)]
pub(crate) struct LocConf {
    /// Indices into MainConf::filters, in execution order; None = inherit.
    pub filters: Option<Vec<usize>>,
    /// proxy_wasm_body_buffer_limit: the most body bytes one filter may hold while paused.
    pub body_buffer_limit: Option<usize>,
    /// proxy_wasm_failure_policy: Some(status) fails closed with it, Some(0) fails open.
    pub failure_status: Option<u32>,
}

/// Default of proxy_wasm_body_buffer_limit.
pub(crate) const DEFAULT_BODY_BUFFER_LIMIT: usize = 10 << 20;

impl Merge for LocConf {
    fn merge(&mut self, prev: &LocConf) -> Result<(), MergeConfigError> {
        if self.filters.is_none() {
            self.filters = prev.filters.clone();
        }
        if self.body_buffer_limit.is_none() {
            self.body_buffer_limit = prev.body_buffer_limit;
        }
        if self.failure_status.is_none() {
            self.failure_status = prev.failure_status;
        }
        Ok(())
    }
}

/// The body buffer limit of the request's location.
pub(crate) unsafe fn body_buffer_limit(r: *mut ngx_http_request_t) -> usize {
    Module::location_conf(&*r).and_then(|c| c.body_buffer_limit).unwrap_or(DEFAULT_BODY_BUFFER_LIMIT)
}


/// The failure policy of the request's location: the status to fail with, or 0 to skip the
/// failed filter (fail open).
pub(crate) unsafe fn failure_status(r: *mut ngx_http_request_t) -> u32 {
    Module::location_conf(&*r).and_then(|c| c.failure_status).unwrap_or(500)
}
