//! The HTTP subsystem: the host core's stream over an nginx request, the per-request chain
//! state and its one runner, and thin phase handlers and filters that map chain results to
//! nginx return codes.

pub(crate) mod access;
pub(crate) mod calls;
pub(crate) mod chain;
pub(crate) mod ctx;
pub(crate) mod local_response;
pub(crate) mod log_phase;
pub(crate) mod metrics;
pub(crate) mod properties;
pub(crate) mod request_body;
pub(crate) mod response;
pub(crate) mod response_wait;
pub(crate) mod stream;
mod headers_in;
pub(crate) mod headers_out;
mod pseudo;
