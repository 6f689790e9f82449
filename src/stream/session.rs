//! The per-session state of a server's filter chain: one context per filter, what each holds
//! paused in each direction, and the output buffers of each direction. Owned by a cleanup of
//! the connection's pool, so that the contexts are deleted however the session ends.

use std::ffi::c_void;

use ngx::ffi::*;
use proxy_wasm_host::instance::Exports;

use crate::conf::LocConf;
use crate::util::buf::Recycled;
use crate::vm::worker::WORKER;

/// The two directions of a session, as nginx's stream filters name them (`from_upstream`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Dir {
    /// From the client to the upstream: on_downstream_data, DOWNSTREAM_DATA.
    Downstream = 0,
    /// From the upstream (or a content handler such as `return`) to the client.
    Upstream = 1,
}

impl Dir {
    pub fn from_upstream(from_upstream: ngx_uint_t) -> Dir {
        if from_upstream != 0 {
            Dir::Upstream
        } else {
            Dir::Downstream
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dir::Downstream => "downstream",
            Dir::Upstream => "upstream",
        }
    }
}

pub(crate) struct FilterCtx {
    pub filter: usize,
    /// The instance generation the context was created in.
    pub generation: u64,
    /// The stream context id; None once the filter failed or could not start.
    pub ctx_id: Option<u32>,
    pub exports: Exports,
    /// Bytes this filter holds paused, per direction (indexed by `Dir`).
    pub held: [Vec<u8>; 2],
}

#[derive(Default)]
pub(crate) struct SessionCtx {
    pub filters: Vec<FilterCtx>,
    /// Some filter has the data callback of that direction.
    pub wanted: [bool; 2],
    /// The end of the stream (half-close) came from that side.
    pub eof: [bool; 2],
    /// proxy_continue_stream(DOWNSTREAM|UPSTREAM) was called for that direction: the data a
    /// filter holds there goes on (see filter.rs).
    pub resume: [bool; 2],
    /// A filter closed the session or failed it: no more callbacks but the final ones.
    pub stopped: bool,
    /// The close callbacks, on_done, on_log and on_delete ran.
    pub finished: bool,
    /// Our output buffers per direction, reused once written.
    pub out: [Recycled; 2],
    /// proxy_set_property values of this session.
    pub properties: std::collections::HashMap<Vec<u8>, Vec<u8>>,
    /// The server's failure policy: the status to end a session a filter failed with, 0 =
    /// fail open; and the most bytes a filter may hold paused per direction.
    pub failure_status: u32,
    pub buffer_limit: usize,
}

/// The server configuration of the session.
///
/// # Safety
/// `s` is a live session.
pub(crate) unsafe fn srv_conf(s: *mut ngx_stream_session_t) -> Option<&'static LocConf> {
    let p = *(*s).srv_conf.add((*crate::conf::module_ptr()).ctx_index) as *const LocConf;
    p.as_ref()
}

unsafe fn ctx_slot(s: *mut ngx_stream_session_t) -> *mut *mut c_void {
    (*s).ctx.add((*crate::conf::module_ptr()).ctx_index)
}

unsafe extern "C" fn cleanup(data: *mut c_void) {
    crate::util::guard("stream session cleanup", (), || {
        // SAFETY: data is the Box leaked in `get_or_create`, freed exactly once here.
        let mut ctx = Box::from_raw(data as *mut SessionCtx);
        if !ctx.finished {
            super::chain::delete_all(&mut ctx);
        }
    })
}

/// The session's chain state, if it has one.
///
/// # Safety
/// `s` is a live session.
pub(crate) unsafe fn get(s: *mut ngx_stream_session_t) -> Option<&'static mut SessionCtx> {
    let p = *ctx_slot(s);
    (p as *mut SessionCtx).as_mut()
}

/// The chain state of a session whose server has filters, created with one stream context
/// per filter.
///
/// # Safety
/// `s` is a live session.
pub(crate) unsafe fn get_or_create(s: *mut ngx_stream_session_t) -> Option<&'static mut SessionCtx> {
    if let Some(c) = get(s) {
        return Some(c);
    }
    let scf = srv_conf(s)?;
    let filters = scf.filters.as_ref().filter(|f| !f.is_empty())?;
    let cln = ngx_pool_cleanup_add((*(*s).connection).pool, 0);
    if cln.is_null() {
        return None;
    }
    let mut ctx = Box::new(SessionCtx {
        failure_status: scf.failure_status.unwrap_or(500),
        buffer_limit: scf.body_buffer_limit.unwrap_or(crate::conf::DEFAULT_STREAM_BUFFER_LIMIT),
        ..Default::default()
    });
    // No HTTP calls here (the stream module sends none): nothing for flush_root_calls.
    WORKER.with(|w| {
        let mut w = w.borrow_mut();
        for &fi in filters {
            let mut fc = FilterCtx { filter: fi, generation: 0, ctx_id: None, exports: Exports::default(), held: Default::default() };
            if let Some(w) = w.as_mut() {
                let log = &mut |label: &str, e: &proxy_wasm_host::HostError| {
                    super::chain::log_at(s, NGX_LOG_ERR, label, &format!("{e}; failing the connection"))
                };
                let c = crate::vm::filter::create_context(w, fi, log);
                (fc.generation, fc.ctx_id, fc.exports) = (c.generation, c.ctx_id, c.exports);
            }
            ctx.wanted[Dir::Downstream as usize] |= fc.exports.downstream_data;
            ctx.wanted[Dir::Upstream as usize] |= fc.exports.upstream_data;
            ctx.filters.push(fc);
        }
    });
    let raw = Box::into_raw(ctx);
    (*cln).handler = Some(cleanup);
    (*cln).data = raw as *mut c_void;
    *ctx_slot(s) = raw as *mut c_void;
    Some(&mut *raw)
}
