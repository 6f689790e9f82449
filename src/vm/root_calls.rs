//! HTTP calls from root contexts (on_tick, on_vm_start, on_configure, a root's own call
//! responses): there is no client request to hang a subrequest off, so each call gets a
//! fake one (no socket, never logged), freed once its subrequest is gone.

use std::cell::RefCell;
use std::ffi::c_void;
use std::ptr;

use ngx::ffi::*;
use proxy_wasm_host::HttpCallRequest;

use crate::calls::{self, Answer, Call, Hooks, Owner, Prior};
use super::worker::{flush_root_calls, with_worker};

/// A fake request and the one call it carries. Boxed: its events are in nginx's timer tree.
struct Fake {
    pool: *mut ngx_pool_t,
    r: *mut ngx_http_request_t,
    call: Option<Box<Call>>,
    /// Runs the subrequest from the event loop (never from inside a plugin callback).
    kick: ngx_event_t,
    /// Frees the fake request once the subrequest has let go of it.
    reap: ngx_event_t,
}

impl Drop for Fake {
    fn drop(&mut self) {
        // SAFETY: our events leave nginx's timer tree before their memory goes; the call
        // (whose timer lives in it) is dropped before the pool it points into.
        unsafe {
            for ev in [&mut self.kick, &mut self.reap] {
                if ev.timer_set() != 0 {
                    ngx_del_timer(ev);
                }
            }
            self.call = None;
            ngx_destroy_pool(self.pool);
        }
    }
}

thread_local! {
    static FAKES: RefCell<Vec<Box<Fake>>> = const { RefCell::new(Vec::new()) };
    /// Indexed like MainConf::filters: the root context's calls that failed in a row, and
    /// when the latest failure was due (the back-off of calls/call.rs).
    static FAILURES: RefCell<Vec<(u32, Option<ngx_msec_t>)>> = const { RefCell::new(Vec::new()) };
}

fn with_failures<R>(fi: usize, f: impl FnOnce(&mut (u32, Option<ngx_msec_t>)) -> R) -> R {
    FAILURES.with(|v| {
        let mut v = v.borrow_mut();
        if v.len() <= fi {
            v.resize(fi + 1, (0, None));
        }
        f(&mut v[fi])
    })
}

/// How calls made by root contexts complete.
static HOOKS: Hooks = Hooks { outcome, due, deliver, run_posted: false };

/// Records how a call of the root context ended; returns its failures in a row so far and
/// when the previous failure was due (a response resets both). Kept per filter definition:
/// a root context's fake requests (and their calls) do not outlive their call.
unsafe fn outcome(_: *mut ngx_http_request_t, owner: Owner, _: *const Call, failed: bool) -> Prior {
    let Owner::Root { fi, .. } = owner else { return Prior::default() };
    with_failures(fi, |e| {
        *e = if failed { (e.0.saturating_add(1), e.1) } else { (0, None) };
        Prior { failures: e.0, last_at: e.1 }
    })
}

/// A failure of the root context is due at `at`.
fn due(owner: Owner, at: ngx_msec_t) {
    if let Owner::Root { fi, .. } = owner {
        with_failures(fi, |e| e.1 = Some(e.1.map_or(at, |l| l.max(at))));
    }
}

/// Sends calls made by root contexts: (filter definition, instance generation, call).
pub(crate) fn send(calls: Vec<(usize, u64, HttpCallRequest)>) {
    for (fi, generation, req) in calls {
        // SAFETY: runs in a worker, on its only thread, outside any plugin callback.
        let fake = unsafe { create() };
        let Some(mut fake) = fake else {
            crate::util::log::cycle_error("[proxy_wasm] http call from a root context: no http server to run it in, or out of memory");
            with_worker(|w| {
                let mi = w.filter_module[fi];
                if let Some(inst) = w.slots[mi].get(generation) {
                    inst.forget_http_calls(&[req.token]);
                }
            });
            continue;
        };
        // SAFETY: the fake request is alive until its reap event frees it.
        unsafe {
            fake.call = Some(calls::dispatch(fake.r, Owner::Root { fi, generation }, &HOOKS, req));
            ngx_add_timer(&mut fake.kick, 0);
        }
        FAKES.with(|f| f.borrow_mut().push(fake));
    }
}

/// proxy_on_http_call_response for the root context that made the call.
unsafe fn deliver(main: *mut ngx_http_request_t, owner: Owner, token: u32, answer: Answer<'_>) {
    let Owner::Root { fi, generation } = owner else { return };
    // The call's last word: its fake request may go once the subrequest is over.
    let last = !matches!(answer, Answer::Grpc(ref ev) if !matches!(ev, proxy_wasm_host::GrpcEvent::Close { .. }));
    let mut answer = Some(answer);
    with_worker(|w| {
        let mi = w.filter_module[fi];
        let Some(root) = w.roots[fi] else { return };
        if w.slots[mi].generation() != generation {
            return;
        }
        w.run_root(mi, |inst| match answer.take() {
            Some(Answer::Http(resp)) => inst.on_http_call_response(root, token, resp, None).map(drop),
            Some(Answer::Grpc(ev)) => inst.on_grpc_event(root, token, ev, None).map(drop),
            None => Ok(()),
        });
    });
    flush_root_calls();
    if !last {
        return;
    }
    // Free the fake request once the subrequest has finished with it.
    FAKES.with(|f| {
        if let Some(fake) = f.borrow_mut().iter_mut().find(|x| x.r == main) {
            if fake.reap.timer_set() == 0 {
                ngx_add_timer(&mut fake.reap, 0);
            }
        }
    });
}

