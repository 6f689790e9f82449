//! The per-request state of a location's filter chain, and running callbacks over it.

use std::ffi::c_void;

use ngx::ffi::*;
use ngx::http::{HttpModule, HttpModuleLocationConf};
use proxy_wasm_host::instance::Exports;
use proxy_wasm_host::{Action, HostError, LocalResponse, MapType, Outcome, PluginInstance};

use crate::request::{NgxStream, Phase, Properties};
use crate::worker::WORKER;
use crate::Module;

pub(crate) struct FilterCtx {
    pub filter: usize,
    /// The instance generation the context was created in (see Worker::generations).
    pub generation: u64,
    /// The HTTP context id; None once the filter failed (trap) or could not start.
    pub ctx_id: Option<u32>,
    /// Which callbacks the module exports.
    pub exports: Exports,
    /// Response body bytes this filter holds (it returned Pause from on_response_body).
    pub response_body: Vec<u8>,
    /// Request body bytes this filter holds (it returned Pause from on_request_body).
    pub request_body: Vec<u8>,
}

/// Reading the request body for the filters' on_request_body (see body.rs).
#[derive(Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyRead {
    #[default]
    NotStarted,
    Reading,
    Done,
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
    /// Response headers are held at this filter (it returned Pause from on_response_headers)
    /// and have not been passed to the next header filter yet.
    pub response_headers_held: Option<usize>,
    /// Some filter has on_response_body: the body filter runs the chain.
    pub response_body_wanted: bool,
    /// Some filter has on_request_body: the request body filter runs the chain.
    pub request_body_wanted: bool,
    /// Some filter has on_response_trailers.
    pub response_trailers_wanted: bool,
    pub request_body_read: BodyRead,
    /// Request body bytes passed on after the filters (the new Content-Length).
    pub request_body_out: usize,
    /// A local response from on_request_body, sent by the header filter in place of the
    /// error page nginx produces when body reading stops.
    pub pending_local: Option<LocalResponse>,
    /// Properties set by the filters of this request (visible to the next ones).
    pub properties: Properties,
    /// on_done / on_log / on_delete have run.
    pub finished: bool,
    /// HTTP calls dispatched by the last callbacks, not sent yet: (filter, call).
    pub new_calls: Vec<(usize, proxy_wasm_host::HttpCallRequest)>,
    /// Every HTTP call of this request (kept until the request is freed: nginx holds
    /// their addresses).
    pub calls: Vec<Box<crate::http_call::Call>>,
    /// The request is parked until filter i's calls are answered: in the access phase, or
    /// (waiting_in_body) with the whole request body held at that filter.
    pub waiting: Option<usize>,
    pub waiting_in_body: bool,
    /// nginx's body reader's read handler, set aside while the body is held for calls.
    pub saved_read_handler: ngx_http_event_handler_pt,
    /// The end of the request body went on to nginx: the request body filter is done.
    pub request_body_passed: bool,
    /// How the parked filter went on, for the access handler to apply.
    pub resume: Option<ChainResult>,
}

/// The result of running one callback over (part of) the chain.
pub(crate) enum ChainResult {
    Continue,
    /// Filter `i` returned Pause.
    Paused(usize),
    Local(LocalResponse),
    /// A filter called proxy_close_stream: reset the request (close the connection).
    Closed,
    /// A filter failed (trap or missing instance): fail the request.
    Failed,
}

unsafe fn ctx_slot(r: *mut ngx_http_request_t) -> *mut *mut c_void {
    (*r).ctx.add(Module::module().ctx_index)
}

unsafe extern "C" fn cleanup(data: *mut c_void) {
    crate::guard("request cleanup", (), || {
        // SAFETY: data is the Box leaked in `get_or_create`, freed exactly once here.
        let mut ctx = Box::from_raw(data as *mut RequestCtx);
        crate::http_call::forget_pending(&mut ctx);
        if !ctx.finished {
            delete_all(&mut ctx);
        }
    })
}

