//! The per-request state of a location's filter chain: one context per filter, and what the
//! phases, filters and calls of the request share. Owned by a pool cleanup, so that it is
//! freed with the request (and its contexts deleted) however the request ends.

use std::ffi::c_void;

use ngx::ffi::*;
use ngx::http::{HttpModule, HttpModuleLocationConf};
use proxy_wasm_host::instance::Exports;
use proxy_wasm_host::LocalResponse;

use super::chain::{delete_all, log_failure, ChainResult};
use super::stream::Properties;
use crate::conf::Module;
use crate::vm::worker::WORKER;

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

/// Reading the request body for the filters' on_request_body (see request_body.rs).
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
    pub calls: Vec<Box<crate::calls::Call>>,
    /// The request is parked until filter i's calls are answered: in the access phase, or
    /// (waiting_in_body) with the whole request body held at that filter.
    pub waiting: Option<usize>,
    pub waiting_in_body: bool,
    /// The response waits at filter i for its calls (made in on_response_headers or
    /// on_response_body, then Pause): the body stops at that filter, held, until a call's
    /// answer continues it or its last call is answered; `response_eos_held`: the end of
    /// the body is among what it holds (the request is kept from finishing meanwhile).
    pub response_waiting: Option<usize>,
    pub response_eos_held: bool,
    /// What it holds went through its on_response_body already (it paused there).
    pub response_held_seen: bool,
    /// nginx's body reader's read handler, set aside while the body is held for calls.
    pub saved_read_handler: ngx_http_event_handler_pt,
    /// The end of the request body went on to nginx: the request body filter is done.
    pub request_body_passed: bool,
    /// How the parked filter went on, for the access handler to apply.
    pub resume: Option<ChainResult>,
    /// The response body filter's output buffers, reused once written.
    pub out_bufs: crate::util::buf::Recycled,
    /// Response body input kept while the client is behind (links to buffers not consumed).
    pub pending_in: *mut ngx_chain_t,
}

unsafe fn ctx_slot(r: *mut ngx_http_request_t) -> *mut *mut c_void {
    (*r).ctx.add(Module::module().ctx_index)
}

unsafe extern "C" fn cleanup(data: *mut c_void) {
    crate::util::guard("request cleanup", (), || {
        // SAFETY: data is the Box leaked in `get_or_create`, freed exactly once here.
        let mut ctx = Box::from_raw(data as *mut RequestCtx);
        super::calls::forget_pending(&mut ctx);
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
    let data = crate::util::pool::cleanup_data((*r).pool, cleanup, |_| true);
    if data.is_null() {
        return None;
    }
    *ctx_slot(r) = data;
    Some(&mut *(data as *mut RequestCtx))
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
                let c = crate::vm::filter::create_context(w, fi, &mut |label, e| log_failure(r, label, e));
                (fc.generation, fc.ctx_id, fc.exports) = (c.generation, c.ctx_id, c.exports);
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
        crate::vm::worker::flush_root_calls();
    }
    let raw = Box::into_raw(ctx);
    (*cln).handler = Some(cleanup);
    (*cln).data = raw as *mut c_void;
    *ctx_slot(r) = raw as *mut c_void;
    Some(&mut *raw)
}