unsafe extern "C" fn kick_handler(ev: *mut ngx_event_t) {
    crate::util::guard("root http call", (), || {
        let r = request_of(ev);
        ngx_http_run_posted_requests((*r).connection);
    })
}

unsafe extern "C" fn reap_handler(ev: *mut ngx_event_t) {
    crate::util::guard("root http call reap", (), || {
        let r = request_of(ev);
        // Our own reference is the last one: the subrequest has been finalized.
        if (*r).count() > 1 {
            ngx_add_timer(ev, 10);
            return;
        }
        let fake = FAKES.with(|f| {
            let mut f = f.borrow_mut();
            let at = f.iter().position(|x| x.r == r)?;
            Some(f.swap_remove(at))
        });
        drop(fake);
    })
}

/// Stops the gRPC calls root contexts cancelled: those of filter definitions `fis` (one
/// module) in instance `generation`, by token. Their fake requests go once the subrequest
/// has let go of them.
pub(crate) fn cancel(fis: &[usize], generation: u64, tokens: &[u32]) {
    FAKES.with(|f| {
        for fake in f.borrow_mut().iter_mut() {
            let Some(call) = fake.call.as_mut() else { continue };
            let Owner::Root { fi, generation: g } = call.owner() else { continue };
            if g != generation || !fis.contains(&fi) || !tokens.contains(&call.token()) || call.is_done() {
                continue;
            }
            // SAFETY: the fake request the call hangs off is alive (freed only by its reap).
            unsafe {
                call.cancel();
                if fake.reap.timer_set() == 0 {
                    ngx_add_timer(&mut fake.reap, 0);
                }
            }
        }
    });
}

/// Frees every fake request (worker exit).
pub(crate) fn drop_all() {
    let all = FAKES.with(|f| std::mem::take(&mut *f.borrow_mut()));
    drop(all);
}

/// The fake connection's read and write handlers: it has no socket, nothing to do.
unsafe extern "C" fn no_event(_ev: *mut ngx_event_t) {}

/// An event of the fake request: its `data` is the fake connection (nginx's debug lines read
/// `ev->data` as a connection), whose `data` is the request. Cancelable: a worker shutting
/// down does not wait for root calls.
fn event(handler: unsafe extern "C" fn(*mut ngx_event_t), c: *mut ngx_connection_t, log: *mut ngx_log_t) -> ngx_event_t {
    let mut ev = crate::util::event::new(handler, log);
    ev.data = c as *mut c_void;
    ev
}

/// The fake request of one of our events.
///
/// # Safety
/// `ev` is a kick or reap event made by `create`.
unsafe fn request_of(ev: *mut ngx_event_t) -> *mut ngx_http_request_t {
    (*((*ev).data as *mut ngx_connection_t)).data as *mut ngx_http_request_t
}

