//! Envoy's attribute paths over an nginx request, with Envoy's encodings: strings as bytes,
//! integers as 8-byte little-endian, timestamps and durations as nanoseconds (i64 LE),
//! booleans as one byte, maps as serialized header maps. `ngx.<name>` reads and writes nginx
//! variables (writes only where nginx allows: changeable variables such as `set $x` or $args).

use ngx::ffi::*;
use ngx::http::HttpModuleMainConf;
use ngx::http::NgxHttpCoreModule;
use proxy_wasm_host::maps::MapBuilder;
use proxy_wasm_host::{HttpStream, MapType, Status};

use crate::http::stream::{NgxStream, Phase};

use crate::util::encode::{int, string};

unsafe fn str_of<'a>(s: &ngx_str_t) -> &'a [u8] {
    if s.len == 0 || s.data.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(s.data, s.len)
    }
}

/// Prefixes nginx resolves dynamically (they are not in the variables hash).
const VAR_PREFIXES: [&str; 8] =
    ["http_", "sent_http_", "sent_trailer_", "cookie_", "arg_", "upstream_http_", "upstream_trailer_", "upstream_cookie_"];

unsafe fn find_variable(r: *mut ngx_http_request_t, lc: &[u8]) -> *mut ngx_http_variable_t {
    let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(&*r) else { return std::ptr::null_mut() };
    let key = ngx_hash_key(lc.as_ptr() as *mut u8, lc.len());
    ngx_hash_find(&mut cmcf.variables_hash, key, lc.as_ptr() as *mut u8, lc.len()) as *mut ngx_http_variable_t
}

/// The value of nginx variable `name`, without nginx's "unknown variable" error line for
/// names that do not exist.
pub(crate) unsafe fn variable(r: *mut ngx_http_request_t, name: &[u8]) -> Option<Vec<u8>> {
    let mut lc = name.to_ascii_lowercase();
    let known = !find_variable(r, &lc).is_null() || VAR_PREFIXES.iter().any(|p| lc.starts_with(p.as_bytes()));
    if !known || lc.is_empty() {
        return None;
    }
    let key = ngx_hash_key(lc.as_mut_ptr(), lc.len());
    let mut s = ngx_str_t { len: lc.len(), data: lc.as_mut_ptr() };
    let v = ngx_http_get_variable(r, &mut s, key);
    if v.is_null() || (*v).not_found() != 0 {
        return None;
    }
    Some(if (*v).data.is_null() { Vec::new() } else { std::slice::from_raw_parts((*v).data, (*v).len() as usize).to_vec() })
}

/// Variables that nginx copies into a request line (proxy_pass, the HTTP/1 upstream request).
const REQUEST_LINE_VARS: &[&[u8]] = &[b"args", b"query_string", b"uri", b"document_uri", b"request_uri", b"is_args"];

/// A value nginx may copy into a header or a request line: a variable can end up in either
/// (`proxy_set_header X $v`, `add_header`, `proxy_pass http://u/$v`, `$args`), so nothing
/// that ends a line (CR, LF, NUL), as for header values; the request line's pieces also no
/// space or other control byte, which would split the line into method, target and version.
pub(crate) fn valid_variable_value(lc_name: &[u8], value: &[u8]) -> bool {
    if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return false;
    }
    !REQUEST_LINE_VARS.contains(&lc_name) || value.iter().all(|&b| b > b' ' && b != 0x7f)
}

/// What writing an nginx variable did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum VarWrite {
    Done,
    /// No such variable (the Lua path answers NOT_FOUND, as api7 does).
    Unknown,
    /// Read-only, or the request cannot hold it.
    Refused,
    /// The value could split a header or the request line.
    Invalid,
    NoMemory,
}