/// Finds this request's chain state: in r->ctx, or, after an internal redirect wiped r->ctx,
/// through the pool cleanup that owns it. Only a main request has one: a subrequest (an
/// HTTP call, SSI, `log_subrequest on`) shares its main request's pool, and the walk would
/// hand it the main request's state.
pub(crate) unsafe fn get(r: *mut ngx_http_request_t) -> Option<&'static mut RequestCtx> {
    if r != (*r).main {
        return None;
    }
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
    let mut root_calls_queued = false;
    WORKER.with(|w| {
        let mut w = w.borrow_mut();
        for &fi in filters {
            let mut fc = FilterCtx {
                filter: fi,
                generation: 0,
                ctx_id: None,
                exports: Exports::default(),
                response_body: Vec::new(),
                request_body: Vec::new(),
            };
            if let Some(w) = w.as_mut() {
                let mi = w.filter_module[fi];
                w.ensure_fresh(mi);
                fc.generation = w.generations[mi];
                if let (Some(root), Some(inst)) = (w.roots[fi], w.instance_for(mi, fc.generation)) {
                    fc.exports = inst.exports();
                    match inst.create_http_context(root) {
                        Ok(id) => fc.ctx_id = Some(id),
                        Err(e) => {
                            log_failure(r, &w.labels[mi], &e);
                            w.poison(mi);
                        }
                    }
                }
            }
            ctx.response_body_wanted |= fc.exports.response_body;
            ctx.request_body_wanted |= fc.exports.request_body;
            ctx.response_trailers_wanted |= fc.exports.response_trailers;
            ctx.filters.push(fc);
        }
        root_calls_queued = w.as_ref().is_some_and(|w| !w.root_calls.is_empty());
    });
    if root_calls_queued {
        // A module restarted above made calls from its root contexts.
        crate::worker::flush_root_calls();
    }
    let raw = Box::into_raw(ctx);
    (*cln).handler = Some(cleanup);
    (*cln).data = raw as *mut c_void;
    *ctx_slot(r) = raw as *mut c_void;
    Some(&mut *raw)
}

/// The chain answered the request itself (local response, failure, close): later phases
/// skip it and its pending HTTP calls are cancelled.
pub(crate) unsafe fn mark_answered(ctx: &mut RequestCtx) {
    ctx.answered = true;
    crate::http_call::cancel_all(ctx);
}

/// The status that ends a request a filter failed (the failure policy's) or closed (nginx's
/// 444: close the connection without a response).
pub(crate) unsafe fn end_status(r: *mut ngx_http_request_t, res: &ChainResult) -> ngx_int_t {
    match res {
        ChainResult::Closed => NGX_HTTP_CLOSE as ngx_int_t,
        _ => crate::conf::failure_status(r) as ngx_int_t,
    }
}

pub(crate) unsafe fn log_at(r: *mut ngx_http_request_t, level: u32, label: &str, msg: &str) {
    crate::ngx_log::write((*(*r).connection).log, level as ngx_uint_t, label, msg.as_bytes());
}

pub(crate) unsafe fn log_failure(r: *mut ngx_http_request_t, label: &str, e: &HostError) {
    log_at(r, NGX_LOG_ERR, label, &format!("{e}; failing the request"));
}

/// What a callback needs to build its stream: the request, the module label and the
/// request's properties.
pub(crate) struct Seed<'a> {
    r: *mut ngx_http_request_t,
    label: &'a str,
    properties: &'a mut Properties,
}

impl<'a> Seed<'a> {
    pub fn stream(self, phase: Phase) -> NgxStream<'a> {
        // SAFETY: step() only builds seeds for the live request it was given.
        unsafe { NgxStream::new(self.r, self.label, phase).with_properties(self.properties) }
    }
}

