//! proxy_set_effective_context, proxy_done, proxy_call_foreign_function.

use wasmer::FunctionEnvMut;

use crate::abi::Status;
use crate::env::{Callback, HostEnv};
use crate::memory::read;

pub(crate) fn proxy_set_effective_context(mut env: FunctionEnvMut<HostEnv>, context_id: i32) -> i32 {
    let id = context_id as u32;
    let data = env.data_mut();
    if !data.contexts.contains_key(&id) {
        return Status::BadArgument as i32;
    }
    data.call.effective_id = id;
    Status::Ok as i32
}

/// Finishes a context whose `proxy_on_done` returned false (or is returning false now):
/// on_log and on_delete follow. NOT_FOUND when the effective context is not finishing.
pub(crate) fn proxy_done(mut env: FunctionEnvMut<HostEnv>) -> i32 {
    let data = env.data_mut();
    let id = data.call.effective_id;
    if data.call.callback == crate::env::Callback::Done && id == data.call.context_id {
        data.call.done_called = true;
        return Status::Ok as i32;
    }
    if data.waiting.contains(&id) {
        data.call.done_called = true;
        return Status::Ok as i32;
    }
    Status::NotFound as i32
}

/// Which stream a stream-control call names (`proxy_stream_type_t`).
#[derive(Clone, Copy)]
enum StreamType {
    Request,
    Response,
    Downstream,
    Upstream,
}

fn stream_type(ty: i32) -> Result<StreamType, Status> {
    match ty {
        0 => Ok(StreamType::Request),
        1 => Ok(StreamType::Response),
        2 => Ok(StreamType::Downstream),
        3 => Ok(StreamType::Upstream),
        _ => Err(Status::BadArgument),
    }
}

fn stream_op(env: &mut FunctionEnvMut<HostEnv>, ty: i32, close: bool) -> i32 {
    let ty = match stream_type(ty) {
        Ok(t) => t,
        Err(s) => return s as i32,
    };
    let data = env.data_mut();
    if data.stream_ref_is_none() || data.call.effective_id != data.call.context_id {
        return Status::NotFound as i32;
    }
    // An HTTP stream has no downstream/upstream sides to name, an L4 one no request or
    // response.
    let l4 = matches!(
        data.call.callback,
        Callback::NewConnection | Callback::DownstreamData | Callback::UpstreamData | Callback::DownstreamClose | Callback::UpstreamClose
    );
    let ops = &mut data.call.stream_ops;
    match (close, ty, l4) {
        (false, StreamType::Request, false) => ops.continue_request = true,
        (false, StreamType::Response, false) => ops.continue_response = true,
        (true, StreamType::Request, false) => ops.close_request = true,
        (true, StreamType::Response, false) => ops.close_response = true,
        (false, StreamType::Downstream, true) => ops.continue_downstream = true,
        (false, StreamType::Upstream, true) => ops.continue_upstream = true,
        (true, StreamType::Downstream, true) => ops.close_downstream = true,
        (true, StreamType::Upstream, true) => ops.close_upstream = true,
        _ => return Status::BadArgument as i32,
    }
    Status::Ok as i32
}

pub(crate) fn proxy_continue_stream(mut env: FunctionEnvMut<HostEnv>, ty: i32) -> i32 {
    stream_op(&mut env, ty, false)
}

pub(crate) fn proxy_close_stream(mut env: FunctionEnvMut<HostEnv>, ty: i32) -> i32 {
    stream_op(&mut env, ty, true)
}

/// ABI 0.1.0 spellings of proxy_continue_stream.
pub(crate) fn proxy_continue_request(mut env: FunctionEnvMut<HostEnv>) -> i32 {
    stream_op(&mut env, 0, false)
}

pub(crate) fn proxy_continue_response(mut env: FunctionEnvMut<HostEnv>) -> i32 {
    stream_op(&mut env, 1, false)
}

/// ABI 0.1.0: nginx chose the location before any filter ran; there is no route cache to
/// clear. OK, with no effect (documented in the README).
pub(crate) fn proxy_clear_route_cache(_env: FunctionEnvMut<HostEnv>) -> i32 {
    Status::Ok as i32
}

/// No foreign functions are offered yet: every name is NOT_FOUND (after checking the
/// arguments point into memory).
pub(crate) fn proxy_call_foreign_function(
    env: FunctionEnvMut<HostEnv>,
    name: i32,
    name_len: i32,
    args: i32,
    args_len: i32,
    _ret: i32,
    _ret_len: i32,
) -> i32 {
    if let Err(s) = read(&env, name, name_len).and_then(|_| read(&env, args, args_len)) {
        return s as i32;
    }
    Status::NotFound as i32
}

/// Sets the tick period of the effective context's root context (0 stops it). The embedder
/// applies it when the running callback returns (`PluginInstance::take_tick_changes`).
pub(crate) fn proxy_set_tick_period_milliseconds(mut env: FunctionEnvMut<HostEnv>, period: i32) -> i32 {
    let data = env.data_mut();
    let Some(&root) = data.contexts.get(&data.call.effective_id) else { return Status::BadArgument as i32 };
    // One pending change per root (the last wins): a plugin calling this in a loop must not
    // grow the list without bound.
    match data.tick_changes.iter_mut().find(|(r, _)| *r == root) {
        Some(change) => change.1 = period as u32,
        None => data.tick_changes.push((root, period as u32)),
    }
    Status::Ok as i32
}
