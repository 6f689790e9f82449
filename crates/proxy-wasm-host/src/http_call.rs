//! HTTP calls a plugin dispatches (`proxy_http_call` / `proxy_dispatch_http_call`) and the
//! responses an embedder hands back. The host core only records calls and delivers
//! responses; sending them (nginx upstreams, timeouts, TLS) is the embedder's job. The
//! embedder may also install a `CallPolicy` that refuses a target at dispatch.

use std::collections::{HashMap, HashSet};

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
    /// 0 = the embedder's default; never above `MAX_CALL_TIMEOUT_MS`.
    pub timeout_ms: u32,
    /// A gRPC call (proxy_grpc_call / proxy_grpc_stream) framed as this request: its answer
    /// goes back as `grpc_call::GrpcEvent`s (`PluginInstance::on_grpc_event`).
    pub grpc: Option<crate::grpc_call::GrpcKind>,
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

/// The embedder's say on a call's target, asked at dispatch (inside proxy_http_call):
/// `Err(reason)` refuses the call with BAD_ARGUMENT, as Envoy refuses an unknown cluster.
/// Used for allow-lists and for targets that could only fail later (an unresolvable name).
pub type CallPolicy = Box<dyn Fn(&[u8]) -> Result<(), String> + Send>;

/// Calls one instance may have outstanding (dispatched and not answered) before
/// proxy_http_call says INTERNAL_FAILURE: bounds what a looping plugin can make the host hold.
pub const MAX_PENDING_CALLS: usize = 1024;
/// Largest request body of one call (BAD_ARGUMENT above).
pub const MAX_CALL_BODY: usize = 16 << 20;
/// Largest serialized header map (and, separately, trailer map) of one call, and most pairs
/// in it (BAD_ARGUMENT above): as nginx's default large_client_header_buffers allow a
/// client at most 4 x 8 KiB of request line and headers, 64 KiB is generous for a call.
pub const MAX_CALL_HEADER_BYTES: usize = 64 << 10;
pub const MAX_CALL_HEADERS: usize = 256;
/// Largest upstream name (an `upstream {}` name, host:port, or an IP literal).
pub const MAX_CALL_UPSTREAM: usize = 256;
/// Body, header, trailer and upstream bytes of all calls one instance has outstanding
/// (dispatched and not answered): INTERNAL_FAILURE above. With `MAX_PENDING_CALLS` this bounds
/// what calls in flight make the host and nginx (which copies each call's body) hold.
pub const MAX_PENDING_CALL_BYTES: usize = 64 << 20;
/// Calls, and their bytes, one HTTP context may dispatch over its life (INTERNAL_FAILURE
/// above): nginx keeps each call's subrequest in the request's memory until the request ends,
/// so a plugin chaining calls forever on one request must hit a wall.
pub const MAX_CALLS_PER_HTTP_CONTEXT: u32 = 1024;
pub const MAX_CALL_BYTES_PER_HTTP_CONTEXT: usize = 64 << 20;
/// Longest timeout a plugin may ask for (a larger one is lowered to it): a call holds its
/// nginx subrequest, and a worker that shuts down gracefully waits for it.
pub const MAX_CALL_TIMEOUT_MS: u32 = 300_000;
/// How many refused targets an instance remembers having logged ("logged once per target");
/// refusals of further targets are not logged (one line says so).
pub const MAX_LOGGED_REFUSALS: usize = 64;

/// The targets whose refusal an instance has logged (bounded by `MAX_LOGGED_REFUSALS`).
#[derive(Default)]
pub(crate) struct RefusalLog {
    seen: HashSet<Vec<u8>>,
    full_reported: bool,
}

impl RefusalLog {
    /// Whether a refusal of `target` should be logged now; the second value says the set
    /// just filled up (log that further refusals go unlogged).
    pub(crate) fn first_time(&mut self, target: &[u8]) -> (bool, bool) {
        if self.seen.contains(target) {
            return (false, false);
        }
        if self.seen.len() >= MAX_LOGGED_REFUSALS {
            let first_full = !self.full_reported;
            self.full_reported = true;
            return (false, first_full);
        }
        self.seen.insert(target.to_vec());
        (true, false)
    }
}

/// The bytes a call makes the host hold (counted against `MAX_PENDING_CALL_BYTES`).
pub(crate) fn call_bytes(c: &HttpCallRequest) -> usize {
    let pairs = |p: &[(Vec<u8>, Vec<u8>)]| p.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    c.upstream.len() + c.body.len() + pairs(&c.headers) + pairs(&c.trailers)
}

