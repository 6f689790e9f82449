//! The chain runner: one callback of one filter (`step`), and the walks over the chain that
//! every phase uses: headers (`run_headers`), bodies in either direction (`run_body`), and
//! the end of the request (`finish`).

use proxy_wasm_host::abi::BufferType;
use proxy_wasm_host::{HostError, LocalResponse, MapType, Outcome, PluginInstance};
use ngx::ffi::*;

pub(crate) use super::ctx::{get, get_or_create, BodyRead, FilterCtx, RequestCtx};
pub(crate) use crate::util::chunk::Chunk;
use super::stream::{NgxStream, Phase, Properties};
use crate::vm::filter::{self, Policy, Verdict};
use crate::vm::worker::WORKER;

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

/// The chain answered the request itself (local response, failure, close): later phases
/// skip it and its pending HTTP calls are cancelled.
pub(crate) unsafe fn mark_answered(ctx: &mut RequestCtx) {
    ctx.answered = true;
    super::calls::cancel_all(ctx);
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
    crate::util::log::write((*(*r).connection).log, level as ngx_uint_t, label, msg.as_bytes());
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
    let policy = Policy { fail_open: crate::conf::failure_status(r) == 0, consequence: "failing the request" };
    let mut root_calls_queued = false;
    let mut cancels = Vec::new();
    let res = WORKER.with(|w| {
        let mut w = w.borrow_mut();
        let Some(w) = w.as_mut() else { return ChainResult::Failed };
        let fc = &mut ctx.filters[i];
        let (mi, label, inst) = filter::running(w, fc.filter, fc.generation, fc.ctx_id);
        let mut log = |level: u32, msg: &str| log_at(r, level, &label, msg);
        let Some((id, inst)) = inst else {
            return chain_result(filter::not_running(&policy, &mut log), i);
        };
        let seed = Seed { r, label: &label, properties: &mut ctx.properties };
        let res = f(inst, id, fc, seed);
        cancels = inst.take_grpc_cancels();
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
            } else if let Some(inst) = w.slots[mi].get(generation) {
                inst.forget_http_calls(&[c.token]);
            }
        }
        w.after_root_callback(mi);
        if matches!(res, Some(Err(_))) {
            fc.ctx_id = None;
        }
        let own = |ops: &proxy_wasm_host::StreamOps| ops.continue_request || ops.continue_response;
        chain_result(filter::judge(w, mi, res, &policy, own, &mut log), i)
    });
    if !cancels.is_empty() {
        // SAFETY: the request is alive (its filter just ran); its calls hang off it.
        unsafe { super::calls::cancel_grpc(ctx, i, &cancels) };
    }
    if root_calls_queued {
        // Calls a root context made in the callback (sent once the worker state is free).
        crate::vm::worker::flush_root_calls();
    }
    res
}

fn chain_result(v: Verdict, i: usize) -> ChainResult {
    match v {
        Verdict::Continue => ChainResult::Continue,
        Verdict::Paused => ChainResult::Paused(i),
        Verdict::Closed => ChainResult::Closed,
        Verdict::Failed => ChainResult::Failed,
        Verdict::Answered(o) => o.local_response.map_or(ChainResult::Continue, ChainResult::Local),
    }
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
pub(super) fn delete_all(ctx: &mut RequestCtx) {
    ctx.finished = true;
    filter::delete_contexts(ctx.filters.iter_mut().map(|fc| (fc.filter, fc.generation, &mut fc.ctx_id)));
}

/// Which body a walk runs the filters over.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Request,
    Response,
}

impl Direction {
    fn wanted(self, fc: &FilterCtx) -> bool {
        match self {
            Direction::Request => fc.exports.request_body,
            Direction::Response => fc.exports.response_body,
        }
    }

    /// The bytes filter `fc` holds of this body.
    pub(crate) fn held(self, fc: &mut FilterCtx) -> &mut Vec<u8> {
        match self {
            Direction::Request => &mut fc.request_body,
            Direction::Response => &mut fc.response_body,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Direction::Request => "request body",
            Direction::Response => "response body",
        }
    }
}

