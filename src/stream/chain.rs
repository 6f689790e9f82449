//! The stream chain runner: one callback of one filter (`step`), and the walks every hook
//! uses: the new connection (`run_new_connection`), one chunk of data in either direction
//! (`run_data`), and the end of the session (`finish`).

use ngx::ffi::*;
use proxy_wasm_host::abi::{BufferType, PeerType};
use proxy_wasm_host::{HostError, Outcome, PluginInstance, StreamOps};

use super::conn::NgxConn;
use super::session::{Dir, FilterCtx, SessionCtx};
use crate::util::chunk::Chunk;
use crate::vm::filter::{self, Policy, Verdict};
use crate::vm::worker::WORKER;

/// The result of running one callback over (part of) the chain.
pub(crate) enum ChainResult {
    Continue,
    /// The filter returned Pause.
    Paused,
    /// A filter called proxy_close_stream: end the session.
    Closed,
    /// A filter failed (trap or missing instance) and the policy is closed.
    Failed,
}

pub(crate) unsafe fn log_at(s: *mut ngx_stream_session_t, level: u32, label: &str, msg: &str) {
    crate::util::log::write((*(*s).connection).log, level as ngx_uint_t, label, msg.as_bytes());
}

/// Runs one callback of filter `i`. `f` gets the instance, the context id, the filter's
/// state, and the stream to hand the host core; it returns None when the module does not
/// export the callback. `dir`: the direction whose data the callback sees (its own
/// proxy_continue_stream undoes its Pause; one of the other direction releases that
/// direction's held data, see filter.rs).
unsafe fn step(
    s: *mut ngx_stream_session_t,
    ctx: &mut SessionCtx,
    i: usize,
    dir: Option<Dir>,
    f: &mut dyn FnMut(&mut PluginInstance, u32, &mut FilterCtx, NgxConn<'_>) -> Option<Result<Outcome, HostError>>,
) -> ChainResult {
    let policy = Policy { fail_open: ctx.failure_status == 0, consequence: "closing the connection" };
    WORKER.with(|w| {
        let mut w = w.borrow_mut();
        let Some(w) = w.as_mut() else { return ChainResult::Failed };
        let fc = &mut ctx.filters[i];
        let (mi, label, inst) = filter::running(w, fc.filter, fc.generation, fc.ctx_id);
        let mut log = |level: u32, msg: &str| log_at(s, level, &label, msg);
        let Some((id, inst)) = inst else {
            return chain_result(filter::not_running(&policy, &mut log));
        };
        let conn = NgxConn::new(s, &label, &mut ctx.properties);
        let res = f(inst, id, fc, conn);
        w.after_root_callback(mi);
        match &res {
            Some(Ok(o)) => {
                ctx.resume[Dir::Downstream as usize] |= o.ops.continue_downstream && dir != Some(Dir::Downstream);
                ctx.resume[Dir::Upstream as usize] |= o.ops.continue_upstream && dir != Some(Dir::Upstream);
            }
            Some(Err(_)) => {
                fc.ctx_id = None;
                fc.held = Default::default();
            }
            None => {}
        }
        let own = |ops: &StreamOps| match dir {
            Some(Dir::Downstream) => ops.continue_downstream,
            Some(Dir::Upstream) => ops.continue_upstream,
            None => false,
        };
        chain_result(filter::judge(w, mi, res, &policy, own, &mut log))
    })
}

fn chain_result(v: Verdict) -> ChainResult {
    match v {
        Verdict::Continue | Verdict::Answered(_) => ChainResult::Continue,
        Verdict::Paused => ChainResult::Paused,
        Verdict::Closed => ChainResult::Closed,
        Verdict::Failed => ChainResult::Failed,
    }
}

/// on_new_connection over the chain, in configuration order. A Pause has nothing to wait
/// for here (no HTTP calls from stream filters): the chain goes on, with a warning.
pub(crate) unsafe fn run_new_connection(s: *mut ngx_stream_session_t, ctx: &mut SessionCtx) -> ChainResult {
    for i in 0..ctx.filters.len() {
        let res = step(s, ctx, i, None, &mut |inst, id, _, mut conn| Some(inst.on_new_connection(id, &mut conn)));
        match res {
            ChainResult::Continue => {}
            ChainResult::Paused => log_at(
                s,
                NGX_LOG_WARN,
                "chain",
                "on_new_connection returned Pause: the stream module has nothing to wait for (no HTTP calls); continuing",
            ),
            other => return other,
        }
    }
    ChainResult::Continue
}

/// How a walk over the data callbacks ended.
pub(crate) enum DataEnd {
    /// Every filter passed: this data goes on.
    Done(Chunk),
    /// A filter holds the bytes (it paused before the end of the stream).
    Held,
    /// A filter holds more than proxy_wasm_buffer_limit (logged).
    OverLimit,
    /// A filter closed the session or failed.
    Stopped,
}

/// Runs the data callbacks of direction `dir` over `data`, filters `from..` in configuration
/// order: each filter gets what it holds plus what the one before passed, and passes it all
/// on unless it pauses. A pause at the end of the stream has nothing left to wait for: the
/// bytes go on. A continue of this direction asked for in these callbacks is their own.
pub(crate) unsafe fn run_data(
    s: *mut ngx_stream_session_t,
    ctx: &mut SessionCtx,
    dir: Dir,
    mut data: Chunk,
    eos: bool,
    from: usize,
) -> DataEnd {
    let d = dir as usize;
    let (buffer, upstream) = match dir {
        Dir::Downstream => (BufferType::DownstreamData, false),
        Dir::Upstream => (BufferType::UpstreamData, true),
    };
    let limit = ctx.buffer_limit;
    for i in from..ctx.filters.len() {
        let wanted = match dir {
            Dir::Downstream => ctx.filters[i].exports.downstream_data,
            Dir::Upstream => ctx.filters[i].exports.upstream_data,
        };
        if !wanted {
            continue;
        }
        let mut incoming = std::mem::take(&mut data);
        if !ctx.filters[i].held[d].is_empty() {
            let Ok(mut more) = incoming.into_bytes() else { return unreadable(s) };
            ctx.filters[i].held[d].append(&mut more);
            incoming = Chunk::default();
        }
        let res = step(s, ctx, i, Some(dir), &mut |inst, id, fc, conn| {
            let held = &mut fc.held[d];
            if held.is_empty() {
                let size = incoming.len();
                let mut conn = conn.with_chunk(buffer, &mut incoming);
                return Some(inst.on_stream_data(upstream, id, &mut conn, size, eos));
            }
            let size = held.len();
            let mut conn = conn.with_held(buffer, held);
            Some(inst.on_stream_data(upstream, id, &mut conn, size, eos))
        });
        match res {
            ChainResult::Continue => {}
            ChainResult::Paused if eos => {}
            ChainResult::Paused => {
                if !incoming.is_empty() {
                    // Held: the bytes must outlive nginx's buffers.
                    let Ok(bytes) = incoming.into_bytes() else { return unreadable(s) };
                    ctx.filters[i].held[d] = bytes;
                }
                if ctx.filters[i].held[d].len() > limit {
                    log_at(s, NGX_LOG_ERR, "chain", &format!(
                        "a filter held more than proxy_wasm_buffer_limit ({limit} bytes) of {} data; closing the connection",
                        dir.name()
                    ));
                    return DataEnd::OverLimit;
                }
                return DataEnd::Held;
            }
            _ => return DataEnd::Stopped,
        }
        let held = &mut ctx.filters[i].held[d];
        data = if held.is_empty() { incoming } else { Chunk::from_bytes(std::mem::take(held)) };
    }
    DataEnd::Done(data)
}

/// The data of direction `dir` held by the first filter holding any, released by a
/// proxy_continue_stream from a callback of the other direction: it goes through the filters
/// after that one. None when no filter holds data there.
pub(crate) unsafe fn release(s: *mut ngx_stream_session_t, ctx: &mut SessionCtx, dir: Dir) -> Option<DataEnd> {
    let d = dir as usize;
    ctx.resume[d] = false;
    let i = ctx.filters.iter().position(|f| !f.held[d].is_empty())?;
    let bytes = std::mem::take(&mut ctx.filters[i].held[d]);
    log_at(s, NGX_LOG_INFO, "chain", &format!(
        "proxy_continue_stream: {} bytes of held {} data go on",
        bytes.len(),
        dir.name()
    ));
    Some(run_data(s, ctx, dir, Chunk::from_bytes(bytes), false, i + 1))
}

unsafe fn unreadable(s: *mut ngx_stream_session_t) -> DataEnd {
    log_at(s, NGX_LOG_ERR, "chain", "cannot read the data chunk");
    DataEnd::Stopped
}

/// The end of the session (its log phase): the close callbacks, with which side closed
/// first, then on_done + on_log, then on_delete, for every live filter.
pub(crate) unsafe fn finish(s: *mut ngx_stream_session_t, ctx: &mut SessionCtx) {
    if ctx.finished {
        return;
    }
    let peer = |eof: bool| if eof { PeerType::Remote } else { PeerType::Local };
    let (down, up) = (peer(ctx.eof[Dir::Downstream as usize]), peer(ctx.eof[Dir::Upstream as usize]));
    let u = (*s).upstream;
    let had_upstream = !u.is_null() && (*u).connected() != 0;
    // Failures here are logged; the session ends either way.
    for i in 0..ctx.filters.len() {
        if ctx.filters[i].ctx_id.is_none() {
            continue;
        }
        let _ = step(s, ctx, i, None, &mut |inst, id, _, mut conn| {
            let r = inst.on_connection_close(false, id, &mut conn, down);
            let r = r.and_then(|_| if had_upstream { inst.on_connection_close(true, id, &mut conn, up) } else { Ok(()) });
            Some(r.and_then(|_| inst.on_done_and_log(id, &mut conn)).map(|_| Outcome::CONTINUE))
        });
    }
    delete_all(ctx);
}

/// on_delete for every live context; no session access needed (runs from pool cleanup too).
pub(super) fn delete_all(ctx: &mut SessionCtx) {
    ctx.finished = true;
    filter::delete_contexts(ctx.filters.iter_mut().map(|fc| (fc.filter, fc.generation, &mut fc.ctx_id)));
}