pub(crate) unsafe fn set_variable(r: *mut ngx_http_request_t, name: &[u8], value: &[u8]) -> VarWrite {
    let lc = name.to_ascii_lowercase();
    let v = find_variable(r, &lc);
    if v.is_null() {
        return VarWrite::Unknown;
    }
    if (*v).flags & NGX_HTTP_VAR_CHANGEABLE as ngx_uint_t == 0 {
        return VarWrite::Refused;
    }
    if !valid_variable_value(&lc, value) {
        return VarWrite::Invalid;
    }
    // nginx keeps pointers to the value: it must live as long as the request.
    let data = ngx_pnalloc((*r).pool, value.len().max(1)) as *mut u8;
    let vv = ngx_pcalloc((*r).pool, std::mem::size_of::<ngx_http_variable_value_t>()) as *mut ngx_http_variable_value_t;
    if data.is_null() || vv.is_null() {
        return VarWrite::NoMemory;
    }
    std::ptr::copy_nonoverlapping(value.as_ptr(), data, value.len());
    (*vv).data = data;
    (*vv).set_len(value.len() as u32);
    (*vv).set_valid(1);
    (*vv).set_not_found(0);
    if let Some(set) = (*v).set_handler {
        set(r, vv, (*v).data);
        return VarWrite::Done;
    }
    if (*v).flags & NGX_HTTP_VAR_INDEXED as ngx_uint_t != 0 && !(*r).variables.is_null() {
        *(*r).variables.add((*v).index) = *vv;
        return VarWrite::Done;
    }
    VarWrite::Refused
}

fn port_of(addr: &[u8]) -> Option<i64> {
    let i = addr.iter().rposition(|&b| b == b':')?;
    std::str::from_utf8(&addr[i + 1..]).ok()?.parse().ok()
}

unsafe fn var_int(r: *mut ngx_http_request_t, name: &[u8], out: &mut Vec<u8>) -> Status {
    match variable(r, name).and_then(|v| std::str::from_utf8(&v).ok().and_then(|s| s.trim().parse::<i64>().ok())) {
        Some(n) => int(out, n),
        None => Status::NotFound,
    }
}

unsafe fn var_str(r: *mut ngx_http_request_t, name: &[u8], out: &mut Vec<u8>) -> Status {
    match variable(r, name) {
        Some(v) if !v.is_empty() => string(out, &v),
        _ => Status::NotFound,
    }
}

fn map(s: &mut NgxStream<'_>, m: MapType, out: &mut Vec<u8>) -> Status {
    let mut b = MapBuilder::new();
    match s.map_pairs(m, &mut b) {
        Status::Ok => string(out, &b.finish()),
        st => st,
    }
}

unsafe fn request_time_ns(r: *mut ngx_http_request_t) -> i64 {
    (*r).start_sec as i64 * 1_000_000_000 + (*r).start_msec as i64 * 1_000_000
}

