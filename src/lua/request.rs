//! The Lua path's per-request state and running one callback of a request's HTTP context
//! under api7's return-code contract.

use std::ffi::{c_int, c_void};
use std::rc::Rc;

use ngx::ffi::*;
use proxy_wasm_host::abi::BufferType;
use proxy_wasm_host::{HostError, LocalResponse, Outcome, PluginInstance};

use super::calls::{CallSlot, PendingCall};
use super::plugin::*;
use super::registry::*;
use super::streams::*;
use super::*;
use crate::http::stream::{NgxStream, Phase, Properties};

/// The HTTP context of one request under one root context.
pub(super) struct HttpCtx {
    pub(super) root: Rc<RootCtx>,
    pub(super) generation: u64,
    /// None once it failed.
    pub(super) id: Option<u32>,
    /// on_done / on_log ran (ngx_proxy_wasm_lua_on_log).
    pub(super) logged: bool,
}

/// The Lua path's per-request state, owned by a request pool cleanup.
pub(crate) struct LuaRequest {
    /// The request it belongs to: subrequests share their parent's pool, not its state.
    pub(super) r: *mut ngx_http_request_t,
    pub(super) ctxs: Vec<HttpCtx>,
    pub(super) properties: Properties,
    /// The last local response's body, for ngx_http_wasm_fetch_local_body.
    pub(super) local_body: Vec<u8>,
    pub(super) local_str: ngx_str_t,
    /// A response-phase local response replaces the body (our Lua library's body filter).
    pub(crate) replace_body: Option<Vec<u8>>,
    /// The body a body callback rewrote, for ngx_proxy_wasm_lua_body.
    pub(super) body_out: Option<Vec<u8>>,
    pub(super) body_str: ngx_str_t,
    /// HTTP calls: the one Lua fetches next, the one in flight, and their strings.
    pub(crate) calls: CallSlot,
}


pub(super) unsafe extern "C" fn cleanup(data: *mut c_void) {
    crate::util::guard("lua request cleanup", (), || {
        // SAFETY: data is the Box leaked in request_state, freed exactly once here.
        let mut lr = Box::from_raw(data as *mut LuaRequest);
        // r->pool is already gone here: contexts not logged run on_done/on_log detached.
        for c in lr.ctxs.iter_mut() {
            let Some(id) = c.id.take() else { continue };
            let Ok(mut p) = c.root.plugin.try_borrow_mut() else { continue };
            if p.slot.generation() != c.generation || p.slot.poisoned() {
                continue;
            }
            let label = p.name.clone();
            let Some(inst) = p.slot.any() else { continue };
            let mut detached = Detached { label: &label };
            let mut r = Ok(());
            if !c.logged {
                r = inst.on_done_and_log(id, &mut detached);
            }
            if let Err(e) = r.and_then(|_| inst.on_delete(id)) {
                crate::util::log::cycle_error(&format!("[proxy_wasm] {label}: {e}"));
                p.slot.poison();
            }
        }
        crate::lua::calls::forget(lr.calls.drain());
        // Dropping the contexts may free root contexts (their plugin borrows are released).
        drop(lr);
    })
}

/// The request's Lua-path state, if any: found through the pool cleanup that owns it (r->ctx
/// is wiped by internal redirects, the pool is not).
pub(crate) unsafe fn find_request<'a>(r: *mut ngx_http_request_t) -> Option<&'a mut LuaRequest> {
    // SAFETY: `r` is the current request Lua passed (resty.core's get_request) or NULL; its
    // pool's cleanup list is nginx's, and only our own handler's data is read as LuaRequest.
    if r.is_null() || (*r).pool.is_null() {
        return None;
    }
    let data = crate::util::pool::cleanup_data((*r).pool, cleanup, |d| (*(d as *mut LuaRequest)).r == r);
    (data as *mut LuaRequest).as_mut()
}

pub(super) unsafe fn request_state<'a>(r: *mut ngx_http_request_t) -> Option<&'a mut LuaRequest> {
    if let Some(lr) = find_request(r) {
        return Some(lr);
    }
    if (*r).pool.is_null() {
        fail("on_http: the request is finished".into());
        return None;
    }
    // SAFETY: a live request (checked above); the state is freed by `cleanup` with the pool.
    let cln = ngx_pool_cleanup_add((*r).pool, 0);
    if cln.is_null() {
        fail("on_http: out of memory".into());
        return None;
    }
    let lr = Box::into_raw(Box::new(LuaRequest {
        r,
        ctxs: Vec::new(),
        properties: Properties::default(),
        local_body: Vec::new(),
        local_str: ngx_str_t { len: 0, data: std::ptr::null_mut() },
        replace_body: None,
        body_out: None,
        body_str: ngx_str_t { len: 0, data: std::ptr::null_mut() },
        calls: CallSlot::default(),
    }));
    (*cln).handler = Some(cleanup);
    (*cln).data = lr as *mut c_void;
    Some(&mut *lr)
}