/// How a walk over the body callbacks ended.
pub(crate) enum BodyEnd {
    /// Every filter of the range passed: this chunk goes on.
    Done(Chunk),
    /// A filter holds the bytes (it paused before the end of the body).
    Held,
    /// Filter i paused with HTTP calls pending: at the end of the request body, or anywhere
    /// in the response body (what it got is held at it).
    Waiting(usize),
    /// A filter holds more than proxy_wasm_body_buffer_limit (logged).
    OverLimit,
    /// A filter answered, failed or closed the stream.
    Stopped(ChainResult),
}

/// Runs the body callbacks (`dir`) of filters `range` over `data`, in configuration order:
/// each filter gets what it holds plus what the one before passed, and passes it all on
/// unless it pauses. A pause at the end of the body has nothing left to wait for (the bytes
/// go on), except for a request filter whose HTTP calls are pending. A filter holding
/// nothing sees the chunk as it came (still nginx's buffers, copied only if changed).
pub(crate) unsafe fn run_body(
    r: *mut ngx_http_request_t,
    ctx: &mut RequestCtx,
    dir: Direction,
    range: std::ops::Range<usize>,
    mut data: Chunk,
    eos: bool,
) -> BodyEnd {
    let limit = crate::conf::body_buffer_limit(r);
    let (phase, buffer, response) = match dir {
        Direction::Request => (Phase::Request, BufferType::HttpRequestBody, false),
        Direction::Response => (Phase::Response, BufferType::HttpResponseBody, true),
    };
    for i in range {
        if !dir.wanted(&ctx.filters[i]) {
            continue;
        }
        let mut incoming = std::mem::take(&mut data);
        if !dir.held(&mut ctx.filters[i]).is_empty() {
            // The filter holds bytes from before: the chunk joins them.
            let Ok(mut more) = incoming.into_bytes() else { return unreadable(r) };
            dir.held(&mut ctx.filters[i]).append(&mut more);
            incoming = Chunk::default();
        }
        let res = step(r, ctx, i, &mut |inst, id, fc, seed| {
            let held = dir.held(fc);
            if held.is_empty() {
                let size = incoming.len();
                let mut stream = seed.stream(phase).with_chunk(buffer, &mut incoming);
                return Some(inst.on_body(response, id, &mut stream, size, eos));
            }
            let size = held.len();
            let mut stream = seed.stream(phase).with_body(buffer, held);
            Some(inst.on_body(response, id, &mut stream, size, eos))
        });
        super::calls::send_new(r, ctx);
        match res {
            ChainResult::Continue => {}
            ChainResult::Paused(_) if super::calls::pending(ctx, i) > 0 && (eos || dir == Direction::Response) => {
                if !incoming.is_empty() {
                    // Held until the calls are answered: the bytes must outlive nginx's buffers.
                    let Ok(mut bytes) = incoming.into_bytes() else { return unreadable(r) };
                    dir.held(&mut ctx.filters[i]).append(&mut bytes);
                }
                return BodyEnd::Waiting(i);
            }
            ChainResult::Paused(_) if eos => {}
            ChainResult::Paused(_) => {
                if !incoming.is_empty() {
                    // Held: the bytes must outlive nginx's buffers.
                    let Ok(bytes) = incoming.into_bytes() else { return unreadable(r) };
                    *dir.held(&mut ctx.filters[i]) = bytes;
                }
                if dir.held(&mut ctx.filters[i]).len() > limit {
                    log_at(r, NGX_LOG_ERR, "chain", &format!(
                        "a filter buffered more than proxy_wasm_body_buffer_limit ({limit} bytes) of {}",
                        dir.name()
                    ));
                    return BodyEnd::OverLimit;
                }
                return BodyEnd::Held;
            }
            other => return BodyEnd::Stopped(other),
        }
        let held = dir.held(&mut ctx.filters[i]);
        data = if held.is_empty() { incoming } else { Chunk::from_bytes(std::mem::take(held)) };
    }
    BodyEnd::Done(data)
}

/// A chunk whose file could not be read fails the request.
unsafe fn unreadable(r: *mut ngx_http_request_t) -> BodyEnd {
    log_at(r, NGX_LOG_ERR, "chain", "cannot read the body chunk from its file");
    BodyEnd::Stopped(ChainResult::Failed)
}
