//! `proxy_wasm_metrics;`: a content handler serving every metric of the shared zone (and of
//! the stream module's, when it is loaded) in the Prometheus text exposition format
//! (version 0.0.4).

use std::ffi::{c_char, c_void};

use ngx::core;
use ngx::ffi::*;
use ngx::http::{HttpModuleLocationConf, NgxHttpCoreModule};
use proxy_wasm_host::{shared_store, LocalResponse};

/// `proxy_wasm_metrics;` (location)
pub(crate) extern "C" fn set_metrics(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, _conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with the live ngx_conf_t of a location; the core
    // module's location conf is valid for the whole configuration's life.
    crate::util::guard("proxy_wasm_metrics", core::NGX_CONF_ERROR, || unsafe {
        let Some(clcf) = NgxHttpCoreModule::location_conf_mut(&*cf) else { return core::NGX_CONF_ERROR };
        clcf.handler = Some(metrics_handler);
        core::NGX_CONF_OK
    })
}

/// The content handler; `r` is the request nginx runs the content phase for.
unsafe extern "C" fn metrics_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    crate::util::guard("proxy_wasm_metrics", NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t, || {
        // SAFETY (r): nginx's live request for the duration of this call.
        if (*r).method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as ngx_uint_t == 0 {
            return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
        }
        // This worker's latest figures; the other workers' are at most one poll period old.
        crate::vm::stats::flush_stats();
        // No store (no wasm_module declared): no metrics, an empty exposition. The stream
        // module's metrics (its own zone) follow the http module's.
        let mut metrics = shared_store::process_store().map(|s| s.metrics()).unwrap_or_default();
        if let Some(s) = crate::vm::shm::stream_module_store() {
            metrics.extend(s.metrics());
        }
        let body = shared_store::prometheus_text(&metrics).into_bytes();
        let lr = LocalResponse {
            status: 200,
            details: Vec::new(),
            body,
            headers: vec![(b"content-type".to_vec(), b"text/plain; version=0.0.4".to_vec())],
            grpc_status: -1,
        };
        crate::http::local_response::send(r, &lr)
    })
}
