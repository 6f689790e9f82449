//! ngx-proxy-wasm: an nginx module that runs Proxy-Wasm filters on wasmer.
//!
//! This crate is the nginx glue; the host core (`proxy-wasm-host`) knows nothing of nginx.
//! The glue is in layers, each using only those before it (ARCHITECTURE.md; checked by
//! scripts/check-layers):
//!
//! - `util`: panic guard, logging, timer events, buffer chains, pool helpers.
//! - `conf`: main and location configuration, directive handlers, call policy.
//! - `calls`: HTTP calls as subrequests, completing through hooks their maker hands in.
//! - `vm`: load-time compile, one instance slot per module, worker life, ticks, root
//!   contexts' calls, the queue poll, the shared zone.
//! - `http`: the request stream, the chain state and its runner, phase handlers, filters.
//! - `stream`: the L4 side (nginx's `stream {}`): the session's stream, its chain, the
//!   preread and log phase handlers and the data filter.
//! - `lua`: the C functions OpenResty's `resty.proxy-wasm` calls (api7's ABI).
//!
//! One crate builds two modules, one per .so (nginx's own convention, as njs's
//! ngx_http_js_module.so and ngx_stream_js_module.so): feature `http` builds
//! ngx_http_proxy_wasm_module (composed in http_root.rs), feature `stream` builds
//! ngx_stream_proxy_wasm_module (stream_root.rs). They cannot share one .so: the http module
//! must load into an nginx without the stream module, whose symbols the stream glue needs.

// The stream build leaves unused what only the http module calls in the shared layers (the
// call policy, Lua's engine, header-list and body-piece helpers): not worth a cfg each.
#![cfg_attr(feature = "stream", allow(dead_code))]

#[cfg(all(feature = "http", feature = "stream"))]
compile_error!("features \"http\" and \"stream\" build different .so files: enable one (see Cargo.toml)");
#[cfg(not(any(feature = "http", feature = "stream")))]
compile_error!("enable feature \"http\" (ngx_http_proxy_wasm_module) or \"stream\" (ngx_stream_proxy_wasm_module)");

mod conf;
mod util;
mod vm;

#[cfg(feature = "http")]
mod calls;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "http")]
mod http_root;
#[cfg(feature = "http")]
mod lua;

#[cfg(feature = "stream")]
mod stream;
#[cfg(feature = "stream")]
mod stream_root;
