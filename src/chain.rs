//! The per-request state of a location's filter chain, and running one callback across it.

use std::ffi::c_void;

use ngx::ffi::*;
use ngx::http::{HttpModule, HttpModuleLocationConf};
use proxy_wasm_host::{Action, HostError, LocalResponse, MapType, Outcome};

use crate::request::{NgxStream, Phase};
use crate::worker::WORKER;
use crate::Module;

pub(crate) struct FilterCtx {
    pub filter: usize,
    /// The instance generation the context was created in (see Worker::generations).
    pub generation: u64,
    /// The HTTP context id; None once the filter failed (trap) or could not start.
    pub ctx_id: Option<u32>,
}

#[derive(Default)]
pub(crate) struct RequestCtx {
    pub filters: Vec<FilterCtx>,
    pub request_headers_done: bool,
    pub response_headers_done: bool,
    /// A filter answered the request itself: later phases skip the chain.
    pub answered: bool,
    /// The body filter drops the original response body (a local response replaced it).
    pub swallow_body: bool,
    /// on_done / on_log / on_delete have run.
    pub finished: bool,
}

/// The result of running one callback over the chain.
pub(crate) enum ChainResult {
    Continue,
    Local(LocalResponse),
    /// A filter failed (trap or missing instance): fail the request with 500.
    Failed,
}

unsafe fn ctx_slot(r: *mut ngx_http_request_t) -> *mut *mut c_void {
    (*r).ctx.add(Module::module().ctx_index)
}

unsafe extern "C" fn cleanup(data: *mut c_void) {
    crate::guard("request cleanup", (), || {
        // SAFETY: data is the Box leaked in `get_or_create`, freed exactly once here.
        let mut ctx = Box::from_raw(data as *mut RequestCtx);
        if !ctx.finished {
            delete_all(&mut ctx);
        }
    })
}

/// Finds this request's chain state: in r->ctx, or, after an internal redirect wiped r->ctx,
/// through the pool cleanup that owns it.
pub(crate) unsafe fn get(r: *mut ngx_http_request_t) -> Option<&'static mut RequestCtx> {
    let p = *ctx_slot(r);
    if !p.is_null() {
        return Some(&mut *(p as *mut RequestCtx));
    }
    let mut c = (*(*r).pool).cleanup;
    while !c.is_null() {
        // Compared as addresses: one definition in one shared object.
        if (*c).handler.map(|h| h as usize) == Some(cleanup as *const () as usize) {
            *ctx_slot(r) = (*c).data;
            return Some(&mut *((*c).data as *mut RequestCtx));
        }
        c = (*c).next;
    }
    None
}

/// The chain state of a main request whose location has filters, created on first use
/// with one HTTP context per filter.
pub(crate) unsafe fn get_or_create(r: *mut ngx_http_request_t) -> Option<&'static mut RequestCtx> {
    if r != (*r).main {
        return None;
    }
    if let Some(c) = get(r) {
        return Some(c);
    }
    let lcf = Module::location_conf(&*r)?;
    let filters = lcf.filters.as_ref().filter(|f| !f.is_empty())?;
    let cln = ngx_pool_cleanup_add((*r).pool, 0);
    if cln.is_null() {
        return None;
    }
    let mut ctx = Box::new(RequestCtx::default());
    WORKER.with(|w| {
        let mut w = w.borrow_mut();
        for &fi in filters {
            let mut fc = FilterCtx { filter: fi, generation: 0, ctx_id: None };
            if let Some(w) = w.as_mut() {
                let mi = w.filter_module[fi];
                w.ensure_fresh(mi);
                fc.generation = w.generations[mi];
                if let (Some(root), Some(inst)) = (w.roots[fi], w.instance_for(mi, fc.generation)) {
                    match inst.create_http_context(root) {
                        Ok(id) => fc.ctx_id = Some(id),
                        Err(e) => {
                            log_failure(r, &w.labels[mi], &e);
                            w.poison(mi);
                        }
                    }
                }
            }
            ctx.filters.push(fc);
        }
    });
    let raw = Box::into_raw(ctx);
    (*cln).handler = Some(cleanup);
    (*cln).data = raw as *mut c_void;
    *ctx_slot(r) = raw as *mut c_void;
    Some(&mut *raw)
}

