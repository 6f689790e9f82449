//! proxy_http_call (0.2.x) / proxy_dispatch_http_call (0.1.0): validates and records the
//! call; the embedder sends it when the callback returns.

use wasmer::FunctionEnvMut;

use super::headers::{valid_name, valid_value};
use crate::abi::{LogLevel, Status};
use crate::env::{Callback, HostEnv};
use crate::http_call::{
    call_bytes, HttpCallRequest, MAX_CALL_BODY, MAX_CALL_HEADERS, MAX_CALL_HEADER_BYTES, MAX_CALL_TIMEOUT_MS, MAX_CALL_UPSTREAM,
    MAX_PENDING_CALLS,
};
use crate::maps;
use crate::memory::{read, write_u32};

fn pairs(env: &FunctionEnvMut<HostEnv>, ptr: i32, len: i32) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Status> {
    if len as u32 as usize > MAX_CALL_HEADER_BYTES {
        return Err(Status::BadArgument);
    }
    let raw = read(env, ptr, len)?;
    let pairs = maps::deserialize(&raw)?;
    if pairs.len() > MAX_CALL_HEADERS || !pairs.iter().all(|(k, v)| valid_name(k) && valid_value(v)) {
        return Err(Status::BadArgument);
    }
    Ok(pairs.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn proxy_http_call(
    mut env: FunctionEnvMut<HostEnv>,
    upstream: i32,
    upstream_len: i32,
    headers: i32,
    headers_len: i32,
    body: i32,
    body_len: i32,
    trailers: i32,
    trailers_len: i32,
    timeout_ms: i32,
    token_ptr: i32,
) -> i32 {
    if !env.data().http_calls_offered {
        // BAD_ARGUMENT, as Envoy answers a call to a cluster it does not have: SDKs handle it
        // (the Rust SDK panics on UNIMPLEMENTED here).
        let msg = "proxy_http_call refused (BAD_ARGUMENT): the nginx stream module sends no HTTP calls (they are http subrequests; a stream session has no http request)";
        env.data_mut().log(LogLevel::Warn, msg.as_bytes());
        return Status::BadArgument as i32;
    }
    let args = [upstream, upstream_len, headers, headers_len, body, body_len, trailers, trailers_len];
    let r = build(&env, args, timeout_ms);
    let mut call = match r {
        Ok(c) => c,
        Err((s, why)) => {
            let msg = format!("proxy_http_call refused ({}): {why}", s.name());
            env.data_mut().log(LogLevel::Warn, msg.as_bytes());
            return s as i32;
        }
    };
    if let Err(why) = check_policy(&mut env, &call.upstream, "proxy_http_call", Status::BadArgument) {
        return why as i32;
    }
    let data = env.data_mut();
    let token = data.next_call_token;
    let ctx = call.context_id;
    let http = !data.roots.contains_key(&ctx);
    let contexts = &data.contexts;
    if let Err(why) = data.call_ledger.admit(token, ctx, http, call_bytes(&call), |c| contexts.contains_key(&c)) {
        let msg = format!("proxy_http_call refused (INTERNAL_FAILURE): {why}");
        data.log(LogLevel::Warn, msg.as_bytes());
        return Status::InternalFailure as i32;
    }
    data.next_call_token = data.next_call_token.wrapping_add(1).max(1);
    call.token = token;
    if let Err(s) = write_u32(&env, token_ptr, token) {
        env.data_mut().call_ledger.release(token);
        return s as i32;
    }
    env.data_mut().http_calls.push(call);
    Status::Ok as i32
}

/// Validates and reads a call: `args` are the (pointer, length) pairs of the upstream,
/// headers, body and trailers.
fn build(env: &FunctionEnvMut<HostEnv>, args: [i32; 8], timeout_ms: i32) -> Result<HttpCallRequest, (Status, &'static str)> {
    let [upstream, upstream_len, headers, headers_len, body, body_len, trailers, trailers_len] = args;
    let data = env.data();
    if !data.call.callback.may_dispatch_http_call() {
        return Err((Status::BadArgument, "not allowed in this callback"));
    }
    // api7's module (the Lua path) calls from the request phases only: OpenResty's body and
    // header filters cannot wait for a cosocket.
    if data.api7 && matches!(data.call.callback, Callback::ResponseHeaders | Callback::ResponseBody) {
        return Err((Status::BadArgument, "not allowed in the response phases on the Lua path"));
    }
    if data.http_calls.len() + data.calls_in_flight >= MAX_PENDING_CALLS {
        return Err((Status::InternalFailure, "too many calls in flight"));
    }
    if (body_len as u32 as usize) > MAX_CALL_BODY {
        return Err((Status::BadArgument, "body too large"));
    }
    if (upstream_len as u32 as usize) > MAX_CALL_UPSTREAM {
        return Err((Status::BadArgument, "upstream name too long"));
    }
    if (headers_len as u32 as usize) > MAX_CALL_HEADER_BYTES || (trailers_len as u32 as usize) > MAX_CALL_HEADER_BYTES {
        return Err((Status::BadArgument, "headers or trailers too large"));
    }
    let bad = |s: Status| (s, "unreadable or malformed argument (or too many headers)");
    let upstream = read(env, upstream, upstream_len).map_err(bad)?;
    if upstream.is_empty() || upstream.iter().any(|&b| b <= b' ' || b == b'/' || b >= 0x7f) {
        return Err((Status::BadArgument, "empty or malformed upstream"));
    }
    let headers = pairs(env, headers, headers_len).map_err(bad)?;
    let trailers = pairs(env, trailers, trailers_len).map_err(bad)?;
    let body = read(env, body, body_len).map_err(bad)?;
    // Envoy refuses a call without them; api7's module accepts it (its Lua side sends GET and
    // `/`, and prefixes a relative :path with `/`), and plugins written for APISIX rely on that.
    for required in [&b":method"[..], b":path"] {
        if !data.api7 && !headers.iter().any(|(k, v)| k.as_slice() == required && !v.is_empty()) {
            return Err((Status::BadArgument, "missing :method or :path"));
        }
    }
    // They become the request line and Host: nothing that could split them.
    for (k, v) in headers.iter().filter(|(k, _)| k.starts_with(b":")) {
        let ok = match k.as_slice() {
            b":method" => v.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)),
            _ => v.iter().all(|&b| b > b' ' && b != 0x7f),
        };
        if !ok {
            return Err((Status::BadArgument, "a pseudo-header holds a space or control byte"));
        }
    }
    Ok(HttpCallRequest {
        token: 0,
        context_id: data.call.effective_id,
        upstream,
        headers,
        body,
        trailers,
        // A plugin may not hold a call (and its subrequest) open for days.
        timeout_ms: (timeout_ms as u32).min(MAX_CALL_TIMEOUT_MS),
        grpc: None,
    })
}

/// Asks the embedder's policy about the target; a refusal is logged once per target (per
/// instance), so a plugin retrying a refused target cannot flood the log.
pub(super) fn check_policy(env: &mut FunctionEnvMut<HostEnv>, upstream: &[u8], hostcall: &str, refused: Status) -> Result<(), Status> {
    let data = env.data_mut();
    let Some(policy) = data.call_policy.as_ref() else { return Ok(()) };
    let Err(why) = policy(upstream) else { return Ok(()) };
    let (log_it, full) = data.refusals.first_time(upstream);
    if log_it {
        let msg = format!(
            "{hostcall} to \"{}\" refused ({}): {why} (logged once per target)",
            String::from_utf8_lossy(upstream),
            refused.name()
        );
        data.log(LogLevel::Error, msg.as_bytes());
    } else if full {
        let msg = format!("{hostcall}: refusals of further targets are not logged (too many distinct targets)");
        data.log(LogLevel::Error, msg.as_bytes());
    }
    Err(refused)
}