/// The index of the request's HTTP context under `root`, created on first use.
pub(super) fn http_ctx(lr: &mut LuaRequest, root: &Rc<RootCtx>, p: &mut Plugin) -> Result<usize, String> {
    if let Some(i) = lr.ctxs.iter().position(|c| Rc::ptr_eq(&c.root, root)) {
        let c = &lr.ctxs[i];
        return match c.id {
            Some(_) if c.generation == p.slot.generation() && !p.slot.poisoned() => Ok(i),
            _ => Err("the plugin failed earlier in this request".into()),
        };
    }
    p.instance()?;
    let root_id = root.id_in(p)?;
    let generation = p.slot.generation();
    let inst = p.slot.any().ok_or("no instance")?;
    let id = inst.create_http_context(root_id).map_err(|e| {
        p.slot.poison();
        e.to_string()
    })?;
    lr.ctxs.push(HttpCtx { root: root.clone(), generation, id: Some(id), logged: false });
    Ok(lr.ctxs.len() - 1)
}

pub(super) type HeadersCall<'x> = dyn FnMut(&mut PluginInstance, u32, &mut LuaStream<'_, '_>) -> Result<Outcome, HostError> + 'x;

/// Runs one callback of the request's HTTP context under `root` and turns its outcome into
/// api7's return code.
pub(super) unsafe fn run(
    r: *mut ngx_http_request_t,
    lr: &mut LuaRequest,
    root: &Rc<RootCtx>,
    headers: &mut HeadersCall<'_>,
    kind: c_int,
    body: &[u8],
    end_of_body: bool,
) -> ngx_int_t {
    let plugin = root.plugin.clone();
    let Ok(mut p) = plugin.try_borrow_mut() else {
        fail("on_http: the plugin is busy (re-entered)".into());
        return NGX_ERR;
    };
    let label = p.name.clone();
    let i = match http_ctx(lr, root, &mut p) {
        Ok(i) => i,
        Err(e) => {
            crate::http::chain::log_at(r, NGX_LOG_ERR, &label, &format!("cannot run the plugin: {e}"));
            fail(e);
            return NGX_DECL;
        }
    };
    let id = lr.ctxs[i].id.unwrap_or(0);
    let response = kind & (HTTP_RESPONSE_HEADERS | HTTP_RESPONSE_BODY) != 0;
    let phase = if response { Phase::Response } else { Phase::Request };
    let Some(inst) = p.slot.any() else { return NGX_ERR };
    lr.body_out = None;
    let res = {
        let mut stream = NgxStream::new(r, &label, phase).with_properties(&mut lr.properties);
        match kind {
            HTTP_REQUEST_BODY | HTTP_RESPONSE_BODY => {
                let which = if response { BufferType::HttpResponseBody } else { BufferType::HttpRequestBody };
                let mut buf = body.to_vec();
                let res = {
                    let mut stream = stream.with_body(which, &mut buf);
                    inst.on_body(response, id, &mut lua_stream(&mut stream), body.len(), end_of_body)
                };
                if buf != body {
                    lr.body_out = Some(buf);
                }
                res
            }
            _ => headers(inst, id, &mut lua_stream(&mut stream)),
        }
    };
    conclude(r, lr, root, p, i, &label, res, response)
}

/// Turns one callback's result into the return code: a failure poisons the instance and ends
/// this request's HTTP context; otherwise the calls it dispatched and its outcome decide.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn conclude(
    r: *mut ngx_http_request_t,
    lr: &mut LuaRequest,
    root: &Rc<RootCtx>,
    mut p: std::cell::RefMut<'_, Plugin>,
    i: usize,
    label: &str,
    res: Result<Outcome, HostError>,
    response: bool,
) -> ngx_int_t {
    let outcome = match res {
        Ok(o) => o,
        Err(e) => {
            p.slot.poison();
            lr.ctxs[i].id = None;
            crate::http::chain::log_failure(r, label, &e);
            fail(format!("{label}: {e}"));
            return NGX_ERR;
        }
    };
    let calls = match p.slot.any() {
        Some(inst) => {
            // No timers on the Lua path (api7 has none either): tick periods are dropped.
            let _ = inst.take_tick_changes();
            inst.take_http_calls()
        }
        None => Vec::new(),
    };
    drop(p);
    rc_of(r, lr, root, label, outcome, calls, response)
}