pub(crate) unsafe fn log_failure(r: *mut ngx_http_request_t, label: &str, e: &HostError) {
    crate::ngx_log::write(
        (*(*r).connection).log,
        NGX_LOG_ERR as ngx_uint_t,
        label,
        format!("{e}; failing the request").as_bytes(),
    );
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Headers {
    Request,
    Response,
}

/// Runs on_request_headers or on_response_headers over the chain, in configuration order.
/// A local response stops the chain; Pause with nothing pending cannot be resumed in this
/// version, so it is logged and treated as Continue rather than hanging the request.
pub(crate) unsafe fn run_headers(r: *mut ngx_http_request_t, ctx: &mut RequestCtx, which: Headers) -> ChainResult {
    let (phase, map) = match which {
        Headers::Request => (Phase::Request, MapType::RequestHeaders),
        Headers::Response => (Phase::Response, MapType::ResponseHeaders),
    };
    let end_of_stream = match which {
        Headers::Request => (*r).headers_in.content_length_n <= 0 && (*r).headers_in.chunked() == 0,
        Headers::Response => (*r).header_only() != 0 || (*r).headers_out.content_length_n == 0,
    };
    WORKER.with(|w| {
        let mut w = w.borrow_mut();
        let Some(w) = w.as_mut() else { return ChainResult::Failed };
        for fc in ctx.filters.iter_mut() {
            let mi = w.filter_module[fc.filter];
            let label = w.labels[mi].clone();
            let label = label.as_str();
            let (Some(id), Some(inst)) = (fc.ctx_id, w.instance_for(mi, fc.generation)) else {
                crate::ngx_log::write(
                    (*(*r).connection).log,
                    NGX_LOG_ERR as ngx_uint_t,
                    label,
                    b"filter is not running in this worker; failing the request",
                );
                return ChainResult::Failed;
            };
            let mut stream = NgxStream::new(r, label, phase);
            let exports = inst.exports();
            let wanted = match which {
                Headers::Request => exports.request_headers,
                Headers::Response => exports.response_headers,
            };
            if !wanted {
                continue;
            }
            let n = stream.count(map);
            let res = match which {
                Headers::Request => inst.on_request_headers(id, &mut stream, n, end_of_stream),
                Headers::Response => inst.on_response_headers(id, &mut stream, n, end_of_stream),
            };
            match res {
                Ok(Outcome { local_response: Some(lr), .. }) => return ChainResult::Local(lr),
                Ok(Outcome { action: Action::Continue, .. }) => {}
                Ok(Outcome { action: Action::Pause, .. }) => {
                    crate::ngx_log::write(
                        (*(*r).connection).log,
                        NGX_LOG_WARN as ngx_uint_t,
                        label,
                        b"returned Pause with no local response and nothing pending: continuing",
                    );
                }
                Err(e) => {
                    log_failure(r, label, &e);
                    fc.ctx_id = None;
                    w.poison(mi);
                    return ChainResult::Failed;
                }
            }
        }
        ChainResult::Continue
    })
}

/// on_done + on_log (with the request still readable) then on_delete, for every filter.
pub(crate) unsafe fn finish(r: *mut ngx_http_request_t, ctx: &mut RequestCtx) {
    if ctx.finished {
        return;
    }
    WORKER.with(|w| {
        let mut w = w.borrow_mut();
        let Some(w) = w.as_mut() else { return };
        for fc in ctx.filters.iter_mut() {
            let mi = w.filter_module[fc.filter];
            let label = w.labels[mi].clone();
            let (Some(id), Some(inst)) = (fc.ctx_id, w.instance_for(mi, fc.generation)) else { continue };
            let mut stream = NgxStream::new(r, &label, Phase::Response);
            if let Err(e) = inst.on_done_and_log(id, &mut stream) {
                log_failure(r, &label, &e);
                fc.ctx_id = None;
                w.poison(mi);
            }
        }
    });
    delete_all(ctx);
}

/// on_delete for every live context; no request access needed (runs from pool cleanup too).
fn delete_all(ctx: &mut RequestCtx) {
    ctx.finished = true;
    let _ = WORKER.try_with(|w| {
        let Ok(mut w) = w.try_borrow_mut() else { return };
        let Some(w) = w.as_mut() else { return };
        for fc in ctx.filters.iter_mut() {
            let mi = w.filter_module[fc.filter];
            if let (Some(id), Some(inst)) = (fc.ctx_id.take(), w.instance_for(mi, fc.generation)) {
                if let Err(e) = inst.on_delete(id) {
                    crate::ngx_log::cycle_error(&format!("[proxy_wasm] {}: {e}", w.labels[mi]));
                    w.poison(mi);
                }
            }
        }
    });
}

