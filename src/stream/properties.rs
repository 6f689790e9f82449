//! Envoy's attribute paths over an nginx stream session, with Envoy's encodings (strings as
//! bytes, integers as 8-byte little-endian): `source.*`, `destination.*`, `connection.*`,
//! `upstream.address`, and `ngx.<name>` for stream variables.

use ngx::ffi::*;
use proxy_wasm_host::Status;

use crate::util::encode::{int, string};

/// "ip:port" of a socket address.
unsafe fn address(sa: *mut sockaddr, len: socklen_t) -> Option<Vec<u8>> {
    if sa.is_null() {
        return None;
    }
    // NGX_SOCKADDR_STRLEN is 113 on Linux (a unix socket path), a macro bindgen skips.
    let mut text = [0u8; 128];
    let n = ngx_sock_ntop(sa, len, text.as_mut_ptr(), text.len(), 1);
    Some(text[..n].to_vec())
}

unsafe fn local_sockaddr(c: *mut ngx_connection_t) -> Option<(*mut sockaddr, socklen_t)> {
    if ngx_connection_local_sockaddr(c, std::ptr::null_mut(), 0) != NGX_OK as ngx_int_t {
        return None;
    }
    Some(((*c).local_sockaddr, (*c).local_socklen))
}

/// The value of stream variable `name`, without nginx's "unknown variable" error line for
/// names that do not exist.
pub(crate) unsafe fn variable(s: *mut ngx_stream_session_t, name: &[u8]) -> Option<Vec<u8>> {
    let mut lc = name.to_ascii_lowercase();
    if lc.is_empty() {
        return None;
    }
    let cmcf = *(*s).main_conf.add(ngx_stream_core_module.ctx_index) as *mut ngx_stream_core_main_conf_t;
    let key = ngx_hash_key(lc.as_mut_ptr(), lc.len());
    if cmcf.is_null() || ngx_hash_find(&mut (*cmcf).variables_hash, key, lc.as_mut_ptr(), lc.len()).is_null() {
        return None;
    }
    let mut n = ngx_str_t { len: lc.len(), data: lc.as_mut_ptr() };
    let v = ngx_stream_get_variable(s, &mut n, key);
    if v.is_null() || (*v).not_found() != 0 || (*v).valid() == 0 {
        return None;
    }
    Some(if (*v).data.is_null() { Vec::new() } else { std::slice::from_raw_parts((*v).data, (*v).len() as usize).to_vec() })
}

fn non_empty(v: Option<Vec<u8>>) -> Option<Vec<u8>> {
    v.filter(|v| !v.is_empty())
}

/// # Safety
/// `s` is a live session.
pub(crate) unsafe fn get(s: *mut ngx_stream_session_t, path: &[&[u8]], out: &mut Vec<u8>) -> Status {
    let c = (*s).connection;
    let found = match path {
        [b"source", b"address"] => address((*c).sockaddr, (*c).socklen),
        [b"source", b"port"] => return int(out, ngx_inet_get_port((*c).sockaddr) as i64),
        [b"destination", b"address"] => local_sockaddr(c).and_then(|(sa, len)| address(sa, len)),
        [b"destination", b"port"] => match local_sockaddr(c) {
            Some((sa, _)) => return int(out, ngx_inet_get_port(sa) as i64),
            None => None,
        },
        [b"connection", b"id"] => return int(out, (*c).number as i64),
        [b"connection", b"requested_server_name"] => {
            // ssl_preread's when it read a ClientHello, else the terminated TLS's SNI.
            non_empty(variable(s, b"ssl_preread_server_name")).or_else(|| non_empty(variable(s, b"ssl_server_name")))
        }
        [b"connection", b"tls_version"] => non_empty(variable(s, b"ssl_protocol")),
        [b"connection", b"mtls"] => {
            let v = non_empty(variable(s, b"ssl_client_verify"));
            return match v {
                Some(v) => string(out, &[(v == b"SUCCESS") as u8]),
                None => Status::NotFound,
            };
        }
        [b"upstream", b"address"] => non_empty(variable(s, b"upstream_addr")),
        [b"upstream", b"port"] => {
            // The port of the last address tried ($upstream_addr lists every attempt).
            let port = non_empty(variable(s, b"upstream_addr")).and_then(|a| {
                let last = a.rsplit(|&b| b == b' ' || b == b',').next()?.to_vec();
                std::str::from_utf8(&last).ok()?.rsplit(':').next()?.parse::<u16>().ok()
            });
            return match port {
                Some(p) => int(out, p as i64),
                None => Status::NotFound,
            };
        }
        [b"ngx", name] => variable(s, name),
        _ => None,
    };
    match found {
        Some(v) => string(out, &v),
        None => Status::NotFound,
    }
}

/// Sets `ngx.<name>` where nginx allows it (a `set $x` variable); NotFound otherwise, so
/// that the caller keeps the value as a custom property.
///
/// # Safety
/// `s` is a live session.
pub(crate) unsafe fn set(s: *mut ngx_stream_session_t, path: &[&[u8]], value: &[u8]) -> Status {
    let [b"ngx", name] = path else { return Status::NotFound };
    let mut lc = name.to_ascii_lowercase();
    let cmcf = *(*s).main_conf.add(ngx_stream_core_module.ctx_index) as *mut ngx_stream_core_main_conf_t;
    if cmcf.is_null() || lc.is_empty() {
        return Status::NotFound;
    }
    let key = ngx_hash_key(lc.as_mut_ptr(), lc.len());
    let v = ngx_hash_find(&mut (*cmcf).variables_hash, key, lc.as_mut_ptr(), lc.len()) as *mut ngx_stream_variable_t;
    if v.is_null() {
        return Status::NotFound;
    }
    // Only variables nginx lets configuration change (`set`): they are indexed and flagged
    // changeable.
    if (*v).flags & NGX_STREAM_VAR_CHANGEABLE as ngx_uint_t == 0 || (*v).flags & NGX_STREAM_VAR_INDEXED as ngx_uint_t == 0 {
        return Status::BadArgument;
    }
    let pool = (*(*s).connection).pool;
    let data = ngx_pnalloc(pool, value.len().max(1)) as *mut u8;
    if data.is_null() {
        return Status::InternalFailure;
    }
    std::ptr::copy_nonoverlapping(value.as_ptr(), data, value.len());
    let vv = (*s).variables.add((*v).index);
    (*vv).data = data;
    (*vv).set_len(value.len() as u32);
    (*vv).set_valid(1);
    (*vv).set_not_found(0);
    (*vv).set_no_cacheable(0);
    Status::Ok
}
