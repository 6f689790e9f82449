//! The request functions Lua calls: on_http (api7), fetch_local_body (api7), and our
//! extensions for errors, on_log and bodies.

use std::ffi::{c_int, c_void};
use std::rc::Rc;

use ngx::ffi::*;
use proxy_wasm_host::MapType;

use super::plugin::*;
use super::registry::*;
use super::request::*;
use super::streams::*;
use super::*;
use crate::http::stream::{NgxStream, Phase};

/// `ngx_int_t ngx_http_wasm_on_http(void *hwp_ctx, void *r, int type, const u_char *body,
/// size_t size, int end_of_body);`
#[no_mangle]
pub unsafe extern "C" fn ngx_http_wasm_on_http(
    ctx: *mut c_void,
    r: *mut c_void,
    kind: c_int,
    body: *const u8,
    size: usize,
    end_of_body: c_int,
) -> ngx_int_t {
    crate::util::guard("ngx_http_wasm_on_http", NGX_ERR, || {
        clear_error();
        let Some(h) = handle::<CtxHandle>(&CTXS, ctx, "on_http: bad plugin ctx") else { return NGX_ERR };
        let r = r as *mut ngx_http_request_t;
        if r.is_null() {
            fail("on_http: no request".into());
            return NGX_ERR;
        }
        if ![HTTP_REQUEST_HEADERS, HTTP_REQUEST_BODY, HTTP_RESPONSE_HEADERS, HTTP_RESPONSE_BODY].contains(&kind) {
            fail(format!("on_http: unknown phase type {kind} (1, 2, 4 or 8)"));
            return NGX_ERR;
        }
        let Some(lr) = request_state(r) else { return NGX_ERR };
        let body = slice(body, size);
        run(r, lr, &h.root, &mut |inst, id, stream| match kind {
            HTTP_REQUEST_HEADERS => {
                let n = stream.0 .0.count(MapType::RequestHeaders);
                inst.on_request_headers(id, stream, n, !crate::http::chain::request_has_body(r))
            }
            HTTP_RESPONSE_HEADERS => {
                let n = stream.0 .0.count(MapType::ResponseHeaders);
                inst.on_response_headers(id, stream, n, crate::http::chain::response_has_no_body(r))
            }
            _ => unreachable!("body phases go through run_body"),
        }, kind, body, end_of_body != 0)
    })
}

/// `ngx_str_t *ngx_http_wasm_fetch_local_body(void *r);` NULL when the body is empty.
#[no_mangle]
pub unsafe extern "C" fn ngx_http_wasm_fetch_local_body(r: *mut c_void) -> *mut ngx_str_t {
    crate::util::guard("ngx_http_wasm_fetch_local_body", std::ptr::null_mut(), || {
        let Some(lr) = find_request(r as *mut ngx_http_request_t) else { return std::ptr::null_mut() };
        if lr.local_body.is_empty() {
            return std::ptr::null_mut();
        }
        lr.local_str = ngx_str_t { len: lr.local_body.len(), data: lr.local_body.as_mut_ptr() };
        &mut lr.local_str
    })
}

// ---- our extensions (used by lib/resty/proxy-wasm.lua when present) ----

/// `void ngx_proxy_wasm_lua_last_error(ngx_str_t *out);` why the last call failed (empty if
/// it did not). Valid until the next call.
#[no_mangle]
pub unsafe extern "C" fn ngx_proxy_wasm_lua_last_error(out: *mut ngx_str_t) {
    crate::util::guard("ngx_proxy_wasm_lua_last_error", (), || {
        if out.is_null() {
            return;
        }
        LAST_ERROR.with(|e| {
            let mut e = e.borrow_mut();
            // SAFETY: out points to a Lua-owned ngx_str_t; the bytes live in the thread-local.
            *out = ngx_str_t { len: e.len(), data: e.as_mut_ptr() };
        });
    })
}

/// `ngx_int_t ngx_proxy_wasm_lua_on_log(void *hwp_ctx, void *r);` on_done then on_log of the
/// request's HTTP context (from log_by_lua); on_delete follows when the request is freed.
#[no_mangle]
pub unsafe extern "C" fn ngx_proxy_wasm_lua_on_log(ctx: *mut c_void, r: *mut c_void) -> ngx_int_t {
    crate::util::guard("ngx_proxy_wasm_lua_on_log", NGX_ERR, || {
        clear_error();
        let Some(h) = handle::<CtxHandle>(&CTXS, ctx, "on_log: bad plugin ctx") else { return NGX_ERR };
        let r = r as *mut ngx_http_request_t;
        let Some(lr) = find_request(r) else { return NGX_OK as ngx_int_t };
        let Some(i) = lr.ctxs.iter().position(|c| Rc::ptr_eq(&c.root, &h.root)) else { return NGX_OK as ngx_int_t };
        if lr.ctxs[i].logged {
            return NGX_OK as ngx_int_t;
        }
        lr.ctxs[i].logged = true;
        let Some(id) = lr.ctxs[i].id else { return NGX_OK as ngx_int_t };
        let generation = lr.ctxs[i].generation;
        let root = h.root.clone();
        let Ok(mut p) = root.plugin.try_borrow_mut() else { return NGX_ERR };
        if p.slot.generation() != generation || p.slot.poisoned() {
            return NGX_OK as ngx_int_t;
        }
        let label = p.name.clone();
        let Some(inst) = p.slot.any() else { return NGX_ERR };
        let mut stream = NgxStream::new(r, &label, Phase::Response).with_properties(&mut lr.properties);
        match inst.on_done_and_log(id, &mut lua_stream(&mut stream)) {
            Ok(()) => NGX_OK as ngx_int_t,
            Err(e) => {
                p.slot.poison();
                lr.ctxs[i].id = None;
                crate::http::chain::log_failure(r, &label, &e);
                fail(format!("failed to run proxy_on_log: {e}"));
                NGX_ERR
            }
        }
    })
}

/// `int ngx_proxy_wasm_lua_body(void *r, ngx_str_t *out);` 1 and the body when the last body
/// callback changed it (proxy_set_buffer_bytes), else 0.
#[no_mangle]
pub unsafe extern "C" fn ngx_proxy_wasm_lua_body(r: *mut c_void, out: *mut ngx_str_t) -> c_int {
    crate::util::guard("ngx_proxy_wasm_lua_body", 0, || {
        let Some(lr) = find_request(r as *mut ngx_http_request_t) else { return 0 };
        let Some(b) = lr.body_out.as_mut() else { return 0 };
        lr.body_str = ngx_str_t { len: b.len(), data: b.as_mut_ptr() };
        if !out.is_null() {
            // SAFETY: out is a Lua-owned ngx_str_t; the bytes live in the request state.
            *out = lr.body_str;
        }
        1
    })
}

/// `int ngx_proxy_wasm_lua_replace_body(void *r, ngx_str_t *out);` 1 and the body of a local
/// response sent from a response callback (it replaces the upstream body), else 0.
#[no_mangle]
pub unsafe extern "C" fn ngx_proxy_wasm_lua_replace_body(r: *mut c_void, out: *mut ngx_str_t) -> c_int {
    crate::util::guard("ngx_proxy_wasm_lua_replace_body", 0, || {
        let Some(lr) = find_request(r as *mut ngx_http_request_t) else { return 0 };
        let Some(b) = lr.replace_body.as_mut() else { return 0 };
        if !out.is_null() {
            // SAFETY: as above.
            *out = ngx_str_t { len: b.len(), data: b.as_mut_ptr() };
        }
        1
    })
}
