//! HTTP and gRPC calls (proxy_http_call, proxy_grpc_call/stream) as nginx subrequests to a generated location. A call
//! completes through the hooks its maker hands in, so this layer knows nothing of filter
//! chains or instances.

pub(crate) mod call;
pub(crate) mod location;
mod subrequest;

pub(crate) use call::{call_of, dispatch, failures_in_a_row, Answer, Call, Hooks, Owner, Prior};
pub(crate) use subrequest::{capture_body, capture_headers};
