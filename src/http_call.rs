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
use ngx::http::{HttpModuleMainConf, NgxHttpCoreModule};
use proxy_wasm_host::{maps, HttpCallRequest, HttpCallResponse, MapType, Outcome};

use crate::chain::{self, ChainResult, RequestCtx};
use crate::conf::MainConf;
use crate::request::{NgxStream, Phase};
use crate::worker::WORKER;
use crate::Module;

/// The generated location's name.
const LOCATION: &str = "@proxy_wasm_call";
/// Largest call response body we capture; a larger one fails the call.
pub(crate) const MAX_RESPONSE_BODY: usize = 16 << 20;
/// Call response bodies one worker holds at any time (captured, not yet delivered and
/// dropped): a response that would pass it fails its call, as one past MAX_RESPONSE_BODY.
pub(crate) const MAX_RESPONSE_BYTES_PER_WORKER: usize = 256 << 20;

thread_local! {
    /// Bytes of call response bodies this worker holds (see MAX_RESPONSE_BYTES_PER_WORKER).
    static CAPTURED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
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
#[derive(Clone, Copy)]
pub(crate) enum Owner {
    /// Filter `i` of the request's chain.
    Filter(usize),
    /// The root context of filter definition `fi` (MainConf::filters), in the instance of
    /// that generation.
    Root { fi: usize, generation: u64 },
}

/// One call in flight (or answered). Boxed: nginx holds its address (timer event,
/// post_subrequest data) until the request that owns it is freed.
pub(crate) struct Call {
    owner: Owner,
    token: u32,
    upstream: String,
    url: Vec<u8>,
    host: Vec<u8>,
    method: Vec<u8>,
    /// The request the subrequest hangs off (the client's, or a fake one).
    main: *mut ngx_http_request_t,
    sr: *mut ngx_http_request_t,
    headers: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    body: Vec<u8>,
    /// Bytes of this call's response counted in CAPTURED.
    captured: usize,
    body_done: bool,
    too_big: bool,
    /// Answered (response, failure, timeout) or cancelled: nothing more happens to it.
    pub done: bool,
    /// The answer (a failed one has no headers), delivered when the timer fires.
    answer: Option<HttpCallResponse>,
    /// Settled: Some(true) failed, Some(false) got a response (for the back-off).
    failed: Option<bool>,
    /// When a failed call's answer is (or was) due: ngx_current_msec + its delay.
    deliver_at: ngx_msec_t,
    /// The subrequest is over (or never ran): nothing to abort.
    sr_done: bool,
    /// ngx_current_msec at dispatch.
    started: ngx_msec_t,
    timeout: ngx_msec_t,
    /// The call's timer: its timeout while in flight, then its delivery.
    ev: ngx_event_t,
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
        // SAFETY: the event is ours; if armed it is in nginx's timer tree, so it must leave
        // the tree before its memory goes.
        unsafe {
            if self.ev.timer_set() != 0 {
                ngx_del_timer(&mut self.ev);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// configuration: the generated location and its variables
// ---------------------------------------------------------------------------------------------

unsafe extern "C" fn var_url(r: *mut ngx_http_request_t, v: *mut ngx_http_variable_value_t, _: usize) -> ngx_int_t {
    set_var(r, v, |c| &c.url)
}

unsafe extern "C" fn var_host(r: *mut ngx_http_request_t, v: *mut ngx_http_variable_value_t, _: usize) -> ngx_int_t {
    set_var(r, v, |c| &c.host)
}

unsafe extern "C" fn var_method(r: *mut ngx_http_request_t, v: *mut ngx_http_variable_value_t, _: usize) -> ngx_int_t {
    set_var(r, v, |c| &c.method)
}

unsafe fn set_var(r: *mut ngx_http_request_t, v: *mut ngx_http_variable_value_t, f: fn(&Call) -> &Vec<u8>) -> ngx_int_t {
    crate::guard("call variable", NGX_ERROR as ngx_int_t, || {
        match call_of(r) {
            Some(call) => {
                let s = f(call);
                // The bytes live in the Call, which outlives its subrequest.
                (*v).data = s.as_ptr() as *mut u8;
                (*v).set_len(s.len() as u32);
                (*v).set_valid(1);
                (*v).set_no_cacheable(1);
                (*v).set_not_found(0);
            }
            None => (*v).set_not_found(1),
        }
        NGX_OK as ngx_int_t
    })
}

/// Registers $proxy_wasm_call_url, _host and _method (preconfiguration).
pub(crate) unsafe fn add_variables(cf: *mut ngx_conf_t) -> bool {
    type Get = unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_http_variable_value_t, usize) -> ngx_int_t;
    let vars: [(&'static [u8], Get); 3] = [
        (b"proxy_wasm_call_url", var_url),
        (b"proxy_wasm_call_host", var_host),
        (b"proxy_wasm_call_method", var_method),
    ];
    for (name, get) in vars {
        let mut n = ngx_str_t { len: name.len(), data: name.as_ptr() as *mut u8 };
        let v = ngx_http_add_variable(cf, &mut n, NGX_HTTP_VAR_NOCACHEABLE as ngx_uint_t);
        if v.is_null() {
            return false;
        }
        (*v).get_handler = Some(get);
    }
    true
}

/// The text of the generated location, from the wasm_call_* directives.
fn location_text(mcf: &MainConf) -> String {
    let t = mcf.call_timeout.unwrap_or(DEFAULT_TIMEOUT_MS);
    let mut s = format!(
        "location {LOCATION} {{\n\
         proxy_pass $proxy_wasm_call_url;\n\
         proxy_http_version 1.1;\n\
         proxy_set_header Host $proxy_wasm_call_host;\n\
         proxy_set_header Connection \"\";\n\
         proxy_pass_request_headers on;\n\
         proxy_pass_request_body on;\n\
         proxy_method $proxy_wasm_call_method;\n\
         proxy_buffering off;\n\
         proxy_cache off;\n\
         proxy_store off;\n\
         proxy_ignore_headers X-Accel-Redirect X-Accel-Buffering X-Accel-Limit-Rate X-Accel-Expires X-Accel-Charset;\n\
         proxy_intercept_errors off;\n\
         proxy_ignore_client_abort on;\n\
         proxy_connect_timeout {t}ms;\n\
         proxy_send_timeout {t}ms;\n\
         proxy_read_timeout {t}ms;\n\
         proxy_ssl_server_name on;\n\
         proxy_ssl_name $proxy_wasm_call_host;\n\
         proxy_ssl_verify_depth 8;\n"
    );
    if mcf.call_ssl_verify.unwrap_or(true) {
        s.push_str("proxy_ssl_verify on;\n");
        if let Some(ca) = mcf.call_trusted_certificate() {
            s.push_str(&format!("proxy_ssl_trusted_certificate \"{}\";\n", ca.replace('"', "\\\"")));
        }
    } else {
        s.push_str("proxy_ssl_verify off;\n");
    }
    // The closing brace of the pseudo-block ngx_conf_parse reads this text as.
    s.push_str("}\n}\n");
    s
}

/// Builds the generated location (postconfiguration): parses its text as if it were
/// written at http{} level, then merges it with the http{}-level settings, as nginx merges
/// a server's locations, so `resolver`, `proxy_ssl_certificate` and other proxy settings
/// at http{} level apply to calls too.
pub(crate) unsafe fn create_location(cf: *mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), String> {
    let text = location_text(mcf);
    let mut buf: ngx_buf_t = std::mem::zeroed();
    buf.start = text.as_ptr() as *mut u8;
    buf.pos = buf.start;
    buf.last = buf.start.add(text.len());
    buf.end = buf.last;
    buf.set_temporary(1);
    let mut file: ngx_conf_file_t = std::mem::zeroed();
    // Not NGX_INVALID_FILE: nginx then parses the text as a block ("{ ... }") and, at the
    // end of the buffer, finds a zero-sized file, so it never reads fd 0.
    file.file.fd = 0;
    let name = b"(proxy_wasm generated call location)\0";
    file.file.name = ngx_str_t { len: name.len() - 1, data: name.as_ptr() as *mut u8 };
    file.buffer = &mut buf;
    file.line = 1;

    let http_ctx = (*cf).ctx as *mut ngx_http_conf_ctx_t;
    let core_idx = ngx_http_core_module.ctx_index;
    let pclcf = *(*http_ctx).loc_conf.add(core_idx) as *mut ngx_http_core_loc_conf_t;
    let saved_locations = (*pclcf).locations;
    (*pclcf).locations = ptr::null_mut();

    let saved = ptr::read(cf);
    (*cf).conf_file = &mut file;
    (*cf).module_type = NGX_HTTP_MODULE as ngx_uint_t;
    (*cf).cmd_type = NGX_HTTP_SRV_CONF as ngx_uint_t;
    let rv = ngx_conf_parse(cf, ptr::null_mut());
    ptr::write(cf, saved);

    let queue = (*pclcf).locations;
    (*pclcf).locations = saved_locations;
    if !rv.is_null() || queue.is_null() {
        return Err("the location for HTTP calls could not be parsed (see the message above)".into());
    }
    // The location queue's last element is ours; a named location is stored as `exact`.
    let lq = (*(queue as *mut ngx_queue_t)).prev as *mut ngx_http_location_queue_t;
    let clcf = (*lq).exact;
    if clcf.is_null() {
        return Err("the location for HTTP calls was not created".into());
    }
    let loc_conf = (*clcf).loc_conf;

    // Merge every HTTP module's location configuration with the http{} level's.
    let mut merge_ctx = ngx_http_conf_ctx_t {
        main_conf: (*http_ctx).main_conf,
        srv_conf: (*http_ctx).srv_conf,
        loc_conf,
    };
    let saved_ctx = (*cf).ctx;
    (*cf).ctx = &mut merge_ctx as *mut _ as *mut c_void;
    let cycle = (*cf).cycle;
    let mut result: Result<(), String> = Ok(());
    for m in 0..(*cycle).modules_n {
        let module = *(*cycle).modules.add(m);
        if (*module).type_ != NGX_HTTP_MODULE as ngx_uint_t {
            continue;
        }
        let mctx = (*module).ctx as *const ngx_http_module_t;
        if let Some(merge) = (*mctx).merge_loc_conf {
            let idx = (*module).ctx_index;
            let rv = merge(cf, *(*http_ctx).loc_conf.add(idx), *loc_conf.add(idx));
            if !rv.is_null() {
                result = Err("the location for HTTP calls could not be set up (see the message above); \
                              HTTPS calls verify certificates against wasm_call_ssl_trusted_certificate \
                              (or set wasm_call_ssl_verify off)"
                    .into());
                break;
            }
        }
    }
    (*cf).ctx = saved_ctx;
    result?;
    mcf.call_loc_conf = loc_conf as usize;
    crate::call_policy::collect(cf, mcf);
    Ok(())
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

fn method_code(m: &[u8]) -> u32 {
    match m {
        b"GET" => NGX_HTTP_GET,
        b"HEAD" => NGX_HTTP_HEAD,
        b"POST" => NGX_HTTP_POST,
        b"PUT" => NGX_HTTP_PUT,
        b"DELETE" => NGX_HTTP_DELETE,
        b"OPTIONS" => NGX_HTTP_OPTIONS,
        b"PATCH" => NGX_HTTP_PATCH,
        _ => NGX_HTTP_UNKNOWN,
    }
}

/// Starts `req` as a subrequest of `main`. Never fails: a call that cannot start is
/// answered as failed from its timer (never from inside the plugin's callback). `earlier`:
/// the request's calls so far (for the back-off; empty for a root context's).
pub(crate) unsafe fn dispatch(main: *mut ngx_http_request_t, owner: Owner, req: HttpCallRequest, earlier: &[Box<Call>]) -> Box<Call> {
    let mcf = Module::main_conf(&*main);
    let default_timeout = mcf.and_then(|m| m.call_timeout).unwrap_or(DEFAULT_TIMEOUT_MS);
    let https = req.header(b":scheme").is_some_and(|s| s.eq_ignore_ascii_case(b"https"));
    let path = req.header(b":path").unwrap_or(b"/");
    let mut url = Vec::with_capacity(req.upstream.len() + path.len() + 8);
    url.extend_from_slice(if https { b"https://" } else { b"http://" });
    url.extend_from_slice(&req.upstream);
    if !path.starts_with(b"/") {
        url.push(b'/');
    }
    url.extend_from_slice(path);
    let host = req.header(b":authority").filter(|a| !a.is_empty()).unwrap_or(&req.upstream).to_vec();
    let mut call = Box::new(Call {
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
        answer: None,
        failed: None,
        deliver_at: 0,
        sr_done: false,
        started: ngx_current_msec,
        timeout: if req.timeout_ms > 0 { req.timeout_ms as ngx_msec_t } else { default_timeout },
        // SAFETY: an all-zero ngx_event_t is nginx's own starting state (ngx_pcalloc).
        ev: std::mem::zeroed(),
    });
    let data = &mut *call as *mut Call;
    call.ev.handler = Some(timer_handler);
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
            let prior = match owner {
                Owner::Filter(i) => failures_in_a_row_in(earlier, i, data),
                Owner::Root { .. } => Prior::default(),
            };
            settle(data, HttpCallResponse::failed(), prior);
        }
    }
    call
}

unsafe fn start_subrequest(
    main: *mut ngx_http_request_t,
    call: &mut Call,
    req: &HttpCallRequest,
    mcf: Option<&MainConf>,
) -> Result<(), String> {
    let loc_conf = mcf.map(|m| m.call_loc_conf).unwrap_or(0) as *mut *mut c_void;
    if loc_conf.is_null() {
        return Err("HTTP calls are not set up in this configuration".into());
    }
    let pool = (*main).pool;
    let ps = ngx_palloc(pool, std::mem::size_of::<ngx_http_post_subrequest_t>()) as *mut ngx_http_post_subrequest_t;
    if ps.is_null() {
        return Err("out of memory".into());
    }
    (*ps).handler = Some(subrequest_done);
    (*ps).data = call as *mut Call as *mut c_void;
    let uri = b"/proxy_wasm_call";
    let mut uri = ngx_str_t { len: uri.len(), data: uri.as_ptr() as *mut u8 };
    let mut sr: *mut ngx_http_request_t = ptr::null_mut();
    if ngx_http_subrequest(main, &mut uri, ptr::null_mut(), &mut sr, ps, NGX_HTTP_SUBREQUEST_BACKGROUND as ngx_uint_t)
        != NGX_OK as ngx_int_t
    {
        return Err("nginx refused the subrequest (see the message above)".into());
    }
    call.sr = sr;

    // Method, headers and body are the call's, not the client's.
    let method = req.header(b":method").unwrap_or(b"GET");
    (*sr).method = method_code(method) as ngx_uint_t;
    (*sr).method_name = crate::request::pool_str(sr, method).ok_or("out of memory")?;
    ptr::write_bytes(ptr::addr_of_mut!((*sr).headers_in), 0, 1);
    if ngx_list_init_raw(&mut (*sr).headers_in.headers, pool, 8 + req.headers.len(), std::mem::size_of::<ngx_table_elt_t>())
        .is_none()
    {
        return Err("out of memory".into());
    }
    (*sr).headers_in.content_length_n = if req.body.is_empty() { -1 } else { req.body.len() as off_t };
    (*sr).headers_in.keep_alive_n = -1;
    for (k, v) in req.headers.iter().filter(|(k, _)| !k.starts_with(b":")) {
        crate::request::push_header(sr, &mut (*sr).headers_in.headers, k, v).ok_or("out of memory")?;
    }
    let rb = ngx_pcalloc(pool, std::mem::size_of::<ngx_http_request_body_t>()) as *mut ngx_http_request_body_t;
    if rb.is_null() {
        return Err("out of memory".into());
    }
    if !req.body.is_empty() {
        let b = ngx_create_temp_buf(pool, req.body.len());
        let cl = ngx_alloc_chain_link(pool);
        if b.is_null() || cl.is_null() {
            return Err("out of memory".into());
        }
        ptr::copy_nonoverlapping(req.body.as_ptr(), (*b).last, req.body.len());
        (*b).last = (*b).last.add(req.body.len());
        (*b).set_last_buf(1);
        (*cl).buf = b;
        (*cl).next = ptr::null_mut();
        (*rb).bufs = cl;
    }
    (*sr).request_body = rb;
    // The capture filters want memory buffers (the copy filter reads files for us).
    (*sr).set_filter_need_in_memory(1);

    // Straight into the generated location, as ngx_http_named_location does.
    (*sr).loc_conf = loc_conf;
    ngx_http_update_location_config(sr);
    let cmcf = NgxHttpCoreModule::main_conf(&*main).ok_or("no http core configuration")?;
    (*sr).phase_handler = cmcf.phase_engine.location_rewrite_index as ngx_int_t;
    (*sr).set_valid_location(1);
    (*sr).write_event_handler = Some(ngx_http_core_run_phases);
    Ok(())
}

/// ngx_list_init (a static inline function in C, so not in the bindings).
pub(crate) unsafe fn ngx_list_init_raw(list: *mut ngx_list_t, pool: *mut ngx_pool_t, n: usize, size: usize) -> Option<()> {
    let elts = ngx_palloc(pool, n * size);
    if elts.is_null() {
        return None;
    }
    (*list).part.elts = elts;
    (*list).part.nelts = 0;
    (*list).part.next = ptr::null_mut();
    (*list).last = &mut (*list).part;
    (*list).size = size;
    (*list).nalloc = n;
    (*list).pool = pool;
    Some(())
}

/// Stops a call's subrequest (timeout, cancel): closes its upstream connection if it has
/// one, or, if it has not run yet, makes it end as soon as it does.
unsafe fn abort(call: &mut Call) {
    let sr = call.sr;
    if sr.is_null() {
        return;
    }
    let u = (*sr).upstream;
    if u.is_null() {
        (*sr).write_event_handler = Some(end_cancelled);
        return;
    }
    if !(*u).cleanup.is_null() {
        if let Some(cleanup) = *(*u).cleanup {
            // nginx's own client-abort path: closes the upstream connection and finalizes
            // the subrequest with NGX_DONE (which skips post_subrequest).
            cleanup(sr as *mut c_void);
        }
    }
}

/// A cancelled call's subrequest that had not started: it ends without running.
unsafe extern "C" fn end_cancelled(sr: *mut ngx_http_request_t) {
    ngx_http_finalize_request(sr, NGX_DONE as ngx_int_t);
}

// ---------------------------------------------------------------------------------------------
// capturing the response (called first thing by our header and body filters)
// ---------------------------------------------------------------------------------------------

pub(crate) unsafe fn capture_headers(r: *mut ngx_http_request_t, call: &mut Call) -> ngx_int_t {
    (*r).set_header_sent(1);
    if call.done || call.headers.is_some() {
        return NGX_OK as ngx_int_t;
    }
    let mut b = maps::MapBuilder::new();
    let mut s = NgxStream::new(r, "", Phase::Response);
    use proxy_wasm_host::HttpStream;
    s.map_pairs(MapType::ResponseHeaders, &mut b);
    let bytes = b.finish();
    let pairs = maps::deserialize(&bytes)
        .map(|p| p.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect())
        .unwrap_or_default();
    call.headers = Some(pairs);
    NGX_OK as ngx_int_t
}

pub(crate) unsafe fn capture_body(call: &mut Call, mut cl: *mut ngx_chain_t) -> ngx_int_t {
    while !cl.is_null() {
        let b = (*cl).buf;
        if !b.is_null() {
            let in_memory = (*b).temporary() != 0 || (*b).memory() != 0 || (*b).mmap() != 0;
            if in_memory && (*b).last > (*b).pos {
                let n = (*b).last.offset_from((*b).pos) as usize;
                let worker_full = CAPTURED.with(|c| c.get() + n > MAX_RESPONSE_BYTES_PER_WORKER);
                if call.body.len() + n > MAX_RESPONSE_BODY || worker_full {
                    call.too_big = true;
                } else if !call.done && !call.too_big {
                    call.body.extend_from_slice(std::slice::from_raw_parts((*b).pos, n));
                    call.captured += n;
                    CAPTURED.with(|c| c.set(c.get() + n));
                }
                (*b).pos = (*b).last;
            } else if (*b).in_file() != 0 {
                (*b).file_pos = (*b).file_last;
            }
            if (*b).last_buf() != 0 || (*b).last_in_chain() != 0 {
                call.body_done = true;
            }
        }
        cl = (*cl).next;
    }
    NGX_OK as ngx_int_t
}

/// post_subrequest: the call's subrequest finished (or failed before any response).
/// Always returns NGX_OK: what happened is the plugin's business, not the client's, so an
/// upstream error must not become an error page or terminate the client's request.
unsafe extern "C" fn subrequest_done(sr: *mut ngx_http_request_t, data: *mut c_void, rc: ngx_int_t) -> ngx_int_t {
    crate::guard("http call done", NGX_OK as ngx_int_t, || {
        let call = &mut *(data as *mut Call);
        // Settled already (nginx may finalize a subrequest more than once): the first word
        // stands, and its answer waits for the call's timer.
        if call.done || call.sr_done {
            return NGX_OK as ngx_int_t;
        }
        let complete = rc == NGX_OK as ngx_int_t && (call.body_done || (*sr).header_only() != 0);
        let resp = match call.headers.take() {
            Some(headers) if complete && !call.too_big => {
                HttpCallResponse { headers, body: std::mem::take(&mut call.body), trailers: Vec::new() }
            }
            got => {
                // A failed call's partial body is not kept (nor counted) until the request ends.
                call.body = Vec::new();
                let why = if call.too_big {
                    format!(
                        "its response body exceeds {MAX_RESPONSE_BODY} bytes, or this worker holds {MAX_RESPONSE_BYTES_PER_WORKER} bytes of call responses already"
                    )
                } else if got.is_some() {
                    "the response was cut short".to_string()
                } else {
                    format!("no response (status {rc}, see the upstream error above)")
                };
                log(call, NGX_LOG_ERR, &format!("failed: {why}"));
                HttpCallResponse::failed()
            }
        };
        let prior = match call.owner {
            Owner::Filter(i) => failures_in_a_row(call.main, i, data as *const Call),
            Owner::Root { .. } => Prior::default(),
        };
        settle(data as *mut Call, resp, prior);
        NGX_OK as ngx_int_t
    })
}

/// A request filter's failed calls before this one: how many in a row, and when the last
/// failure was due.
#[derive(Default, Clone, Copy)]
pub(crate) struct Prior {
    failures: u32,
    last_at: Option<ngx_msec_t>,
}

/// The call is over: its answer goes out from its timer, after the back-off if it failed.
/// `prior`: for a request's call, its filter's failures before this one.
unsafe fn settle(ptr: *mut Call, resp: HttpCallResponse, prior: Prior) {
    let failed = resp.headers.is_empty();
    let (owner, started) = {
        let call = &*ptr;
        (call.owner, call.started)
    };
    let (in_a_row, last_at) = match owner {
        Owner::Filter(_) => (prior.failures + u32::from(failed), prior.last_at),
        Owner::Root { fi, .. } => crate::root_calls::note_outcome(fi, failed),
    };
    let now = ngx_current_msec;
    let delay = if failed {
        let spacing = backoff_ms(in_a_row);
        let due = (started + spacing).max(last_at.map_or(0, |l| l + spacing));
        due.saturating_sub(now)
    } else {
        0
    };
    if failed {
        if let Owner::Root { fi, .. } = owner {
            crate::root_calls::note_due(fi, now + delay);
        }
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

/// Calls of filter `i` of the request that failed in a row, most recent first (not counting
/// `this`; the count stops growing at BACKOFF_STEPS), and when the latest of them was due.
unsafe fn failures_in_a_row(r: *mut ngx_http_request_t, i: usize, this: *const Call) -> Prior {
    chain::get(r).map(|ctx| failures_in_a_row_in(&ctx.calls, i, this)).unwrap_or_default()
}

fn failures_in_a_row_in(calls: &[Box<Call>], i: usize, this: *const Call) -> Prior {
    let mut p = Prior::default();
    for c in calls.iter().rev() {
        if ptr::eq(&**c, this) || !matches!(c.owner, Owner::Filter(f) if f == i) {
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
    crate::guard("http call timer", (), || {
        // SAFETY: nginx hands back the event of a live Call (Drop removes it from the timer
        // tree before the Box goes).
        let ptr = crate::timer_event::owner::<Call>(ev, std::mem::offset_of!(Call, ev));
        let (answer, c, is_request) = {
            let call = &mut *ptr;
            if call.done {
                return;
            }
            let answer = call.answer.take();
            if answer.is_none() {
                log(call, NGX_LOG_ERR, &format!("timed out after {} ms", call.timeout));
                call.failed = Some(true);
                call.deliver_at = ngx_current_msec;
                if let Owner::Root { fi, .. } = call.owner {
                    crate::root_calls::note_outcome(fi, true);
                    crate::root_calls::note_due(fi, ngx_current_msec);
                }
            }
            (answer, (*call.main).connection, matches!(call.owner, Owner::Filter(_)))
        };
        let timed_out = answer.is_none();
        complete_call(ptr, answer.unwrap_or_else(HttpCallResponse::failed));
        if timed_out {
            // Last: ending the subrequest may end the request it hangs off (when that one
            // is not parked), and free the call.
            abort(&mut *ptr);
        }
        if is_request {
            // The woken request, or calls dispatched from the callback, run now. `c` is
            // still connection memory; nginx marks it destroyed if the request ended.
            ngx_http_run_posted_requests(c);
        }
    })
}

unsafe fn log(call: &Call, level: u32, msg: &str) {
    let text = format!("http call to \"{}\" ({}): {msg}", call.upstream, String::from_utf8_lossy(&call.url));
    crate::ngx_log::write((*(*call.main).connection).log, level as ngx_uint_t, "proxy_wasm", text.as_bytes());
}

/// Delivers the response. Takes a pointer: delivering runs the owner's chain, which reads
/// the request's list of calls (this one among them).
unsafe fn complete_call(ptr: *mut Call, resp: HttpCallResponse) {
    let (owner, token, main) = {
        let call = &mut *ptr;
        call.done = true;
        if call.ev.timer_set() != 0 {
            ngx_del_timer(&mut call.ev);
        }
        // The body's bytes are in `resp` now, gone when this returns.
        call.release_captured();
        (call.owner, call.token, call.main)
    };
    match owner {
        Owner::Filter(i) => deliver_to_request(main, i, token, &resp),
        Owner::Root { fi, generation } => crate::root_calls::deliver(fi, generation, main, token, &resp),
    }
}

// ---------------------------------------------------------------------------------------------
// requests: parking in the access phase and resuming
// ---------------------------------------------------------------------------------------------

/// Calls of filter `i` not answered yet.
pub(crate) fn pending(ctx: &RequestCtx, i: usize) -> usize {
    ctx.calls.iter().filter(|c| !c.done && matches!(c.owner, Owner::Filter(f) if f == i)).count()
}

/// Sends the calls the last callbacks dispatched.
pub(crate) unsafe fn send_new(r: *mut ngx_http_request_t, ctx: &mut RequestCtx) {
    for (i, req) in std::mem::take(&mut ctx.new_calls) {
        let call = dispatch(r, Owner::Filter(i), req, &ctx.calls);
        ctx.calls.push(call);
    }
}

/// Cancels every call of the request that is still pending (it was answered or failed):
/// their callbacks never run.
pub(crate) unsafe fn cancel_all(ctx: &mut RequestCtx) {
    let mut owners: Vec<(usize, u32)> = Vec::new();
    for call in ctx.calls.iter_mut().filter(|c| !c.done) {
        call.done = true;
        if call.ev.timer_set() != 0 {
            ngx_del_timer(&mut call.ev);
        }
        if !call.sr_done {
            abort(call);
        }
        call.answer = None;
        call.body = Vec::new();
        call.release_captured();
        if let Owner::Filter(i) = call.owner {
            owners.push((i, call.token));
        }
    }
    forget(ctx, &owners);
}

/// The request ends (cleanup): calls still pending or never sent will not be answered.
/// Their subrequests are gone already (nginx frees a request after its subrequests).
pub(crate) fn forget_pending(ctx: &mut RequestCtx) {
    let mut owners: Vec<(usize, u32)> = ctx.new_calls.drain(..).map(|(i, c)| (i, c.token)).collect();
    for call in ctx.calls.iter_mut().filter(|c| !c.done) {
        call.done = true;
        if let Owner::Filter(i) = call.owner {
            owners.push((i, call.token));
        }
    }
    forget(ctx, &owners);
}

/// Tells each owning filter's instance that these calls (filter, token) will never be answered.
fn forget(ctx: &RequestCtx, owners: &[(usize, u32)]) {
    if owners.is_empty() {
        return;
    }
    let _ = WORKER.try_with(|w| {
        let Ok(mut w) = w.try_borrow_mut() else { return };
        let Some(w) = w.as_mut() else { return };
        for &(i, token) in owners {
            let fc = &ctx.filters[i];
            let mi = w.filter_module[fc.filter];
            if let Some(inst) = w.instance_for(mi, fc.generation) {
                inst.forget_http_calls(&[token]);
            }
        }
    });
}

unsafe fn deliver_to_request(r: *mut ngx_http_request_t, i: usize, token: u32, resp: &HttpCallResponse) {
    let Some(ctx) = chain::get(r) else { return };
    if ctx.finished || ctx.answered {
        // Nobody to tell any more; the instance stops counting the call.
        forget(ctx, &[(i, token)]);
        return;
    }
    let res = chain::step(r, ctx, i, &mut |inst, id, _fc, seed| {
        let mut stream = seed.stream(Phase::Request);
        Some(inst.on_http_call_response(id, token, resp, Some(&mut stream)).map(|o| {
            // Without proxy_continue_stream the filter stays paused (its other calls, or
            // the end of them, resume it).
            if o.ops.continue_request || o.local_response.is_some() {
                o
            } else {
                Outcome { action: proxy_wasm_host::Action::Pause, ..o }
            }
        }))
    });
    send_new(r, ctx);
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

/// The wasm_call_* settings as a MainConf helper.
impl MainConf {
    pub(crate) fn call_trusted_certificate(&self) -> Option<String> {
        match &self.call_trusted {
            Some(p) => Some(p.clone()),
            None => {
                let system = "/etc/ssl/certs/ca-certificates.crt";
                std::path::Path::new(system).exists().then(|| system.to_string())
            }
        }
    }
}
