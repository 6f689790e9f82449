//! proxy_grpc_call, proxy_grpc_stream, proxy_grpc_send, proxy_grpc_cancel,
//! proxy_grpc_close and proxy_get_status: a gRPC call is recorded as an HTTP/2 request
//! (`grpc_call`) and goes out with the HTTP calls; a stream's request is kept until the
//! plugin ends it (nginx sends a request body whole), then goes out.
//!
//! Statuses are those the SDKs expect (the Rust SDK panics on others): a malformed argument
//! is PARSE_FAILURE, a refused target or a bound reached INTERNAL_FAILURE, an unknown token
//! NOT_FOUND, a send on an ended stream BAD_ARGUMENT.

use wasmer::FunctionEnvMut;

use super::headers::{valid_name, valid_value};
use crate::abi::{LogLevel, Status};
use crate::env::HostEnv;
use crate::grpc_call::{base64_encode, frame_into, is_binary_key, timeout_value, GrpcKind, MAX_GRPC_MESSAGE};
use crate::http_call::{call_bytes, HttpCallRequest, MAX_CALL_HEADERS, MAX_CALL_HEADER_BYTES, MAX_CALL_TIMEOUT_MS, MAX_CALL_UPSTREAM, MAX_PENDING_CALLS};
use crate::maps;
use crate::memory::{read, return_bytes, u, write_u32};

/// Metadata the plugin may not set: the request's own framing and pseudo-headers.
fn reserved(key: &[u8]) -> bool {
    const RESERVED: [&[u8]; 6] = [b"content-type", b"te", b"grpc-timeout", b"content-length", b"host", b"transfer-encoding"];
    key.starts_with(b":") || RESERVED.iter().any(|r| r.eq_ignore_ascii_case(key)) || super::framing_header(key)
}

/// A service or method name: what can stand in a path segment without escaping.
fn valid_path_part(s: &[u8], dots: bool) -> bool {
    !s.is_empty() && s.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (dots && b == b'.'))
}

fn refuse(env: &mut FunctionEnvMut<HostEnv>, hostcall: &str, s: Status, why: &str) -> i32 {
    let msg = format!("{hostcall} refused ({}): {why}", s.name());
    env.data_mut().log(LogLevel::Warn, msg.as_bytes());
    s as i32
}

/// Reads and checks what both hostcalls share; the request has no body yet.
fn build(env: &FunctionEnvMut<HostEnv>, args: [i32; 8], timeout_ms: u32, kind: GrpcKind) -> Result<HttpCallRequest, (Status, &'static str)> {
    let [up, up_len, svc, svc_len, method, method_len, md, md_len] = args;
    let data = env.data();
    if !data.grpc_offered {
        return Err((Status::InternalFailure, "this nginx module sends no gRPC calls (only the http module's native filters do)"));
    }
    if !data.call.callback.may_dispatch_http_call() {
        return Err((Status::InternalFailure, "not allowed in this callback"));
    }
    if data.http_calls.len() + data.calls_in_flight + data.grpc_open.len() >= MAX_PENDING_CALLS {
        return Err((Status::InternalFailure, "too many calls in flight"));
    }
    if u(up_len) as usize > MAX_CALL_UPSTREAM || u(md_len) as usize > MAX_CALL_HEADER_BYTES || u(svc_len) > 1024 || u(method_len) > 1024 {
        return Err((Status::ParseFailure, "an argument is too long"));
    }
    let bad = |_| (Status::ParseFailure, "unreadable argument");
    let raw = read(env, up, up_len).map_err(bad)?;
    // `grpcs://` asks for TLS (verified as HTTPS calls are); `grpc://` or nothing, cleartext.
    let (upstream, tls) = match (raw.strip_prefix(b"grpcs://"), raw.strip_prefix(b"grpc://")) {
        (Some(rest), _) => (rest.to_vec(), true),
        (None, Some(rest)) => (rest.to_vec(), false),
        _ => (raw, false),
    };
    if upstream.is_empty() || upstream.iter().any(|&b| b <= b' ' || b == b'/' || b >= 0x7f) {
        return Err((Status::ParseFailure, "empty or malformed upstream (an upstream{} name or host:port)"));
    }
    let service = read(env, svc, svc_len).map_err(bad)?;
    let method = read(env, method, method_len).map_err(bad)?;
    if !valid_path_part(&service, true) || !valid_path_part(&method, false) {
        return Err((Status::ParseFailure, "empty or malformed service or method name"));
    }
    let raw = read(env, md, md_len).map_err(bad)?;
    let pairs = maps::deserialize(&raw).map_err(|_| (Status::ParseFailure, "malformed metadata map"))?;
    if pairs.len() > MAX_CALL_HEADERS {
        return Err((Status::ParseFailure, "too many metadata pairs"));
    }
    let mut path = Vec::with_capacity(service.len() + method.len() + 2);
    path.push(b'/');
    path.extend_from_slice(&service);
    path.push(b'/');
    path.extend_from_slice(&method);
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b":method".to_vec(), b"POST".to_vec()),
        (b":path".to_vec(), path),
        (b":authority".to_vec(), upstream.clone()),
        (b":scheme".to_vec(), if tls { b"https".to_vec() } else { b"http".to_vec() }),
        (b"content-type".to_vec(), b"application/grpc".to_vec()),
        (b"te".to_vec(), b"trailers".to_vec()),
    ];
    if timeout_ms > 0 {
        headers.push((b"grpc-timeout".to_vec(), timeout_value(timeout_ms)));
    }
    for (k, v) in pairs {
        if !valid_name(k) || reserved(k) {
            return Err((Status::ParseFailure, "a metadata key is malformed or reserved (pseudo-headers, content-type, te, grpc-timeout...)"));
        }
        let key = k.to_ascii_lowercase();
        // Binary metadata travels base64 (gRPC over HTTP/2); other values must be header-safe.
        let value = if is_binary_key(&key) {
            base64_encode(v)
        } else if valid_value(v) {
            v.to_vec()
        } else {
            return Err((Status::ParseFailure, "a metadata value holds CR, LF or NUL (binary values need a key ending in -bin)"));
        };
        headers.push((key, value));
    }
    if headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_CALL_HEADER_BYTES {
        return Err((Status::ParseFailure, "metadata too large"));
    }
    Ok(HttpCallRequest {
        token: 0,
        context_id: data.call.effective_id,
        upstream,
        headers,
        body: Vec::new(),
        trailers: Vec::new(),
        timeout_ms,
        grpc: Some(kind),
    })
}