/// Runs one callback of filter `i` of the chain. `f` gets the instance, the context id, the
/// filter's state and a stream seed, and returns None when the module does not export the
/// callback.
pub(crate) unsafe fn step(
    r: *mut ngx_http_request_t,
    ctx: &mut RequestCtx,
    i: usize,
    f: &mut dyn FnMut(&mut PluginInstance, u32, &mut FilterCtx, Seed<'_>) -> Option<Result<Outcome, HostError>>,
) -> ChainResult {
    let fail_open = crate::conf::failure_status(r) == 0;
    let mut root_calls_queued = false;
    let res = WORKER.with(|w| {
        let mut w = w.borrow_mut();
        let Some(w) = w.as_mut() else { return ChainResult::Failed };
        let fc = &mut ctx.filters[i];
        let mi = w.filter_module[fc.filter];
        let label = w.labels[mi].clone();
        let inst = match fc.ctx_id {
            Some(id) => w.instance_for(mi, fc.generation).map(|inst| (id, inst)),
            None => None,
        };
        let Some((id, inst)) = inst else {
            // A filter that failed earlier in this request, or could not start.
            if fail_open {
                return ChainResult::Continue;
            }
            log_at(r, NGX_LOG_ERR, &label, "filter is not running (it failed or could not start); failing the request");
            return ChainResult::Failed;
        };
        let seed = Seed { r, label: &label, properties: &mut ctx.properties };
        let res = f(inst, id, fc, seed);
        let calls = if inst.has_http_calls() { inst.take_http_calls() } else { Vec::new() };
        let mut root_calls = Vec::new();
        if matches!(res, Some(Err(_))) {
            // A failed filter's calls are never sent.
            inst.forget_http_calls(&calls.iter().map(|c| c.token).collect::<Vec<_>>());
        } else {
            for c in calls {
                if c.context_id == id {
                    ctx.new_calls.push((i, c));
                } else {
                    // Made with the root context effective (proxy_set_effective_context):
                    // the root context gets the answer, as for its own calls.
                    root_calls.push(c);
                }
            }
        }
        let fc = &mut ctx.filters[i];
        let generation = fc.generation;
        let fi = fc.filter;
        for c in root_calls {
            if w.roots[fi] == Some(c.context_id) {
                w.root_calls.push((fi, generation, c));
                root_calls_queued = true;
            } else if let Some(inst) = w.instance_for(mi, generation) {
                inst.forget_http_calls(&[c.token]);
            }
        }
        w.apply_ticks(mi);
        match res {
            None => ChainResult::Continue,
            Some(Ok(Outcome { local_response: Some(lr), .. })) => ChainResult::Local(lr),
            Some(Ok(Outcome { ops, .. })) if ops.close_request || ops.close_response => {
                log_at(r, NGX_LOG_INFO, &label, "closed the stream (proxy_close_stream)");
                ChainResult::Closed
            }
            Some(Ok(Outcome { action: Action::Continue, .. })) => ChainResult::Continue,
            // proxy_continue_stream during the callback undoes its own Pause.
            Some(Ok(Outcome { ops, .. })) if ops.continue_request || ops.continue_response => ChainResult::Continue,
            Some(Ok(Outcome { action: Action::Pause, .. })) => ChainResult::Paused(i),
            Some(Err(e)) => {
                fc.ctx_id = None;
                w.poison(mi);
                if fail_open {
                    log_at(r, NGX_LOG_ERR, &label, &format!("{e}; failing open (proxy_wasm_failure_policy open): the filter is skipped"));
                    return ChainResult::Continue;
                }
                log_failure(r, &label, &e);
                ChainResult::Failed
            }
        }
    });
    if root_calls_queued {
        // Calls a root context made in the callback (sent once the worker state is free).
        crate::worker::flush_root_calls();
    }
    res
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Headers {
    Request,
    Response,
}

/// Runs on_request_headers or on_response_headers over filters `from..`, in configuration
/// order, until one pauses, answers or fails.
pub(crate) unsafe fn run_headers(r: *mut ngx_http_request_t, ctx: &mut RequestCtx, which: Headers, from: usize) -> ChainResult {
    let (phase, map) = match which {
        Headers::Request => (Phase::Request, MapType::RequestHeaders),
        Headers::Response => (Phase::Response, MapType::ResponseHeaders),
    };
    let end_of_stream = match which {
        Headers::Request => !request_has_body(r),
        Headers::Response => response_has_no_body(r),
    };
    for i in from..ctx.filters.len() {
        let res = step(r, ctx, i, &mut |inst, id, fc, seed| {
            let wanted = match which {
                Headers::Request => fc.exports.request_headers,
                Headers::Response => fc.exports.response_headers,
            };
            if !wanted {
                return None;
            }
            let mut stream = seed.stream(phase);
            let n = stream.count(map);
            Some(match which {
                Headers::Request => inst.on_request_headers(id, &mut stream, n, end_of_stream),
                Headers::Response => inst.on_response_headers(id, &mut stream, n, end_of_stream),
            })
        });
        match res {
            ChainResult::Continue => {}
            other => return other,
        }
    }
    ChainResult::Continue
}

/// True when a request body follows the headers.
pub(crate) unsafe fn request_has_body(r: *mut ngx_http_request_t) -> bool {
    (*r).headers_in.content_length_n > 0 || (*r).headers_in.chunked() != 0
}

/// True when no response body will follow the headers (HEAD, 204, 304, empty).
pub(crate) unsafe fn response_has_no_body(r: *mut ngx_http_request_t) -> bool {
    let status = (*r).headers_out.status as u32;
    (*r).header_only() != 0
        || (*r).method == NGX_HTTP_HEAD as ngx_uint_t
        || status == NGX_HTTP_NO_CONTENT
        || status == NGX_HTTP_NOT_MODIFIED
        || (*r).headers_out.content_length_n == 0
}

/// on_done + on_log (with the request still readable) then on_delete, for every filter.
pub(crate) unsafe fn finish(r: *mut ngx_http_request_t, ctx: &mut RequestCtx) {
    if ctx.finished {
        return;
    }
    for i in 0..ctx.filters.len() {
        if ctx.filters[i].ctx_id.is_none() {
            continue;
        }
        let _ = step(r, ctx, i, &mut |inst, id, _, seed| {
            let mut stream = seed.stream(Phase::Response);
            Some(inst.on_done_and_log(id, &mut stream).map(|_| Outcome::CONTINUE))
        });
    }
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
