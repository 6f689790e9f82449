//! A call's subrequest: set up to jump straight into the generated location with the call's
//! method, headers and body; its response captured by our header and body filters (it never
//! reaches the client); its end, or its abort on timeout or cancel.

use std::ffi::c_void;
use std::ptr;

use ngx::ffi::*;
use ngx::http::{HttpModuleMainConf, NgxHttpCoreModule};
use proxy_wasm_host::{HttpCallRequest, HttpCallResponse};

use proxy_wasm_host::grpc_call::{code, http_to_grpc_status, metadata_for_plugin, status_of};
use proxy_wasm_host::GrpcEvent;

use super::call::{log, post_events, settle, Call, CAPTURED, MAX_RESPONSE_BODY, MAX_RESPONSE_BYTES_PER_WORKER};
use crate::conf::MainConf;

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

pub(super) unsafe fn start_subrequest(
    main: *mut ngx_http_request_t,
    call: &mut Call,
    req: &HttpCallRequest,
    mcf: Option<&MainConf>,
) -> Result<(), String> {
    let grpc = call.grpc.is_some();
    let loc_conf = mcf.map(|m| if grpc { m.grpc_loc_conf } else { m.call_loc_conf }).unwrap_or(0) as *mut *mut c_void;
    if loc_conf.is_null() {
        return Err(if grpc {
            "gRPC calls are not set up in this configuration (nginx is built without the grpc module)".into()
        } else {
            "HTTP calls are not set up in this configuration".into()
        });
    }
    let pool = (*main).pool;
    let ps = ngx_palloc(pool, std::mem::size_of::<ngx_http_post_subrequest_t>()) as *mut ngx_http_post_subrequest_t;
    if ps.is_null() {
        return Err("out of memory".into());
    }
    (*ps).handler = Some(subrequest_done);
    (*ps).data = call as *mut Call as *mut c_void;
    // grpc_pass sends the subrequest's URI as :path (the bytes live in the Call, which
    // outlives its subrequest); proxy_pass takes the whole URL from $proxy_wasm_call_url.
    let uri: &[u8] = if grpc { &call.path } else { b"/proxy_wasm_call" };
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
    (*sr).method_name = crate::util::list::pool_str(sr, method).ok_or("out of memory")?;
    ptr::write_bytes(ptr::addr_of_mut!((*sr).headers_in), 0, 1);
    if crate::util::list::init(&mut (*sr).headers_in.headers, pool, 8 + req.headers.len(), std::mem::size_of::<ngx_table_elt_t>())
        .is_none()
    {
        return Err("out of memory".into());
    }
    (*sr).headers_in.content_length_n = if req.body.is_empty() { -1 } else { req.body.len() as off_t };
    (*sr).headers_in.keep_alive_n = -1;
    for (k, v) in req.headers.iter().filter(|(k, _)| !k.starts_with(b":")) {
        let h = crate::util::list::push_header(sr, &mut (*sr).headers_in.headers, k, v).ok_or("out of memory")?;
        if grpc && k.eq_ignore_ascii_case(b"te") {
            // nginx's grpc module sends `TE: trailers` only when the request has it
            // ($grpc_internal_trailers reads headers_in.te, which nginx's header parser sets).
            (*sr).headers_in.te = h;
        }
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


/// Stops a call's subrequest (timeout, cancel): closes its upstream connection if it has
/// one, or, if it has not run yet, makes it end as soon as it does.
pub(super) unsafe fn abort(call: &mut Call) {
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
pub(super) unsafe extern "C" fn end_cancelled(sr: *mut ngx_http_request_t) {
    ngx_http_finalize_request(sr, NGX_DONE as ngx_int_t);
}

// ---------------------------------------------------------------------------------------------
// capturing the response (called first thing by our header and body filters)
// ---------------------------------------------------------------------------------------------

/// The call's response headers, from the header filter: `headers` reads them (the HTTP
/// layer knows how nginx keeps them), once.
pub(crate) unsafe fn capture_headers(
    r: *mut ngx_http_request_t,
    call: &mut Call,
    headers: impl FnOnce() -> Vec<(Vec<u8>, Vec<u8>)>,
) -> ngx_int_t {
    (*r).set_header_sent(1);
    if call.done || call.headers.is_some() {
        return NGX_OK as ngx_int_t;
    }
    call.headers = Some(headers());
    NGX_OK as ngx_int_t
}

/// The call's response body, from the body filter: kept up to MAX_RESPONSE_BODY (and this
/// worker's MAX_RESPONSE_BYTES_PER_WORKER), the chain consumed either way.
pub(crate) unsafe fn capture_body(call: &mut Call, cl: *mut ngx_chain_t) -> ngx_int_t {
    if call.grpc.is_some() {
        return capture_grpc(call, cl);
    }
    let flags = crate::util::buf::walk(cl, true, &mut |d| {
        // The subrequest asks for memory buffers (filter_need_in_memory); file data is skipped.
        if let crate::util::buf::Data::Memory(m) = d {
            let n = m.len();
            let worker_full = CAPTURED.with(|c| c.get() + n > MAX_RESPONSE_BYTES_PER_WORKER);
            if call.body.len() + n > MAX_RESPONSE_BODY || worker_full {
                call.too_big = true;
            } else if !call.done && !call.too_big {
                call.body.extend_from_slice(m);
                call.captured += n;
                CAPTURED.with(|c| c.set(c.get() + n));
            }
        }
        Ok(())
    });
    if let Ok(f) = flags {
        if f.last_buf || f.last_in_chain {
            call.body_done = true;
        }
    }
    NGX_OK as ngx_int_t
}

/// A gRPC call's body: cut into messages as it arrives, each queued (with the initial
/// metadata before the first) and handed over from the call's post event. Its bytes count
/// against this worker's MAX_RESPONSE_BYTES_PER_WORKER until delivered.
unsafe fn capture_grpc(call: &mut Call, cl: *mut ngx_chain_t) -> ngx_int_t {
    let ok_status = call.headers.as_ref().is_some_and(|h| h.iter().any(|(k, v)| k == b":status" && v == b"200"));
    let mut queued = false;
    let flags = crate::util::buf::walk(cl, true, &mut |d| {
        let crate::util::buf::Data::Memory(m) = d else { return Ok(()) };
        let (Some(g), false) = (call.grpc.as_mut(), call.done || !ok_status) else { return Ok(()) };
        if g.error.is_some() || m.is_empty() {
            return Ok(());
        }
        if !g.started {
            g.started = true;
            let md = call.headers.clone().unwrap_or_default().into_iter().filter(|(k, _)| !k.starts_with(b":")).collect();
            g.events.push_back(GrpcEvent::InitialMetadata(metadata_for_plugin(md, false)));
            queued = true;
        }
        match g.deframer.push(m, MAX_RESPONSE_BODY) {
            Ok(msgs) => {
                for msg in msgs {
                    let n = msg.len();
                    if CAPTURED.with(|c| c.get() + n > MAX_RESPONSE_BYTES_PER_WORKER) {
                        g.error = Some((code::RESOURCE_EXHAUSTED, "this worker holds too many bytes of call responses"));
                        break;
                    }
                    call.captured += n;
                    CAPTURED.with(|c| c.set(c.get() + n));
                    g.events.push_back(GrpcEvent::Message(msg));
                    queued = true;
                }
            }
            Err(why) => g.error = Some((if why.contains("larger") { code::RESOURCE_EXHAUSTED } else { code::INTERNAL }, why)),
        }
        Ok(())
    });
    if let Ok(f) = flags {
        if f.last_buf || f.last_in_chain {
            call.body_done = true;
        }
    }
    if queued {
        post_events(call);
    }
    NGX_OK as ngx_int_t
}

/// The trailers of a call's response (nginx's grpc module passes the upstream's on).
unsafe fn trailers_of(sr: *mut ngx_http_request_t) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    crate::util::list::each_elt(&mut (*sr).headers_out.trailers, &mut |h| {
        if (*h).hash != 0 {
            let key = crate::util::list::bytes(&(*h).key).to_ascii_lowercase();
            out.push((key, crate::util::list::bytes(&(*h).value).to_vec()));
        }
        false
    });
    out
}

/// A gRPC call's subrequest finished: the trailing metadata and the close (with the status
/// Envoy's async client would give) are queued, and the call settles.
unsafe fn grpc_done(sr: *mut ngx_http_request_t, ptr: *mut Call, rc: ngx_int_t) {
    let call = &mut *ptr;
    let complete = rc == NGX_OK as ngx_int_t && (call.body_done || (*sr).header_only() != 0);
    let headers = call.headers.take();
    let trailers = if headers.is_some() { trailers_of(sr) } else { Vec::new() };
    let too_big = call.too_big;
    let Some(g) = call.grpc.as_mut() else { return };
    let (status, message): (u32, Vec<u8>) = match &headers {
        None => (code::UNAVAILABLE, format!("no response (status {rc}, see the upstream error above)").into_bytes()),
        Some(h) => {
            let http = h.iter().find(|(k, _)| k == b":status").and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<u32>().ok());
            let has_status = trailers.iter().chain(h).any(|(k, _)| k == b"grpc-status");
            if http != Some(200) {
                (http_to_grpc_status(http.unwrap_or(0)), format!("HTTP status {}", http.unwrap_or(0)).into_bytes())
            } else if let Some((c, why)) = g.error {
                (c, why.as_bytes().to_vec())
            } else if too_big {
                (code::RESOURCE_EXHAUSTED, b"response too large".to_vec())
            } else if (!complete || g.deframer.pending() > 0) && !has_status {
                (code::INTERNAL, b"the response was cut short".to_vec())
            } else {
                status_of(h, &trailers)
            }
        }
    };
    if let Some(h) = &headers {
        let md: Vec<_> = h.iter().filter(|(k, _)| !k.starts_with(b":")).cloned().collect();
        if !g.started && trailers.is_empty() && md.iter().any(|(k, _)| k == b"grpc-status") {
            // Trailers-only (a status and no message): the headers are the trailing metadata.
            g.events.push_back(GrpcEvent::TrailingMetadata(metadata_for_plugin(md, true)));
        } else {
            if !g.started {
                g.events.push_back(GrpcEvent::InitialMetadata(metadata_for_plugin(md, false)));
            }
            if !trailers.is_empty() {
                g.events.push_back(GrpcEvent::TrailingMetadata(metadata_for_plugin(trailers, true)));
            }
        }
        g.started = true;
    }
    if status != code::OK {
        // No response at all is an error (as for HTTP calls); a status is the server's answer.
        let level = if headers.is_none() { NGX_LOG_ERR } else { NGX_LOG_INFO };
        log(call, level, &format!("gRPC status {status}: {}", String::from_utf8_lossy(&message)));
    }
    let g = call.grpc.as_mut().expect("a gRPC call");
    g.events.push_back(GrpcEvent::Close { status, message });
    // No headers at all is a failed call (the back-off counts it); anything else was an answer.
    let resp = HttpCallResponse { headers: headers.unwrap_or_default(), body: Vec::new(), trailers: Vec::new() };
    settle(ptr, resp);
}

/// post_subrequest: the call's subrequest finished (or failed before any response).
/// Always returns NGX_OK: what happened is the plugin's business, not the client's, so an
/// upstream error must not become an error page or terminate the client's request.
pub(super) unsafe extern "C" fn subrequest_done(sr: *mut ngx_http_request_t, data: *mut c_void, rc: ngx_int_t) -> ngx_int_t {
    crate::util::guard("http call done", NGX_OK as ngx_int_t, || {
        let call = &mut *(data as *mut Call);
        // Settled already (nginx may finalize a subrequest more than once): the first word
        // stands, and its answer waits for the call's timer.
        if call.done || call.sr_done {
            return NGX_OK as ngx_int_t;
        }
        if call.grpc.is_some() {
            grpc_done(sr, data as *mut Call, rc);
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
        settle(data as *mut Call, resp);
        NGX_OK as ngx_int_t
    })
}
