//! The L4 subsystem (nginx's `stream {}`): Proxy-Wasm network filters over a stream session.
//! The session's stream for the host core, the per-session chain state and its runner, the
//! preread handler (on_new_connection), the data filter in nginx's stream filter chain (both
//! directions), and the log handler (close callbacks, then on_done, on_log, on_delete).

pub(crate) mod chain;
pub(crate) mod conn;
pub(crate) mod filter;
pub(crate) mod phases;
mod properties;
pub(crate) mod session;