/// Per-instance accounting of outstanding calls' bytes (by token) and of what each HTTP
/// context dispatched over its life.
#[derive(Default)]
pub(crate) struct CallLedger {
    outstanding: HashMap<u32, usize>,
    outstanding_bytes: usize,
    /// HTTP context id -> (calls, bytes) dispatched so far. Entries of contexts that are gone
    /// are dropped when the map has doubled since the last sweep.
    per_context: HashMap<u32, (u32, usize)>,
    sweep_at: usize,
}

impl CallLedger {
    /// Records a call of `bytes` by `ctx` (`http`: an HTTP context, not a root), or says why
    /// not. `alive` tells whether a context still exists (for the sweep).
    pub(crate) fn admit(&mut self, token: u32, ctx: u32, http: bool, bytes: usize, alive: impl Fn(u32) -> bool) -> Result<(), &'static str> {
        if self.outstanding_bytes + bytes > MAX_PENDING_CALL_BYTES {
            return Err("too many call bytes in flight");
        }
        if http {
            if self.per_context.len() >= self.sweep_at.max(64) {
                self.per_context.retain(|&c, _| alive(c));
                self.sweep_at = self.per_context.len() * 2;
            }
            let (n, b) = self.per_context.entry(ctx).or_insert((0, 0));
            if *n >= MAX_CALLS_PER_HTTP_CONTEXT || *b + bytes > MAX_CALL_BYTES_PER_HTTP_CONTEXT {
                return Err("this request made too many calls, or too many call bytes");
            }
            *n += 1;
            *b += bytes;
        }
        self.outstanding_bytes += bytes;
        *self.outstanding.entry(token).or_insert(0) += bytes;
        Ok(())
    }

    /// `bytes` more for the outstanding call `token` (a gRPC stream's next message).
    pub(crate) fn grow(&mut self, token: u32, bytes: usize) -> Result<(), &'static str> {
        if self.outstanding_bytes + bytes > MAX_PENDING_CALL_BYTES {
            return Err("too many call bytes in flight");
        }
        self.outstanding_bytes += bytes;
        *self.outstanding.entry(token).or_insert(0) += bytes;
        Ok(())
    }

    /// The call `token` was answered or forgotten; false if it was not outstanding (told
    /// twice).
    pub(crate) fn release(&mut self, token: u32) -> bool {
        match self.outstanding.remove(&token) {
            Some(b) => {
                self.outstanding_bytes = self.outstanding_bytes.saturating_sub(b);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_bounds_bytes_in_flight_and_per_context() {
        let mut l = CallLedger::default();
        let half = MAX_PENDING_CALL_BYTES / 2;
        assert!(l.admit(1, 7, false, half, |_| true).is_ok());
        assert!(l.admit(2, 7, false, half, |_| true).is_ok());
        assert!(l.admit(3, 7, false, 1, |_| true).is_err());
        l.release(1);
        assert!(l.admit(3, 7, false, 1, |_| true).is_ok());
        l.release(2);
        l.release(3);
        l.release(3);
        assert_eq!(l.outstanding_bytes, 0);
        // An HTTP context hits its lifetime count even with every call answered.
        for t in 0..MAX_CALLS_PER_HTTP_CONTEXT {
            assert!(l.admit(t, 9, true, 10, |_| true).is_ok());
            l.release(t);
        }
        assert!(l.admit(99_999, 9, true, 10, |_| true).is_err());
        assert!(l.admit(99_999, 10, true, 10, |_| true).is_ok());
        // Contexts that are gone are swept: the map stays as small as the live contexts.
        for c in 1000..2000 {
            let _ = l.admit(c, c, true, 0, |c| c >= 1990);
        }
        assert!(l.per_context.len() <= 64 + 20, "{}", l.per_context.len());
    }

    #[test]
    fn refusal_log_is_once_per_target_and_bounded() {
        let mut log = RefusalLog::default();
        assert_eq!(log.first_time(b"a:1"), (true, false));
        assert_eq!(log.first_time(b"a:1"), (false, false));
        for i in 1..MAX_LOGGED_REFUSALS {
            assert_eq!(log.first_time(format!("h{i}").as_bytes()), (true, false));
        }
        assert_eq!(log.first_time(b"one-more"), (false, true));
        assert_eq!(log.first_time(b"and-another"), (false, false));
        assert_eq!(log.seen.len(), MAX_LOGGED_REFUSALS);
    }
}
