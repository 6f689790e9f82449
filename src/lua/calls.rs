//! HTTP calls on the Lua path, api7's contract: `ngx_http_wasm_on_http` returns 1 when the
//! plugin dispatched a call; Lua asks `ngx_http_wasm_call_max_headers_count` how many header
//! slots to allocate, fetches the call with `ngx_http_wasm_call_get`, sends it (cosocket),
//! and hands the response (or nothing, if it failed) to `ngx_http_wasm_on_http_call_resp`,
//! which returns the same codes as `on_http` (1 again for a chained or further call).
//!
//! Unlike api7: every out-parameter of `call_get` is written on every call (no stale
//! `:method`/`:path`/`:scheme` from the previous call; absent ones are empty so Lua applies
//! its defaults), a call_get with nothing pending writes an empty call instead of
//! dereferencing NULL, and several calls dispatched in one callback are run one after another.

use std::collections::VecDeque;
use std::ffi::{c_int, c_void};
use std::rc::Rc;

use ngx::ffi::*;
use proxy_wasm_host::{HttpCallRequest, HttpCallResponse};

use super::RootCtx;

const NGX_ERR: ngx_int_t = NGX_ERROR as ngx_int_t;

/// lua-nginx-module's `ngx_http_lua_ffi_str_t`: `{ int len; u_char *data; }`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LuaFfiStr {
    len: c_int,
    data: *const u8,
}

/// api7's `proxy_wasm_table_elt_t`: `{ ngx_http_lua_ffi_str_t key; ngx_http_lua_ffi_str_t value; }`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TableElt {
    key: LuaFfiStr,
    value: LuaFfiStr,
}

const _: () = assert!(std::mem::size_of::<TableElt>() == 32 || std::mem::size_of::<usize>() != 8);

/// One dispatched call and the root context whose plugin made it.
pub(crate) struct PendingCall {
    pub req: HttpCallRequest,
    pub root: Rc<RootCtx>,
}

/// A request's calls: dispatched and not yet fetched by Lua, and the one Lua is running (its
/// strings must outlive `call_get`, until Lua has copied them).
#[derive(Default)]
pub(crate) struct CallSlot {
    queue: VecDeque<PendingCall>,
    fetched: Option<PendingCall>,
}

impl CallSlot {
    pub fn queue(&mut self, calls: impl Iterator<Item = PendingCall>) {
        self.queue.extend(calls);
    }

    /// A call dispatched and not answered yet.
    pub fn in_flight(&self) -> Option<&PendingCall> {
        self.fetched.as_ref().or(self.queue.front())
    }

    /// Every call that will now never be answered (a local response, the request's end).
    pub fn drain(&mut self) -> Vec<PendingCall> {
        let mut v: Vec<PendingCall> = self.fetched.take().into_iter().collect();
        v.extend(self.queue.drain(..));
        v
    }
}

fn ffi_str(s: &[u8]) -> LuaFfiStr {
    LuaFfiStr { len: s.len().min(c_int::MAX as usize) as c_int, data: s.as_ptr() }
}

fn ngx_str(s: &[u8]) -> ngx_str_t {
    ngx_str_t { len: s.len(), data: s.as_ptr() as *mut u8 }
}

const EMPTY: ngx_str_t = ngx_str_t { len: 0, data: std::ptr::null_mut() };

/// `ngx_int_t ngx_http_wasm_call_max_headers_count(void *r);` the header slots `call_get` may
/// fill (the terminator not included); 0 when no call is pending.
#[no_mangle]
pub unsafe extern "C" fn ngx_http_wasm_call_max_headers_count(r: *mut c_void) -> ngx_int_t {
    crate::util::guard("ngx_http_wasm_call_max_headers_count", 0, || {
        let Some(lr) = super::find_request(r as *mut ngx_http_request_t) else { return 0 };
        lr.calls.queue.front().map(|c| c.req.headers.len() as ngx_int_t).unwrap_or(0)
    })
}