/// Admits a call (policy, bounds) and gives it its token, written to `token_ptr`.
fn admit(env: &mut FunctionEnvMut<HostEnv>, hostcall: &str, call: &mut HttpCallRequest, token_ptr: i32) -> Result<(), Status> {
    super::http_call::check_policy(env, &call.upstream, hostcall, Status::InternalFailure)?;
    let data = env.data_mut();
    let token = data.next_call_token;
    let ctx = call.context_id;
    let http = !data.roots.contains_key(&ctx);
    let contexts = &data.contexts;
    if let Err(why) = data.call_ledger.admit(token, ctx, http, call_bytes(call), |c| contexts.contains_key(&c)) {
        refuse(env, hostcall, Status::InternalFailure, why);
        return Err(Status::InternalFailure);
    }
    let data = env.data_mut();
    data.next_call_token = data.next_call_token.wrapping_add(1).max(1);
    call.token = token;
    if let Err(s) = write_u32(env, token_ptr, token) {
        env.data_mut().call_ledger.release(token);
        return Err(s);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn proxy_grpc_call(
    mut env: FunctionEnvMut<HostEnv>,
    up: i32,
    up_len: i32,
    svc: i32,
    svc_len: i32,
    method: i32,
    method_len: i32,
    md: i32,
    md_len: i32,
    msg: i32,
    msg_len: i32,
    timeout_ms: i32,
    token_ptr: i32,
) -> i32 {
    const NAME: &str = "proxy_grpc_call";
    // A unary call holds its nginx subrequest like an HTTP call: the same longest timeout.
    let timeout = (timeout_ms as u32).min(MAX_CALL_TIMEOUT_MS);
    let mut call = match build(&env, [up, up_len, svc, svc_len, method, method_len, md, md_len], timeout, GrpcKind::Unary) {
        Ok(c) => c,
        Err((s, why)) => return refuse(&mut env, NAME, s, why),
    };
    if u(msg_len) as usize > MAX_GRPC_MESSAGE {
        return refuse(&mut env, NAME, Status::InternalFailure, "message too large");
    }
    let message = match read(&env, msg, msg_len) {
        Ok(m) => m,
        Err(_) => return refuse(&mut env, NAME, Status::ParseFailure, "unreadable message"),
    };
    frame_into(&mut call.body, &message);
    if let Err(s) = admit(&mut env, NAME, &mut call, token_ptr) {
        return s as i32;
    }
    env.data_mut().http_calls.push(call);
    Status::Ok as i32
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn proxy_grpc_stream(
    mut env: FunctionEnvMut<HostEnv>,
    up: i32,
    up_len: i32,
    svc: i32,
    svc_len: i32,
    method: i32,
    method_len: i32,
    md: i32,
    md_len: i32,
    token_ptr: i32,
) -> i32 {
    const NAME: &str = "proxy_grpc_stream";
    // A stream has no deadline of its own: the embedder's call timeout bounds it.
    let mut call = match build(&env, [up, up_len, svc, svc_len, method, method_len, md, md_len], 0, GrpcKind::Stream) {
        Ok(c) => c,
        Err((s, why)) => return refuse(&mut env, NAME, s, why),
    };
    if let Err(s) = admit(&mut env, NAME, &mut call, token_ptr) {
        return s as i32;
    }
    env.data_mut().grpc_open.insert(call.token, call);
    Status::Ok as i32
}

/// The plugin ended stream `token`'s request: it goes out after this callback.
fn end_stream(data: &mut HostEnv, token: u32) {
    if let Some(call) = data.grpc_open.remove(&token) {
        data.http_calls.push(call);
    }
}

pub(crate) fn proxy_grpc_send(mut env: FunctionEnvMut<HostEnv>, token: i32, msg: i32, msg_len: i32, end: i32) -> i32 {
    const NAME: &str = "proxy_grpc_send";
    let token = token as u32;
    let data = env.data();
    if !data.grpc_open.contains_key(&token) {
        return if data.grpc_inflight.contains_key(&token) || data.http_calls.iter().any(|c| c.token == token) {
            // Its request went out whole when the plugin ended it.
            refuse(&mut env, NAME, Status::BadArgument, "the stream's request was ended: nginx sends no more messages after it")
        } else {
            Status::NotFound as i32
        };
    }
    if end != 0 && !data.call.callback.may_dispatch_http_call() {
        return refuse(&mut env, NAME, Status::BadArgument, "a stream cannot be ended (sent) from this callback");
    }
    let body_len = data.grpc_open[&token].body.len();
    if body_len + u(msg_len) as usize + 5 > MAX_GRPC_MESSAGE {
        return refuse(&mut env, NAME, Status::BadArgument, "the stream's messages are too large");
    }
    let message = match read(&env, msg, msg_len) {
        Ok(m) => m,
        Err(_) => return refuse(&mut env, NAME, Status::BadArgument, "unreadable message"),
    };
    let data = env.data_mut();
    if let Err(why) = data.call_ledger.grow(token, message.len() + 5) {
        return refuse(&mut env, NAME, Status::BadArgument, why);
    }
    let data = env.data_mut();
    if let Some(call) = data.grpc_open.get_mut(&token) {
        frame_into(&mut call.body, &message);
    }
    if end != 0 {
        end_stream(data, token);
    }
    Status::Ok as i32
}

/// Forgets call `token` wherever the host holds it; true if it was the embedder's to stop.
fn drop_call(data: &mut HostEnv, token: u32) -> Option<bool> {
    if data.grpc_open.remove(&token).is_some() {
        data.call_ledger.release(token);
        return Some(false);
    }
    if let Some(i) = data.http_calls.iter().position(|c| c.token == token && c.grpc.is_some()) {
        data.http_calls.remove(i);
        data.call_ledger.release(token);
        return Some(false);
    }
    if data.grpc_inflight.remove(&token).is_some() {
        data.grpc_unary.remove(&token);
        data.calls_in_flight = data.calls_in_flight.saturating_sub(1);
        data.call_ledger.release(token);
        data.grpc_cancels.push(token);
        return Some(true);
    }
    None
}

/// Cancels a call or stream: nothing of it is delivered any more.
pub(crate) fn proxy_grpc_cancel(mut env: FunctionEnvMut<HostEnv>, token: i32) -> i32 {
    match drop_call(env.data_mut(), token as u32) {
        Some(_) => Status::Ok as i32,
        None => Status::NotFound as i32,
    }
}

/// Closes the local side: a stream's request ends (and goes out); a unary call, whose
/// request went out whole, is cancelled, as Envoy closes it.
pub(crate) fn proxy_grpc_close(mut env: FunctionEnvMut<HostEnv>, token: i32) -> i32 {
    let token = token as u32;
    let data = env.data_mut();
    if data.grpc_open.contains_key(&token) {
        if !data.call.callback.may_dispatch_http_call() {
            return refuse(&mut env, "proxy_grpc_close", Status::BadArgument, "a stream cannot be ended (sent) from this callback");
        }
        end_stream(data, token);
        return Status::Ok as i32;
    }
    match data.grpc_inflight.get(&token) {
        Some(GrpcKind::Stream) => Status::Ok as i32,
        Some(GrpcKind::Unary) => {
            drop_call(data, token);
            Status::Ok as i32
        }
        None if data.http_calls.iter().any(|c| c.token == token && c.grpc == Some(GrpcKind::Stream)) => Status::Ok as i32,
        None => match drop_call(data, token) {
            Some(_) => Status::Ok as i32,
            None => Status::NotFound as i32,
        },
    }
}

/// The gRPC status of the call being closed (proxy_on_grpc_close), with its grpc-message;
/// elsewhere OK and no message.
pub(crate) fn proxy_get_status(mut env: FunctionEnvMut<HostEnv>, code_ptr: i32, msg_ptr: i32, msg_size: i32) -> i32 {
    let (code, message) = env.data().call.grpc_status.clone().unwrap_or((0, Vec::new()));
    if let Err(s) = write_u32(&env, code_ptr, code) {
        return s as i32;
    }
    if message.is_empty() {
        // A null pointer: the SDKs read "no message".
        let r = write_u32(&env, msg_ptr, 0).and_then(|_| write_u32(&env, msg_size, 0));
        return super::status(r);
    }
    return_bytes(&mut env, &message, msg_ptr, msg_size) as i32
}
