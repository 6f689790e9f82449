//! The OpenResty / APISIX drop-in: the nine `ngx_http_wasm_*` C functions of
//! api7/wasm-nginx-module, with the same signatures, layouts and return codes, so that
//! `require("resty.proxy-wasm")` (api7's library, APISIX's `apisix/wasm.lua`, or ours in
//! lib/resty/proxy-wasm.lua) drives plugins through LuaJIT FFI.
//!
//! Unlike api7's module this needs nothing from lua-nginx-module: requests are reached through
//! the same `NgxStream` as the native path. Lua calls these functions on the worker's thread,
//! so all state is thread-local; handles given to Lua are checked against a registry before
//! use, so a stale or foreign pointer is refused instead of dereferenced.
//!
//! Return codes of `ngx_http_wasm_on_http` / `_on_http_call_resp`: 1 = an HTTP call is
//! pending (Lua fetches it with `ngx_http_wasm_call_get`), >= 100 = a local response with that
//! status (body from `ngx_http_wasm_fetch_local_body`), 0 = go on, < 0 = the plugin failed.
//! Unlike api7: an action other than Continue/Pause, and Pause with nothing pending, give 0
//! (never a code Lua would loop on or a call to fetch that does not exist).
//!
//! - `registry`: the handles given to Lua, the last error.
//! - `plugin`: plugins and root contexts (load, unload, configure, delete).
//! - `request`: per-request state, one callback under api7's return-code contract.
//! - `http`: on_http, fetch_local_body and our extensions.
//! - `streams`: what callbacks see of the request.
//! - `calls`: HTTP calls, run by Lua with cosockets.

use std::ffi::c_int;

use ngx::ffi::*;

pub(crate) mod calls;
mod http;
mod plugin;
mod registry;
mod request;
mod streams;

// What the files of this folder share (each file's items are pub(super)).
use plugin::*;
use registry::*;
use request::*;

pub(crate) use plugin::RootCtx;


pub(self) const NGX_ERR: ngx_int_t = NGX_ERROR as ngx_int_t;
/// api7's "no VM configured / no HTTP context" code.
pub(self) const NGX_DECL: ngx_int_t = NGX_DECLINED as ngx_int_t;

/// The phases of `ngx_http_wasm_on_http` (api7's constants).
pub(self) const HTTP_REQUEST_HEADERS: c_int = 1;
pub(self) const HTTP_REQUEST_BODY: c_int = 2;
pub(self) const HTTP_RESPONSE_HEADERS: c_int = 4;
pub(self) const HTTP_RESPONSE_BODY: c_int = 8;

/// Every C function of the Lua path. Only LuaJIT calls them, by name: lib.rs keeps a `#[used]`
/// reference so that a static link (nginx's addon build) cannot leave them out.
#[allow(dead_code)] // read by the linker only
pub(crate) struct Exports(pub [*const (); 13]);
// SAFETY: addresses of functions, never dereferenced as data; sharing them is harmless.
unsafe impl Sync for Exports {}
pub(crate) const EXPORTS: Exports = Exports([
    plugin::ngx_http_wasm_load_plugin as *const (),
    plugin::ngx_http_wasm_unload_plugin as *const (),
    plugin::ngx_http_wasm_on_configure as *const (),
    plugin::ngx_http_wasm_delete_plugin_ctx as *const (),
    http::ngx_http_wasm_on_http as *const (),
    http::ngx_http_wasm_fetch_local_body as *const (),
    calls::ngx_http_wasm_call_max_headers_count as *const (),
    calls::ngx_http_wasm_call_get as *const (),
    calls::ngx_http_wasm_on_http_call_resp as *const (),
    http::ngx_proxy_wasm_lua_last_error as *const (),
    http::ngx_proxy_wasm_lua_on_log as *const (),
    http::ngx_proxy_wasm_lua_body as *const (),
    http::ngx_proxy_wasm_lua_replace_body as *const (),
]);