/// `void ngx_http_wasm_call_get(void *r, ngx_str_t *method, ngx_str_t *scheme, ngx_str_t *host,
/// ngx_str_t *path, proxy_wasm_table_elt_t *headers, ngx_str_t *body, int32_t *timeout);`
/// `headers` has room for `call_max_headers_count(r) + 1` elements.
#[no_mangle]
pub unsafe extern "C" fn ngx_http_wasm_call_get(
    r: *mut c_void,
    method: *mut ngx_str_t,
    scheme: *mut ngx_str_t,
    host: *mut ngx_str_t,
    path: *mut ngx_str_t,
    headers: *mut TableElt,
    body: *mut ngx_str_t,
    timeout: *mut i32,
) {
    crate::util::guard("ngx_http_wasm_call_get", (), || {
        let r = r as *mut ngx_http_request_t;
        // SAFETY (every write below): Lua passes one ngx_str_t / int32_t per out-parameter and
        // `headers` sized from call_max_headers_count, which is the number of headers of the
        // call popped here (at most that many are written, plus the terminator).
        let put = |p: *mut ngx_str_t, v: ngx_str_t| {
            if !p.is_null() {
                *p = v;
            }
        };
        for p in [method, scheme, host, path, body] {
            put(p, EMPTY);
        }
        if !timeout.is_null() {
            *timeout = 0;
        }
        let terminate = |i: usize| {
            if !headers.is_null() {
                *headers.add(i) = TableElt { key: LuaFfiStr { len: 0, data: std::ptr::null() }, value: LuaFfiStr { len: 0, data: std::ptr::null() } };
            }
        };
        let Some(lr) = super::find_request(r) else {
            terminate(0);
            super::record_error("call_get: no HTTP call pending for this request".into());
            return;
        };
        let Some(call) = lr.calls.queue.pop_front() else {
            terminate(0);
            super::record_error("call_get: no HTTP call pending for this request".into());
            return;
        };
        if let Some(old) = lr.calls.fetched.take() {
            // Fetched but never answered (a Lua error in between): it never will be.
            forget(vec![old]);
        }
        let c = &lr.calls.fetched.insert(call).req;
        // :authority is the Host header; a plugin's own `host` header would be a second one.
        let has_authority = c.headers.iter().any(|(k, _)| k.as_slice() == b":authority");
        put(host, ngx_str(&c.upstream));
        put(body, if c.body.is_empty() { EMPTY } else { ngx_str(&c.body) });
        if !timeout.is_null() {
            *timeout = c.timeout_ms.min(i32::MAX as u32) as i32;
        }
        let mut n = 0;
        for (k, v) in &c.headers {
            match k.as_slice() {
                b":method" => put(method, ngx_str(v)),
                b":path" => put(path, ngx_str(v)),
                b":scheme" => put(scheme, ngx_str(v)),
                k if k.starts_with(b":") && k != b":authority" => {}
                k if has_authority && k.eq_ignore_ascii_case(b"host") => {}
                k if !headers.is_null() => {
                    let key: &[u8] = if k == b":authority" { b"host" } else { k };
                    *headers.add(n) = TableElt { key: ffi_str(key), value: ffi_str(v) };
                    n += 1;
                }
                _ => {}
            }
        }
        terminate(n);
    })
}

/// `ngx_int_t ngx_http_wasm_on_http_call_resp(void *hwp_ctx, ngx_http_request_t *r,
/// proxy_wasm_table_elt_t *headers, ngx_uint_t n_header, ngx_str_t *body);` the response of the
/// call fetched last (no headers: it failed). Returns `on_http`'s codes.
#[no_mangle]
pub unsafe extern "C" fn ngx_http_wasm_on_http_call_resp(
    ctx: *mut c_void,
    r: *mut ngx_http_request_t,
    headers: *const TableElt,
    n_header: ngx_uint_t,
    body: *const ngx_str_t,
) -> ngx_int_t {
    crate::util::guard("ngx_http_wasm_on_http_call_resp", NGX_ERR, || {
        // An error of an earlier call must not be reported as this one's.
        super::clear_error();
        if super::root_of(ctx).is_none() {
            return NGX_ERR;
        }
        let Some(lr) = super::find_request(r) else {
            super::record_error("on_http_call_resp: no HTTP call in flight for this request".into());
            return NGX_ERR;
        };
        let Some(call) = lr.calls.fetched.take() else {
            super::record_error("on_http_call_resp: no HTTP call in flight (call_get first)".into());
            return NGX_ERR;
        };
        let bytes = |p: *const u8, len: usize| -> Vec<u8> {
            if p.is_null() || len == 0 {
                Vec::new()
            } else {
                // SAFETY: Lua-owned strings of the given length, alive during this call.
                std::slice::from_raw_parts(p, len).to_vec()
            }
        };
        let mut resp = HttpCallResponse::default();
        if !headers.is_null() {
            for i in 0..n_header {
                // SAFETY: Lua passes an array of n_header elements.
                let e = *headers.add(i);
                if e.key.len <= 0 {
                    continue;
                }
                resp.headers.push((bytes(e.key.data, e.key.len as usize), bytes(e.value.data, e.value.len.max(0) as usize)));
            }
        }
        if !body.is_null() {
            // SAFETY: a Lua-owned ngx_str_t.
            resp.body = bytes((*body).data, (*body).len);
        }
        crate::http::chain::log_at(
            r,
            NGX_LOG_INFO,
            "lua",
            &format!("run http callback callout id: {}, context id: {}", call.req.token, call.req.context_id),
        );
        let (token, ctx_id) = (call.req.token, call.req.context_id);
        let root = call.root.clone();
        let mut rc = super::with_http_ctx(r, lr, &root, &mut |inst, stream| {
            inst.on_http_call_response(ctx_id, token, &resp, Some(stream))
        });
        if rc == NGX_OK as ngx_int_t && lr.calls.in_flight().is_some() {
            // More calls of the same callback are waiting.
            rc = 1;
        }
        if rc != 1 {
            forget(lr.calls.drain());
        }
        rc
    })
}

/// Tells the instances that calls will never be answered.
pub(crate) fn forget(calls: Vec<PendingCall>) {
    for c in calls {
        super::forget_call(&c.root, c.req.token);
    }
}