/// A request with no client: a connection with no socket (its write side marked active so
/// the upstream module never registers it with epoll), the first server's configuration,
/// and one reference (ours) that keeps nginx from closing it.
unsafe fn create() -> Option<Box<Fake>> {
    let cycle = ngx_cycle as *mut ngx_cycle_t;
    let conf_ctx = *(*cycle).conf_ctx.add(ngx_http_module.index) as *mut ngx_http_conf_ctx_t;
    if conf_ctx.is_null() {
        return None;
    }
    let cmcf = *(*conf_ctx).main_conf.add(ngx_http_core_module.ctx_index) as *mut ngx_http_core_main_conf_t;
    if cmcf.is_null() || (*cmcf).servers.nelts == 0 {
        return None;
    }
    let cscf = *((*cmcf).servers.elts as *mut *mut ngx_http_core_srv_conf_t);
    let sctx = (*cscf).ctx;
    let pool = ngx_create_pool(4096, (*cycle).log);
    if pool.is_null() {
        return None;
    }
    let mut fake = Box::new(Fake {
        pool,
        r: ptr::null_mut(),
        call: None,
        kick: std::mem::zeroed(),
        reap: std::mem::zeroed(),
    });
    let zalloc = |size: usize| ngx_pcalloc(pool, size);
    let c = zalloc(std::mem::size_of::<ngx_connection_t>()) as *mut ngx_connection_t;
    let rev = zalloc(std::mem::size_of::<ngx_event_t>()) as *mut ngx_event_t;
    let wev = zalloc(std::mem::size_of::<ngx_event_t>()) as *mut ngx_event_t;
    let log = zalloc(std::mem::size_of::<ngx_log_t>()) as *mut ngx_log_t;
    let lctx = zalloc(std::mem::size_of::<ngx_http_log_ctx_t>()) as *mut ngx_http_log_ctx_t;
    let sin = zalloc(std::mem::size_of::<sockaddr_in>()) as *mut sockaddr_in;
    let r = zalloc(std::mem::size_of::<ngx_http_request_t>()) as *mut ngx_http_request_t;
    if [c as *mut c_void, rev as _, wev as _, log as _, lctx as _, sin as _, r as _].iter().any(|p| p.is_null()) {
        return None; // the pool goes with `fake`
    }
    *log = *(*cycle).log;
    (*log).data = lctx as *mut c_void;
    (*log).handler = None;
    (*log).action = ptr::null_mut();
    (*lctx).connection = c;
    (*lctx).request = r;
    (*lctx).current_request = r;
    (*sin).sin_family = AF_INET as _;
    (*sin).sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
    (*c).fd = -1;
    (*c).read = rev;
    (*c).write = wev;
    (*c).log = log;
    (*c).pool = pool;
    (*c).sockaddr = sin as *mut sockaddr;
    (*c).socklen = std::mem::size_of::<sockaddr_in>() as socklen_t;
    let text = b"127.0.0.1";
    (*c).addr_text = ngx_str_t { len: text.len(), data: text.as_ptr() as *mut u8 };
    (*c).data = r as *mut c_void;
    // No socket to tune (unbuffered proxying sets TCP_NODELAY on the client connection).
    (*c).set_tcp_nodelay(ngx_connection_tcp_nodelay_e_NGX_TCP_NODELAY_DISABLED);
    (*c).set_tcp_nopush(ngx_connection_tcp_nopush_e_NGX_TCP_NOPUSH_DISABLED);
    (*rev).log = log;
    (*rev).data = c as *mut c_void;
    (*rev).handler = Some(no_event);
    (*wev).handler = Some(no_event);
    // Never registered with the event method: there is no socket.
    (*rev).set_active(1);
    (*wev).log = log;
    (*wev).data = c as *mut c_void;
    (*wev).set_write(1);
    (*wev).set_active(1);
    (*wev).set_ready(1);

    (*r).signature = 0x5054_5448; // NGX_HTTP_MODULE: "HTTP"
    (*r).connection = c;
    (*r).pool = pool;
    (*r).main_conf = (*sctx).main_conf;
    (*r).srv_conf = (*sctx).srv_conf;
    (*r).loc_conf = (*sctx).loc_conf;
    (*r).main = r;
    (*r).ctx = zalloc(std::mem::size_of::<*mut c_void>() * ngx_http_max_module) as *mut *mut c_void;
    let nvars = (*cmcf).variables.nelts.max(1);
    (*r).variables = zalloc(std::mem::size_of::<ngx_http_variable_value_t>() * nvars) as *mut ngx_http_variable_value_t;
    if (*r).ctx.is_null() || (*r).variables.is_null() {
        return None;
    }
    let elt = std::mem::size_of::<ngx_table_elt_t>();
    crate::util::list::init(&mut (*r).headers_in.headers, pool, 2, elt)?;
    crate::util::list::init(&mut (*r).headers_out.headers, pool, 2, elt)?;
    crate::util::list::init(&mut (*r).headers_out.trailers, pool, 2, elt)?;
    (*r).headers_in.content_length_n = -1;
    (*r).headers_in.keep_alive_n = -1;
    (*r).headers_out.content_length_n = -1;
    (*r).headers_out.last_modified_time = -1;
    (*r).method = NGX_HTTP_UNKNOWN as ngx_uint_t;
    (*r).http_version = NGX_HTTP_VERSION_11 as ngx_uint_t;
    (*r).set_count(1);
    (*r).set_subrequests(NGX_HTTP_MAX_SUBREQUESTS + 1);
    (*r).set_uri_changes(NGX_HTTP_MAX_URI_CHANGES + 1);
    (*r).set_http_state(ngx_http_state_e_NGX_HTTP_PROCESS_REQUEST_STATE);
    (*r).set_logged(1);
    // limit_req / limit_conn at http{} level apply to requests, not to a plugin's calls
    // (and would delay them on this connection's events).
    (*r).set_limit_req_status(1);
    (*r).set_limit_conn_status(1);
    let uri = b"/proxy_wasm_root_call";
    (*r).uri = ngx_str_t { len: uri.len(), data: uri.as_ptr() as *mut u8 };
    (*r).read_event_handler = Some(ngx_http_block_reading);
    (*r).write_event_handler = Some(ngx_http_request_empty_handler);
    fake.r = r;
    fake.kick = event(kick_handler, c, log);
    fake.reap = event(reap_handler, c, log);
    Some(fake)
}
