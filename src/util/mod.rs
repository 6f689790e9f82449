//! Helpers every layer may use; they know nothing of the module's own types.

pub(crate) mod buf;
pub(crate) mod chunk;
pub(crate) mod encode;
pub(crate) mod event;
mod guard;
pub(crate) mod list;
pub(crate) mod log;
pub(crate) mod pool;

pub(crate) use guard::guard;
