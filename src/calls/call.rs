//! proxy_http_call through nginx's own upstream machinery.
//!
//! Each call is a background subrequest that jumps straight into a location this module
//! generates at configuration time (`location @proxy_wasm_call`, never matched by a URI):
//! `proxy_pass $proxy_wasm_call_url`, so the call's "upstream" may name an `upstream {}`
//! block (keepalive pools, balancing), or be `host:port` / an IP literal; TLS is
//! `proxy_ssl_*` with verification on by default. The subrequest's response is captured by
//! our header and body filters (it never reaches the client) and handed to
//! `proxy_on_http_call_response` when the subrequest finishes, fails or times out.
//!
//! Calls from a request park it in the access phase until its calls are answered (or the
//! plugin resumes it); calls from root contexts (on_tick, on_configure) hang off a fake
//! request that lives as long as its calls.
//!
//! Responses are delivered from the call's own timer, never from inside nginx's
//! subrequest machinery: a plugin that dispatches again from `on_http_call_response` starts
//! its next call from the event loop, not recursively. A call that fails is answered no
//! sooner than a back-off after its dispatch, growing with the failures in a row of its
//! context (`BACKOFF_FIRST_MS`, `BACKOFF_MAX_MS`), so a plugin retrying a call that fails
//! without network I/O (a refused port) cannot spin the worker or flood the log.

use std::ffi::c_void;
use std::ptr;

use ngx::ffi::*;
use ngx::http::HttpModuleMainConf;
use proxy_wasm_host::grpc_call::{code, Deframer};
use proxy_wasm_host::{GrpcEvent, HttpCallRequest, HttpCallResponse};

use super::subrequest::{abort, end_cancelled, start_subrequest, subrequest_done};
use crate::conf::Module;

/// Largest call response body we capture; a larger one fails the call.
pub(crate) const MAX_RESPONSE_BODY: usize = 16 << 20;
/// Call response bodies one worker holds at any time (captured, not yet delivered and
/// dropped): a response that would pass it fails its call, as one past MAX_RESPONSE_BODY.
pub(crate) const MAX_RESPONSE_BYTES_PER_WORKER: usize = 256 << 20;

thread_local! {
    /// Bytes of call response bodies this worker holds (see MAX_RESPONSE_BYTES_PER_WORKER).
    pub(super) static CAPTURED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
/// Default of wasm_call_timeout: for calls with timeout 0, and nginx's proxy timeouts.
pub(crate) const DEFAULT_TIMEOUT_MS: ngx_msec_t = 60_000;
/// Back-off of a context whose calls keep failing: the k-th failed call in a row (k >= 1;
/// a call that got a response resets k) is answered no sooner than B(k) =
/// min(BACKOFF_FIRST_MS * 2^(k-1), BACKOFF_MAX_MS) after its dispatch, and no sooner than
/// B(k) after the context's previous failure was answered (so a plugin that dispatches
/// several calls per failure gets at most one failure per second, not a growing crowd). A
/// call that took longer to fail (a timeout) is answered at once.
pub(crate) const BACKOFF_FIRST_MS: ngx_msec_t = 5;
pub(crate) const BACKOFF_MAX_MS: ngx_msec_t = 1000;
/// Failures in a row past which the back-off no longer grows (5 ms * 2^8 > 1 s).
const BACKOFF_STEPS: u32 = 9;

/// The back-off for the k-th failed call in a row.
pub(crate) fn backoff_ms(k: u32) -> ngx_msec_t {
    let k = k.clamp(1, BACKOFF_STEPS);
    (BACKOFF_FIRST_MS << (k - 1)).min(BACKOFF_MAX_MS)
}

/// Who made a call, and so who gets its response.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Filter `i` of the request's chain.
    Filter(usize),
    /// The root context of filter definition `fi` (MainConf::filters), in the instance of
    /// that generation.
    Root { fi: usize, generation: u64 },
}

/// What a call hands its owner: an HTTP call's response (once), or one event of a gRPC call
/// (as it arrives; `Close` last).
pub(crate) enum Answer<'a> {
    Http(&'a HttpCallResponse),
    Grpc(GrpcEvent),
}

