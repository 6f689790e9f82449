//! The location configuration: its filter chain and per-location policies, merged downward.

use ngx::http::{Merge, MergeConfigError};

#[derive(Default, Clone)]
pub(crate) struct LocConf {
    /// Indices into MainConf::filters, in execution order; None = inherit.
    pub filters: Option<Vec<usize>>,
    /// proxy_wasm_body_buffer_limit: the most body bytes one filter may hold while paused.
    pub body_buffer_limit: Option<usize>,
    /// proxy_wasm_failure_policy: Some(status) fails closed with it, Some(0) fails open.
    pub failure_status: Option<u32>,
    /// The stream server's content handler (proxy_pass, return...), which ours runs after
    /// on_new_connection (see stream/phases.rs).
    #[cfg(feature = "stream")]
    pub content: ngx::ffi::ngx_stream_content_handler_pt,
}

/// Default of proxy_wasm_body_buffer_limit.
pub(crate) const DEFAULT_BODY_BUFFER_LIMIT: usize = 10 << 20;

#[cfg(feature = "stream")]
/// Default of the stream module's proxy_wasm_buffer_limit: what one filter may hold paused in
/// one direction of a connection (a connection lives long; many are open at once).
pub(crate) const DEFAULT_STREAM_BUFFER_LIMIT: usize = 1 << 20;

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
#[cfg(feature = "http")]
pub(crate) unsafe fn body_buffer_limit(r: *mut ngx::ffi::ngx_http_request_t) -> usize {
    use ngx::http::HttpModuleLocationConf;
    super::Module::location_conf(&*r).and_then(|c| c.body_buffer_limit).unwrap_or(DEFAULT_BODY_BUFFER_LIMIT)
}


/// The failure policy of the request's location: the status to fail with, or 0 to skip the
/// failed filter (fail open).
#[cfg(feature = "http")]
pub(crate) unsafe fn failure_status(r: *mut ngx::ffi::ngx_http_request_t) -> u32 {
    use ngx::http::HttpModuleLocationConf;
    super::Module::location_conf(&*r).and_then(|c| c.failure_status).unwrap_or(500)
}