/// A well-known property, `ngx.<variable>`, or NotFound.
pub(crate) unsafe fn get(s: &mut NgxStream<'_>, path: &[&[u8]], out: &mut Vec<u8>) -> Status {
    let r = s.request();
    let response = s.phase() == Phase::Response;
    match path {
        [b"request", b"path"] => string(out, str_of(&(*r).unparsed_uri)),
        [b"request", b"url_path"] => {
            let u = str_of(&(*r).unparsed_uri);
            string(out, u.split(|&b| b == b'?').next().unwrap_or(u))
        }
        [b"request", b"host"] => string(out, &s.authority().to_vec()),
        [b"request", b"scheme"] => string(out, s.scheme()),
        [b"request", b"method"] => string(out, str_of(&(*r).method_name)),
        [b"request", b"headers"] => map(s, MapType::RequestHeaders, out),
        [b"request", b"headers", name] => s.map_get(MapType::RequestHeaders, name, out),
        [b"request", b"referer"] => s.map_get(MapType::RequestHeaders, b"referer", out),
        [b"request", b"useragent"] => s.map_get(MapType::RequestHeaders, b"user-agent", out),
        [b"request", b"time"] => int(out, request_time_ns(r)),
        [b"request", b"duration"] => {
            let tp = *ngx_cached_time;
            let now = tp.sec as i64 * 1_000_000_000 + tp.msec as i64 * 1_000_000;
            int(out, (now - request_time_ns(r)).max(0))
        }
        [b"request", b"id"] => match s.map_get(MapType::RequestHeaders, b"x-request-id", out) {
            Status::Ok => Status::Ok,
            _ => var_str(r, b"request_id", out),
        },
        [b"request", b"protocol"] => string(out, str_of(&(*r).http_protocol)),
        [b"request", b"query"] => string(out, str_of(&(*r).args)),
        [b"request", b"size"] if (*r).headers_in.content_length_n >= 0 => int(out, (*r).headers_in.content_length_n as i64),
        [b"request", b"size"] => Status::NotFound,
        [b"request", b"total_size"] => int(out, (*r).request_length as i64),
        [b"response", b"code"] if response && (*r).headers_out.status > 0 => int(out, (*r).headers_out.status as i64),
        [b"response", b"code_details"] if response && !(*r).upstream.is_null() => string(out, b"via_upstream"),
        [b"response", b"headers"] if response => map(s, MapType::ResponseHeaders, out),
        [b"response", b"headers", name] if response => s.map_get(MapType::ResponseHeaders, name, out),
        [b"response", b"total_size"] if response => var_int(r, b"bytes_sent", out),
        [b"source", b"address"] => addr_port(r, b"remote_addr", b"remote_port", out),
        [b"source", b"port"] => var_int(r, b"remote_port", out),
        [b"destination", b"address"] => addr_port(r, b"server_addr", b"server_port", out),
        [b"destination", b"port"] => var_int(r, b"server_port", out),
        [b"connection", b"id"] => int(out, (*(*r).connection).number as i64),
        [b"connection", b"mtls"] => {
            let verified = variable(r, b"ssl_client_verify").is_some_and(|v| v == b"SUCCESS");
            out.push(u8::from(verified));
            Status::Ok
        }
        [b"connection", b"tls_version"] => var_str(r, b"ssl_protocol", out),
        [b"connection", b"requested_server_name"] => var_str(r, b"ssl_server_name", out),
        [b"upstream", b"address"] if response => match variable(r, b"upstream_addr") {
            // several tries are comma-separated: the last one answered
            Some(v) if !v.is_empty() => string(out, v.rsplit(|&b| b == b' ').next().unwrap_or(&v)),
            _ => Status::NotFound,
        },
        [b"upstream", b"port"] if response => match variable(r, b"upstream_addr").and_then(|v| port_of(&v)) {
            Some(p) => int(out, p),
            None => Status::NotFound,
        },
        [b"node", b"id"] => var_str(r, b"hostname", out),
        [b"ngx", name] => match variable(r, name) {
            Some(v) => string(out, &v),
            None => Status::NotFound,
        },
        _ => Status::NotFound,
    }
}

unsafe fn addr_port(r: *mut ngx_http_request_t, addr: &[u8], port: &[u8], out: &mut Vec<u8>) -> Status {
    let (Some(a), Some(p)) = (variable(r, addr), variable(r, port)) else { return Status::NotFound };
    if a.contains(&b':') {
        out.push(b'[');
        out.extend_from_slice(&a);
        out.push(b']');
    } else {
        out.extend_from_slice(&a);
    }
    out.push(b':');
    out.extend_from_slice(&p);
    Status::Ok
}

/// Well-known attributes are read-only (BAD_ARGUMENT); `ngx.<variable>` writes the variable;
/// anything else is NotFound, and the caller stores it as a request property.
pub(crate) unsafe fn set(s: &mut NgxStream<'_>, path: &[&[u8]], value: &[u8]) -> Status {
    match path {
        [b"ngx", name] => match set_variable(s.request(), name, value) {
            VarWrite::Done => Status::Ok,
            VarWrite::NoMemory => Status::InternalFailure,
            VarWrite::Unknown | VarWrite::Refused | VarWrite::Invalid => Status::BadArgument,
        },
        [b"request" | b"response" | b"source" | b"destination" | b"connection" | b"upstream" | b"node", ..] => {
            Status::BadArgument
        }
        _ => Status::NotFound,
    }
}