/// api7's return-code contract (see the module doc), applied after a callback returned.
pub(crate) unsafe fn rc_of(
    r: *mut ngx_http_request_t,
    lr: &mut LuaRequest,
    root: &Rc<RootCtx>,
    label: &str,
    outcome: Outcome,
    calls: Vec<proxy_wasm_host::HttpCallRequest>,
    response: bool,
) -> ngx_int_t {
    // A dispatched call comes first (api7: it wins over a local response of the same callback).
    if !calls.is_empty() && !response {
        let n = calls.len();
        lr.calls.queue(calls.into_iter().map(|c| PendingCall { req: c, root: root.clone() }));
        if n > 1 {
            crate::http::chain::log_at(r, NGX_LOG_INFO, label, &format!("{n} http calls dispatched: Lua runs them one after the other"));
        }
        return 1;
    }
    if !calls.is_empty() {
        crate::http::chain::log_at(r, NGX_LOG_WARN, label, "http calls from response callbacks are not run on the Lua path (headers are sent)");
        crate::lua::calls::forget(calls.into_iter().map(|c| PendingCall { req: c, root: root.clone() }).collect());
    }
    if let Some(local) = outcome.local_response {
        return local_response(r, lr, label, &local, response);
    }
    if outcome.ops.close_request || outcome.ops.close_response {
        crate::http::chain::log_at(r, NGX_LOG_INFO, label, "closed the stream (proxy_close_stream)");
        return NGX_HTTP_CLOSE as ngx_int_t;
    }
    if outcome.action == proxy_wasm_host::Action::Pause && lr.calls.in_flight().is_none() && !response {
        let resumed = outcome.ops.continue_request || outcome.ops.continue_response;
        if !resumed {
            crate::http::chain::log_at(
                r,
                NGX_LOG_WARN,
                label,
                "returned Pause with no HTTP call pending and no local response: continuing",
            );
        }
    }
    NGX_OK as ngx_int_t
}

pub(super) unsafe fn local_response(r: *mut ngx_http_request_t, lr: &mut LuaRequest, label: &str, local: &LocalResponse, response: bool) -> ngx_int_t {
    // The host core already refuses other statuses (send_local_response); kept as a guard.
    if !crate::http::headers_out::FRAMED_STATUS.contains(&(local.status as ngx_uint_t)) {
        crate::http::chain::log_at(r, NGX_LOG_ERR, label, &format!("local response with invalid status {}", local.status));
        return NGX_ERR;
    }
    // SAFETY: `r` is the live request of the running callback.
    if (*r).header_sent() != 0 {
        crate::http::chain::log_at(r, NGX_LOG_WARN, label, "local response after the response headers were sent: ignored");
        return NGX_OK as ngx_int_t;
    }
    lr.properties.code_details = Some(local.details.clone());
    if !crate::http::local_response::set_headers(r, local) {
        return NGX_ERR;
    }
    lr.local_body = local.body.clone();
    if response {
        // The upstream body follows: our Lua library's body filter replaces it (replace_body).
        // Its length is unknown here (api7's library keeps the upstream body): no
        // Content-Length, so the framing is right either way.
        lr.replace_body = Some(local.body.clone());
        (*r).headers_out.content_length_n = -1;
    }
    local.status as ngx_int_t
}

/// Runs `f` on the plugin of `root` for this request's HTTP context; used by lua_call.rs.
pub(crate) unsafe fn with_http_ctx(
    r: *mut ngx_http_request_t,
    lr: &mut LuaRequest,
    root: &Rc<RootCtx>,
    f: &mut dyn FnMut(&mut PluginInstance, &mut LuaStream<'_, '_>) -> Result<Outcome, HostError>,
) -> ngx_int_t {
    let plugin = root.plugin.clone();
    let Ok(mut p) = plugin.try_borrow_mut() else { return NGX_ERR };
    let label = p.name.clone();
    let live = lr.ctxs.iter().position(|c| Rc::ptr_eq(&c.root, root) && c.generation == p.slot.generation() && c.id.is_some());
    let (Some(i), false) = (live, p.slot.poisoned()) else {
        fail(format!("{label}: the plugin failed earlier in this request"));
        return NGX_ERR;
    };
    let Some(inst) = p.slot.any() else { return NGX_ERR };
    let res = {
        let mut stream = NgxStream::new(r, &label, Phase::Request).with_properties(&mut lr.properties);
        f(inst, &mut lua_stream(&mut stream))
    };
    conclude(r, lr, root, p, i, &label, res, false)
}
