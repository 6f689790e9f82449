//! The request side of HTTP calls: a filter's calls are sent after its callback, park the
//! request (access phase, or a held request body) until they are answered, and are
//! delivered to the filter's on_http_call_response; the request's end cancels the rest.

use std::ptr;

use ngx::ffi::*;
use proxy_wasm_host::Outcome;

use super::chain::{self, ChainResult, RequestCtx};
use super::stream::Phase;
use crate::calls::{self, Answer, Call, Hooks, Owner, Prior};
use crate::vm::worker::with_worker;

/// How calls made by a request's filters complete.
static HOOKS: Hooks = Hooks { outcome, due, deliver, run_posted: true };

/// The filter's failed calls in a row (this one included when `failed`): the back-off
/// reads them from the request's list of calls, where each call keeps its own outcome.
unsafe fn outcome(r: *mut ngx_http_request_t, owner: Owner, this: *const Call, failed: bool) -> Prior {
    let p = chain::get(r).map(|ctx| calls::failures_in_a_row(&ctx.calls, owner, this)).unwrap_or_default();
    Prior { failures: p.failures + u32::from(failed), ..p }
}

/// Nothing to record: the call keeps when its answer is due.
fn due(_: Owner, _: ngx_msec_t) {}

/// Calls of filter `i` not answered yet.
pub(crate) fn pending(ctx: &RequestCtx, i: usize) -> usize {
    ctx.calls.iter().filter(|c| !c.is_done() && c.owner() == Owner::Filter(i)).count()
}

/// Stops the gRPC calls filter `i` cancelled in its last callback.
pub(crate) unsafe fn cancel_grpc(ctx: &mut RequestCtx, i: usize, tokens: &[u32]) {
    for call in ctx.calls.iter_mut().filter(|c| !c.is_done() && c.owner() == Owner::Filter(i) && tokens.contains(&c.token())) {
        call.cancel();
    }
}

/// Sends the calls the last callbacks dispatched.
pub(crate) unsafe fn send_new(r: *mut ngx_http_request_t, ctx: &mut RequestCtx) {
    for (i, req) in std::mem::take(&mut ctx.new_calls) {
        let call = calls::dispatch(r, Owner::Filter(i), &HOOKS, req);
        ctx.calls.push(call);
    }
}

/// Cancels every call of the request that is still pending (it was answered or failed):
/// their callbacks never run.
pub(crate) unsafe fn cancel_all(ctx: &mut RequestCtx) {
    let mut owners: Vec<(usize, u32)> = Vec::new();
    for call in ctx.calls.iter_mut().filter(|c| !c.is_done()) {
        call.cancel();
        if let Owner::Filter(i) = call.owner() {
            owners.push((i, call.token()));
        }
    }
    forget(ctx, &owners);
}

/// The request ends (cleanup): calls still pending or never sent will not be answered.
/// Their subrequests are gone already (nginx frees a request after its subrequests).
pub(crate) fn forget_pending(ctx: &mut RequestCtx) {
    let mut owners: Vec<(usize, u32)> = ctx.new_calls.drain(..).map(|(i, c)| (i, c.token)).collect();
    for call in ctx.calls.iter_mut().filter(|c| !c.is_done()) {
        call.abandon();
        if let Owner::Filter(i) = call.owner() {
            owners.push((i, call.token()));
        }
    }
    forget(ctx, &owners);
}

/// Tells each owning filter's instance that these calls (filter, token) will never be answered.
fn forget(ctx: &RequestCtx, owners: &[(usize, u32)]) {
    if owners.is_empty() {
        return;
    }
    with_worker(|w| {
        for &(i, token) in owners {
            let fc = &ctx.filters[i];
            let mi = w.filter_module[fc.filter];
            if let Some(inst) = w.slots[mi].get(fc.generation) {
                inst.forget_http_calls(&[token]);
            }
        }
    });
}

unsafe fn deliver(r: *mut ngx_http_request_t, owner: Owner, token: u32, answer: Answer<'_>) {
    let Owner::Filter(i) = owner else { return };
    let Some(ctx) = chain::get(r) else { return };
    if ctx.finished || ctx.answered {
        // Nobody to tell any more; the instance stops counting the call.
        forget(ctx, &[(i, token)]);
        return;
    }
    let mut answer = Some(answer);
    // A filter waiting in the response may change the held response headers.
    let phase = if ctx.response_headers_done { Phase::Response } else { Phase::Request };
    let res = chain::step(r, ctx, i, &mut |inst, id, _fc, seed| {
        let mut stream = seed.stream(phase);
        let outcome = match answer.take()? {
            Answer::Http(resp) => inst.on_http_call_response(id, token, resp, Some(&mut stream)),
            Answer::Grpc(ev) => inst.on_grpc_event(id, token, ev, Some(&mut stream)),
        };
        Some(outcome.map(|o| {
            // Without proxy_continue_stream the filter stays paused (its other calls, or
            // the end of them, resume it).
            if o.ops.continue_request || o.ops.continue_response || o.local_response.is_some() {
                o
            } else {
                Outcome { action: proxy_wasm_host::Action::Pause, ..o }
            }
        }))
    });
    send_new(r, ctx);
    if ctx.response_waiting == Some(i) {
        match res {
            ChainResult::Paused(_) if pending(ctx, i) > 0 => {}
            res => {
                if !matches!(res, ChainResult::Continue | ChainResult::Paused(_)) {
                    cancel_all(ctx);
                }
                super::response_wait::resume_after_calls(r, ctx, i, res);
            }
        }
        return;
    }
    if ctx.waiting != Some(i) {
        if let ChainResult::Local(_) = res {
            chain::log_at(r, NGX_LOG_WARN, "proxy_wasm", "a local response from on_http_call_response came after the request went on: ignored");
        }
        return;
    }
    let resume = match res {
        ChainResult::Paused(_) if pending(ctx, i) > 0 => return,
        ChainResult::Paused(_) | ChainResult::Continue => ChainResult::Continue,
        other => {
            cancel_all(ctx);
            other
        }
    };
    ctx.resume = Some(resume);
    if ctx.waiting_in_body {
        // nginx's body reader parked the request with an empty write handler.
        (*r).write_event_handler = Some(ngx_http_core_run_phases);
    }
    // Wake the request: its access handler runs again and applies `resume`.
    if ngx_http_post_request(r, ptr::null_mut()) != NGX_OK as ngx_int_t {
        chain::log_at(r, NGX_LOG_ALERT, "proxy_wasm", "could not wake the request after its HTTP calls");
    }
}

/// A parked request's access handler ran again: Some(result) once its filter may go on.
pub(crate) fn take_resume(ctx: &mut RequestCtx) -> Option<(usize, ChainResult)> {
    let i = ctx.waiting?;
    let res = ctx.resume.take()?;
    ctx.waiting = None;
    Some((i, res))
}


/// A call's response headers as its plugin sees them (`:status` first), for
/// `calls::capture_headers`.
pub(crate) unsafe fn response_headers(r: *mut ngx_http_request_t) -> Vec<(Vec<u8>, Vec<u8>)> {
    use proxy_wasm_host::{maps, HttpStream, MapType};
    let mut b = maps::MapBuilder::new();
    let mut s = super::stream::NgxStream::new(r, "", Phase::Response);
    s.map_pairs(MapType::ResponseHeaders, &mut b);
    let bytes = b.finish();
    maps::deserialize(&bytes).map(|p| p.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()).unwrap_or_default()
}
