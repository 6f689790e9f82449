//! Plugin instances in nginx's processes: load-time compile and checks (before fork), one
//! instance per module per worker and its lifecycle, root contexts' ticks, calls and queue
//! polls, and the shared-memory zone.

pub(crate) mod queue_poll;
#[cfg(feature = "http")]
pub(crate) mod root_calls;
pub(crate) mod shm;
pub(crate) mod worker;
pub(crate) mod filter;
pub(crate) mod load;
pub(crate) mod process;
pub(crate) mod slot;
pub(crate) mod stats;
pub(crate) mod ticks;
