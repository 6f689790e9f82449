//! HTTP-call actions of the testbed filter (proxy_http_call).
//!
//! A call SPEC is `UPSTREAM PATH [method=M] [body=B] [timeout=MS] [authority=A]
//! [scheme=https] [h=name:value]...` (space-separated); PATH or M `-` leaves :path or
//! :method out.
//!   call=SPEC            from on_http_request_headers (several run concurrently), then Pause
//!   body_call=SPEC       from on_http_request_body at end of stream, then Pause
//!   call_resume          resume_http_request() from every call response
//!   call_deny=STATUS     a call answered other than 200 (or failed) answers STATUS
//!   call_to_header=NAME  sets request header NAME to "<status>:<body>" of each response
//!   call_chain=SPEC      from the first call response, dispatch SPEC (once)
//!   call_retry           from every failed call response, dispatch the `call` specs again
//!                        (forever: a retry storm)
//!   call_forever         from every call response, dispatch the `call` specs again
//!   call_then_local=S:B  dispatches the calls, then answers S with body B in the same callback
//!   resp_call=SPEC       from on_http_response_headers (several run concurrently), then
//!                        Pause: the response waits for them
//!   body_resp_call=SPEC  from on_http_response_body at end of stream, then Pause
//!   call_to_resp_header=NAME  adds response header NAME = "<status>:<body>" of each response
//!   call_resume_response resume_http_response() from every call response
//!   tick_call=SPEC       (root) dispatches from on_tick
//!   configure_call=SPEC  (root) dispatches from on_configure
//!   root_call_retry      (root) from every failed root call response, dispatch the
//!                        tick_call / configure_call specs again (forever)
//! Each response logs `call response token=T status=S headers=N body=B` (or `root call
//! response ...`), with S = NONE for a failed call; hdr=<x-call-echo value> if present, and
//! size=<body size> last.

use std::time::Duration;

use proxy_wasm::traits::Context;
use proxy_wasm::types::Status;

pub struct Spec {
    upstream: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    timeout: Duration,
}

pub fn parse(spec: &str) -> Spec {
    let mut words = spec.split_whitespace();
    let upstream = words.next().unwrap_or("").to_string();
    let path = words.next().unwrap_or("/").to_string();
    let mut method = "GET".to_string();
    let mut authority = upstream.clone();
    let mut extra = Vec::new();
    let mut body = None;
    let mut timeout = Duration::from_millis(5000);
    let mut scheme = None;
    for w in words {
        let (k, v) = w.split_once('=').unwrap_or((w, ""));
        match k {
            "method" => method = v.to_string(),
            "body" => body = Some(v.to_string()),
            "timeout" => timeout = Duration::from_millis(v.parse().unwrap_or(5000)),
            "authority" => authority = v.to_string(),
            "scheme" => scheme = Some(v.to_string()),
            "h" => {
                let (n, val) = v.split_once(':').unwrap_or((v, ""));
                extra.push((n.to_string(), val.to_string()));
            }
            _ => {}
        }
    }
    // `-` leaves the pseudo-header out (the native path refuses that call; the Lua path sends
    // GET and /, as api7's module does).
    let mut headers: Vec<(String, String)> =
        [(":method", method), (":path", path)].into_iter().filter(|(_, v)| v != "-").map(|(k, v)| (k.to_string(), v)).collect();
    headers.push((":authority".to_string(), authority));
    if let Some(s) = scheme {
        headers.push((":scheme".to_string(), s));
    }
    headers.extend(extra);
    Spec { upstream, headers, body, timeout }
}

/// Dispatches `spec`; logs and returns the status on failure.
pub fn dispatch(ctx: &dyn Context, spec: &str, who: &str) -> Result<u32, Status> {
    let s = parse(spec);
    let headers: Vec<(&str, &str)> = s.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = ctx.dispatch_http_call(&s.upstream, headers, s.body.as_deref().map(str::as_bytes), vec![], s.timeout);
    match &r {
        Ok(token) => log::info!("{who} dispatched call token={token} to {}", s.upstream),
        Err(e) => log::warn!("{who} call dispatch failed: {e:?}"),
    }
    r
}

/// Reads and logs a call response; returns (status, body).
pub fn log_response(ctx: &dyn Context, who: &str, token: u32, num_headers: usize, body_size: usize) -> (Option<String>, String) {
    let headers = ctx.get_http_call_response_headers();
    let status = headers.iter().find(|(k, _)| k == ":status").map(|(_, v)| v.clone());
    let echo = headers.iter().find(|(k, _)| k == "x-call-echo").map(|(_, v)| v.clone());
    let body = ctx
        .get_http_call_response_body(0, body_size)
        .map(|b| String::from_utf8_lossy(&b).trim_end().chars().take(60).collect::<String>())
        .unwrap_or_default();
    log::warn!(
        "{who} call response token={token} status={} headers={num_headers} body={body}{} size={body_size}",
        status.as_deref().unwrap_or("NONE"),
        echo.map(|e| format!(" hdr={e}")).unwrap_or_default()
    );
    (status, body)
}
