//! HTTP calls a plugin dispatches (`proxy_http_call` / `proxy_dispatch_http_call`) and the
//! responses an embedder hands back. The host core only records calls and delivers
//! responses; sending them (nginx upstreams, timeouts, TLS) is the embedder's job.

/// One dispatched call, as the plugin gave it. The embedder takes these after a callback
/// (`PluginInstance::take_http_calls`) and answers each exactly once with
/// `PluginInstance::on_http_call_response`, failed calls included (with no headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCallRequest {
    pub token: u32,
    /// The context that dispatched it (an HTTP context, or a root context).
    pub context_id: u32,
    /// Envoy's "cluster": an nginx `upstream {}` name, `host:port`, or an IP literal.
    pub upstream: Vec<u8>,
    /// Including the pseudo-headers `:method`, `:path`, `:authority` and maybe `:scheme`.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(Vec<u8>, Vec<u8>)>,
    pub timeout_ms: u32,
}

impl HttpCallRequest {
    /// The first value of `name` (case-insensitive).
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }
}

/// What came back. A call that failed (refused, timed out, bad upstream) has no headers at
/// all, not even `:status`, as in Envoy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpCallResponse {
    /// Including `:status`.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl HttpCallResponse {
    /// The response of a call that never got one.
    pub fn failed() -> HttpCallResponse {
        HttpCallResponse::default()
    }
}

/// Calls one instance may have outstanding before proxy_http_call says INTERNAL_FAILURE:
/// bounds what a looping plugin can make the host hold.
pub const MAX_PENDING_CALLS: usize = 1024;
/// Largest request body of one call.
pub const MAX_CALL_BODY: usize = 16 << 20;