/// A gRPC call's answer as it arrives: messages are cut out of the body and queued with the
/// metadata, then handed over from the call's `post` event (never from inside nginx).
#[derive(Default)]
pub(super) struct GrpcState {
    pub deframer: Deframer,
    pub events: std::collections::VecDeque<GrpcEvent>,
    /// The initial metadata was queued (the first body bytes came).
    pub started: bool,
    /// A protocol failure in the body: the status the call ends with.
    pub error: Option<(u32, &'static str)>,
}

/// What the maker of a call hands in, so that this layer knows nothing of who made it.
pub(crate) struct Hooks {
    /// Records how a call of `owner` ended and returns the owner's failures in a row (this
    /// one included when `failed`) and when the latest earlier failure was due: the back-off.
    pub outcome: unsafe fn(main: *mut ngx_http_request_t, owner: Owner, this: *const Call, failed: bool) -> Prior,
    /// A failed call of `owner` is answered at `at`.
    pub due: fn(owner: Owner, at: ngx_msec_t),
    /// Hands the answer to `owner`; runs from the call's timer, never re-entrantly.
    pub deliver: unsafe fn(main: *mut ngx_http_request_t, owner: Owner, token: u32, answer: Answer<'_>),
    /// After delivery, run the requests posted on the main request's connection (a client
    /// request woken by the answer; a root context's fake request has none).
    pub run_posted: bool,
}

/// One call in flight (or answered). Boxed: nginx holds its address (timer event,
/// post_subrequest data) until the request that owns it is freed.
pub(crate) struct Call {
    pub(super) hooks: &'static Hooks,
    pub(super) owner: Owner,
    pub(super) token: u32,
    pub(super) upstream: String,
    pub(super) url: Vec<u8>,
    pub(super) host: Vec<u8>,
    pub(super) method: Vec<u8>,
    /// The request the subrequest hangs off (the client's, or a fake one).
    pub(super) main: *mut ngx_http_request_t,
    pub(super) sr: *mut ngx_http_request_t,
    pub(super) headers: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    pub(super) body: Vec<u8>,
    /// Bytes of this call's response counted in CAPTURED.
    pub(super) captured: usize,
    pub(super) body_done: bool,
    pub(super) too_big: bool,
    /// Answered (response, failure, timeout) or cancelled: nothing more happens to it.
    pub(super) done: bool,
    /// It could not start: settled as failed from its timer (not inside the plugin's callback).
    pub(super) start_failed: bool,
    /// The answer (a failed one has no headers), delivered when the timer fires.
    pub(super) answer: Option<HttpCallResponse>,
    /// Settled: Some(true) failed, Some(false) got a response (for the back-off).
    pub(super) failed: Option<bool>,
    /// When a failed call's answer is (or was) due: ngx_current_msec + its delay.
    pub(super) deliver_at: ngx_msec_t,
    /// The subrequest is over (or never ran): nothing to abort.
    pub(super) sr_done: bool,
    /// ngx_current_msec at dispatch.
    pub(super) started: ngx_msec_t,
    pub(super) timeout: ngx_msec_t,
    /// The call's timer: its timeout while in flight, then its delivery.
    pub(super) ev: ngx_event_t,
    /// A gRPC call: its request path (the subrequest's URI) and what arrived so far.
    pub(super) path: Vec<u8>,
    pub(super) grpc: Option<GrpcState>,
    /// Hands a gRPC call's queued events over while it is in flight.
    pub(super) post: ngx_event_t,
}

impl Call {
    /// The response bytes this call held are gone (delivered, or the call is freed).
    fn release_captured(&mut self) {
        let n = std::mem::take(&mut self.captured);
        CAPTURED.with(|c| c.set(c.get().saturating_sub(n)));
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.release_captured();
        // SAFETY: the events are ours; if armed they are in nginx's timer tree, so they must
        // leave the tree before their memory goes.
        unsafe {
            if self.ev.timer_set() != 0 {
                ngx_del_timer(&mut self.ev);
            }
            if self.post.timer_set() != 0 {
                ngx_del_timer(&mut self.post);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sending
// ---------------------------------------------------------------------------------------------

/// The call a subrequest carries, if it is one of ours.
pub(crate) unsafe fn call_of<'a>(r: *mut ngx_http_request_t) -> Option<&'a mut Call> {
    if r == (*r).main {
        return None;
    }
    let ps = (*r).post_subrequest;
    if ps.is_null() || (*ps).handler.map(|h| h as usize) != Some(subrequest_done as *const () as usize) {
        return None;
    }
    Some(&mut *((*ps).data as *mut Call))
}

/// Starts `req` as a subrequest of `main`. Never fails: a call that cannot start is
/// answered as failed from its timer (never from inside the plugin's callback).
pub(crate) unsafe fn dispatch(main: *mut ngx_http_request_t, owner: Owner, hooks: &'static Hooks, req: HttpCallRequest) -> Box<Call> {
    let mcf = Module::main_conf(&*main);
    let default_timeout = mcf.and_then(|m| m.call_timeout).unwrap_or(DEFAULT_TIMEOUT_MS);
    let https = req.header(b":scheme").is_some_and(|s| s.eq_ignore_ascii_case(b"https"));
    let path = req.header(b":path").unwrap_or(b"/");
    let mut url = Vec::with_capacity(req.upstream.len() + path.len() + 8);
    if req.grpc.is_some() {
        // grpc_pass takes no path: the subrequest's URI is the call's path.
        url.extend_from_slice(if https { b"grpcs://" } else { b"grpc://" });
        url.extend_from_slice(&req.upstream);
    } else {
        url.extend_from_slice(if https { b"https://" } else { b"http://" });
        url.extend_from_slice(&req.upstream);
        if !path.starts_with(b"/") {
            url.push(b'/');
        }
        url.extend_from_slice(path);
    }
    let host = req.header(b":authority").filter(|a| !a.is_empty()).unwrap_or(&req.upstream).to_vec();
    let mut call = Box::new(Call {
        hooks,
        owner,
        token: req.token,
        upstream: String::from_utf8_lossy(&req.upstream).into_owned(),
        url,
        host,
        method: req.header(b":method").unwrap_or(b"GET").to_vec(),
        main,
        sr: ptr::null_mut(),
        headers: None,
        body: Vec::new(),
        captured: 0,
        body_done: false,
        too_big: false,
        done: false,
        start_failed: false,
        answer: None,
        failed: None,
        deliver_at: 0,
        sr_done: false,
        started: ngx_current_msec,
        timeout: if req.timeout_ms > 0 { req.timeout_ms as ngx_msec_t } else { default_timeout },
        // SAFETY: an all-zero ngx_event_t is nginx's own starting state (ngx_pcalloc).
        ev: std::mem::zeroed(),
        path: path.to_vec(),
        grpc: req.grpc.map(|_| GrpcState::default()),
        // SAFETY: as `ev`.
        post: std::mem::zeroed(),
    });
    call.ev.handler = Some(timer_handler);
    call.post.handler = Some(post_handler);
    call.post.data = (*main).connection as *mut c_void;
    call.post.log = (*(*main).connection).log;
    // nginx's debug lines read ev->data as a connection: the request's (a fake request has
    // one too). The handler finds its Call from the event's address.
    call.ev.data = (*main).connection as *mut c_void;
    call.ev.log = (*(*main).connection).log;
    match start_subrequest(main, &mut call, &req, mcf) {
        Ok(()) => ngx_add_timer(&mut call.ev, call.timeout),
        Err(why) => {
            if !call.sr.is_null() {
                // Created but not set up: it must end without running.
                (*call.sr).write_event_handler = Some(end_cancelled);
            }
            log(&call, NGX_LOG_ERR, &format!("failed: {why}"));
            call.start_failed = true;
            ngx_add_timer(&mut call.ev, 0);
        }
    }
    call
}

/// An owner's failed calls: how many in a row, and when the latest earlier one was due.
#[derive(Default, Clone, Copy)]
pub(crate) struct Prior {
    pub failures: u32,
    pub last_at: Option<ngx_msec_t>,
}

/// The call is over: its answer goes out from its timer, after the back-off if it failed.
pub(super) unsafe fn settle(ptr: *mut Call, resp: HttpCallResponse) {
    let failed = resp.headers.is_empty();
    let (owner, started, main, hooks) = {
        let call = &*ptr;
        (call.owner, call.started, call.main, call.hooks)
    };
    let Prior { failures: in_a_row, last_at } = (hooks.outcome)(main, owner, ptr, failed);
    let now = ngx_current_msec;
    let delay = if failed {
        let spacing = backoff_ms(in_a_row);
        let due = (started + spacing).max(last_at.map_or(0, |l| l + spacing));
        due.saturating_sub(now)
    } else {
        0
    };
    if failed {
        (hooks.due)(owner, now + delay);
    }
    let call = &mut *ptr;
    call.deliver_at = now + delay;
    call.answer = Some(resp);
    call.failed = Some(failed);
    call.sr_done = true;
    if call.ev.timer_set() != 0 {
        ngx_del_timer(&mut call.ev);
    }
    // A worker shutting down does not wait for a delivery (it does for calls in flight).
    call.ev.set_cancelable(1);
    ngx_add_timer(&mut call.ev, delay);
}

/// Calls of `owner` among `calls` that failed in a row, most recent first (not counting
/// `this`; the count stops growing at BACKOFF_STEPS), and when the latest of them was due.
pub(crate) fn failures_in_a_row(calls: &[Box<Call>], owner: Owner, this: *const Call) -> Prior {
    let mut p = Prior::default();
    for c in calls.iter().rev() {
        if ptr::eq(&**c, this) || c.owner != owner {
            continue;
        }
        match c.failed {
            Some(true) => {
                p.failures = (p.failures + 1).min(BACKOFF_STEPS);
                p.last_at = Some(p.last_at.map_or(c.deliver_at, |l| l.max(c.deliver_at)));
            }
            Some(false) => break,
            None => continue,
        }
    }
    p
}

unsafe extern "C" fn timer_handler(ev: *mut ngx_event_t) {
    crate::util::guard("http call timer", (), || {
        // SAFETY: nginx hands back the event of a live Call (Drop removes it from the timer
        // tree before the Box goes).
        let ptr = crate::util::event::owner::<Call>(ev, std::mem::offset_of!(Call, ev));
        let (answer, c, run_posted) = {
            let call = &mut *ptr;
            if call.done {
                return;
            }
            if std::mem::take(&mut call.start_failed) {
                if let Some(g) = call.grpc.as_mut() {
                    g.events.push_back(GrpcEvent::Close { status: code::UNAVAILABLE, message: b"the call could not start".to_vec() });
                }
                settle(ptr, HttpCallResponse::failed());
                return;
            }
            let answer = call.answer.take();
            if answer.is_none() {
                log(call, NGX_LOG_ERR, &format!("timed out after {} ms", call.timeout));
                if let Some(g) = call.grpc.as_mut() {
                    let message = format!("timed out after {} ms", call.timeout).into_bytes();
                    g.events.push_back(GrpcEvent::Close { status: code::DEADLINE_EXCEEDED, message });
                }
                call.failed = Some(true);
                call.deliver_at = ngx_current_msec;
                (call.hooks.outcome)(call.main, call.owner, ptr, true);
                (call.hooks.due)(call.owner, ngx_current_msec);
            }
            (answer, (*call.main).connection, call.hooks.run_posted)
        };
        let timed_out = answer.is_none();
        if (*ptr).grpc.is_some() {
            drain(ptr, true);
        } else {
            complete_call(ptr, answer.unwrap_or_else(HttpCallResponse::failed));
        }
        if timed_out {
            // Last: ending the subrequest may end the request it hangs off (when that one
            // is not parked), and free the call.
            abort(&mut *ptr);
        }
        if run_posted {
            // The woken request, or calls dispatched from the callback, run now. `c` is
            // still connection memory; nginx marks it destroyed if the request ended.
            ngx_http_run_posted_requests(c);
        }
    })
}

pub(super) unsafe fn log(call: &Call, level: u32, msg: &str) {
    let kind = if call.grpc.is_some() { "grpc" } else { "http" };
    let text = format!("{kind} call to \"{}\" ({}): {msg}", call.upstream, String::from_utf8_lossy(&call.url));
    crate::util::log::write((*(*call.main).connection).log, level as ngx_uint_t, "proxy_wasm", text.as_bytes());
}

/// Delivers the response. Takes a pointer: delivering runs the owner's callback, which may
/// read the owner's list of calls (this one among them).
unsafe fn complete_call(ptr: *mut Call, resp: HttpCallResponse) {
    let (owner, token, main, hooks) = {
        let call = &mut *ptr;
        call.done = true;
        if call.ev.timer_set() != 0 {
            ngx_del_timer(&mut call.ev);
        }
        // The body's bytes are in `resp` now, gone when this returns.
        call.release_captured();
        (call.owner, call.token, call.main, call.hooks)
    };
    (hooks.deliver)(main, owner, token, Answer::Http(&resp));
}

/// Hands a gRPC call's queued events to its owner, in order; the close only when `last`
/// (from the call's timer, after any back-off). Stops if a delivery cancelled the call.
unsafe fn drain(ptr: *mut Call, last: bool) {
    loop {
        let (ev, owner, token, main, hooks) = {
            let call = &mut *ptr;
            let Some(g) = call.grpc.as_mut() else { return };
            if call.done || g.events.front().is_none_or(|e| !last && matches!(e, GrpcEvent::Close { .. })) {
                return;
            }
            let ev = g.events.pop_front().expect("checked above");
            if let GrpcEvent::Message(m) = &ev {
                let n = m.len().min(call.captured);
                call.captured -= n;
                CAPTURED.with(|c| c.set(c.get().saturating_sub(n)));
            }
            if matches!(ev, GrpcEvent::Close { .. }) {
                call.done = true;
                for e in [&mut call.ev, &mut call.post] {
                    if e.timer_set() != 0 {
                        ngx_del_timer(e);
                    }
                }
                call.release_captured();
            }
            (ev, call.owner, call.token, call.main, call.hooks)
        };
        let closing = matches!(ev, GrpcEvent::Close { .. });
        (hooks.deliver)(main, owner, token, Answer::Grpc(ev));
        if closing {
            return;
        }
    }
}

/// A gRPC call's events queued while it is in flight are handed over.
unsafe extern "C" fn post_handler(ev: *mut ngx_event_t) {
    crate::util::guard("grpc call events", (), || {
        // SAFETY: nginx hands back the `post` event of a live Call (Drop removes it from the
        // timer tree before the Box goes).
        let ptr = crate::util::event::owner::<Call>(ev, std::mem::offset_of!(Call, post));
        let (c, run_posted) = ((*(*ptr).main).connection, (*ptr).hooks.run_posted);
        drain(ptr, false);
        if run_posted {
            ngx_http_run_posted_requests(c);
        }
    })
}

/// Events were queued: they go out from the event loop.
pub(super) unsafe fn post_events(call: &mut Call) {
    if call.post.timer_set() == 0 && !call.done {
        ngx_add_timer(&mut call.post, 0);
    }
}

impl Call {
    pub(crate) fn owner(&self) -> Owner {
        self.owner
    }

    pub(crate) fn token(&self) -> u32 {
        self.token
    }

    /// Answered, cancelled or abandoned: nothing more happens to it.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Its maker is gone (the request ended): it is never answered. Its subrequest is gone
    /// already (nginx frees a request after its subrequests).
    pub(crate) fn abandon(&mut self) {
        self.done = true;
    }

    /// Cancels a pending call: stops its subrequest and timer; it is never answered.
    ///
    /// # Safety
    /// The request the call hangs off is alive.
    pub(crate) unsafe fn cancel(&mut self) {
        self.done = true;
        for e in [&mut self.ev, &mut self.post] {
            if e.timer_set() != 0 {
                ngx_del_timer(e);
            }
        }
        if let Some(g) = self.grpc.as_mut() {
            g.events.clear();
        }
        if !self.sr_done {
            abort(self);
        }
        self.answer = None;
        self.body = Vec::new();
        self.release_captured();
    }
}
