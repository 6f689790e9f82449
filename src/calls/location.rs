//! The generated locations calls run in (`location @proxy_wasm_call` for HTTP calls,
//! `@proxy_wasm_grpc` for gRPC calls; never matched by a URI), and the variables their
//! `proxy_pass` / `grpc_pass` read from the call a subrequest carries.

use std::ffi::c_void;
use std::ptr;

use ngx::ffi::*;

use super::call::{call_of, Call, DEFAULT_TIMEOUT_MS};
use crate::conf::MainConf;

/// The generated locations' names: HTTP calls (proxy_pass) and gRPC calls (grpc_pass).
const LOCATION: &str = "@proxy_wasm_call";
const GRPC_LOCATION: &str = "@proxy_wasm_grpc";


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
    crate::util::guard("call variable", NGX_ERROR as ngx_int_t, || {
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

/// The text of the generated HTTP-call location, from the wasm_call_* directives.
fn location_text(mcf: &MainConf) -> String {
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
         proxy_ignore_client_abort on;\n"
    );
    s.push_str(&upstream_settings("proxy", mcf));
    s
}

/// The text of the generated gRPC location. (No grpc_set_header here, so that those at
/// http{} level apply to calls; TE is the call's own, see subrequest.rs.)
fn grpc_location_text(mcf: &MainConf) -> String {
    let mut s = format!(
        "location {GRPC_LOCATION} {{\n\
         grpc_pass $proxy_wasm_call_url;\n"
    );
    s.push_str(&upstream_settings("grpc", mcf));
    s
}

/// What both locations pin, with their module's prefix (`proxy`, `grpc`): a call's target
/// cannot redirect it nor become an error page; the wasm_call_* timeouts and TLS rules;
/// then the location's closing brace and that of the pseudo-block ngx_conf_parse reads.
fn upstream_settings(p: &str, mcf: &MainConf) -> String {
    let t = mcf.call_timeout.unwrap_or(DEFAULT_TIMEOUT_MS);
    let mut s = format!(
        "{p}_ignore_headers X-Accel-Redirect X-Accel-Buffering X-Accel-Limit-Rate X-Accel-Expires X-Accel-Charset;\n\
         {p}_intercept_errors off;\n\
         {p}_connect_timeout {t}ms;\n\
         {p}_send_timeout {t}ms;\n\
         {p}_read_timeout {t}ms;\n\
         {p}_ssl_server_name on;\n\
         {p}_ssl_name $proxy_wasm_call_host;\n\
         {p}_ssl_verify_depth 8;\n"
    );
    if mcf.call_ssl_verify.get(true) {
        s.push_str(&format!("{p}_ssl_verify on;\n"));
        if let Some(ca) = mcf.call_trusted_certificate() {
            s.push_str(&format!("{p}_ssl_trusted_certificate \"{}\";\n", ca.replace('"', "\\\"")));
        }
    } else {
        s.push_str(&format!("{p}_ssl_verify off;\n"));
    }
    s.push_str("}\n}\n");
    s
}

/// Whether this nginx has the grpc module (it may be configured out).
unsafe fn has_grpc_module(cycle: *mut ngx_cycle_t) -> bool {
    (0..(*cycle).modules_n).any(|m| {
        let module = *(*cycle).modules.add(m);
        !(*module).name.is_null() && std::ffi::CStr::from_ptr((*module).name).to_bytes() == b"ngx_http_grpc_module"
    })
}

/// Builds the generated locations (postconfiguration): HTTP calls', and gRPC calls' where
/// nginx has the grpc module.
pub(crate) unsafe fn create_location(cf: *mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), String> {
    mcf.call_loc_conf = build_location(cf, &location_text(mcf), "HTTP calls")? as usize;
    if has_grpc_module((*cf).cycle) {
        mcf.grpc_loc_conf = build_location(cf, &grpc_location_text(mcf), "gRPC calls")? as usize;
    }
    crate::conf::call_policy::collect(cf, mcf);
    Ok(())
}

/// Builds one generated location (postconfiguration): parses its text as if it were
/// written at http{} level, then merges it with the http{}-level settings, as nginx merges
/// a server's locations, so `resolver`, `proxy_ssl_certificate` and other proxy settings
/// at http{} level apply to calls too.
unsafe fn build_location(cf: *mut ngx_conf_t, text: &str, what: &str) -> Result<*mut *mut c_void, String> {
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
        return Err(format!("the location for {what} could not be parsed (see the message above)"));
    }
    // The location queue's last element is ours; a named location is stored as `exact`.
    let lq = (*(queue as *mut ngx_queue_t)).prev as *mut ngx_http_location_queue_t;
    let clcf = (*lq).exact;
    if clcf.is_null() {
        return Err(format!("the location for {what} was not created"));
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
                result = Err(format!(
                    "the location for {what} could not be set up (see the message above); \
                     HTTPS and gRPC-over-TLS calls verify certificates against wasm_call_ssl_trusted_certificate \
                     (or set wasm_call_ssl_verify off)"
                ));
                break;
            }
        }
    }
    (*cf).ctx = saved_ctx;
    result?;
    Ok(loc_conf)
}

