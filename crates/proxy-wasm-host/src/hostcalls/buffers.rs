//! proxy_get_buffer_bytes, proxy_set_buffer_bytes, proxy_get_buffer_status,
//! proxy_get_configuration (0.1.0).
//! Served: the VM and plugin configuration, the request and response bodies inside the
//! body callbacks and an L4 connection's data inside the data callbacks (through the stream), and the HTTP-call response body inside
//! on_http_call_response and the gRPC message inside the gRPC callbacks (read-only).
//! Foreign-function buffers return UNIMPLEMENTED (listed in the README matrix).

use wasmer::FunctionEnvMut;

use crate::abi::{BufferType, Status};
use crate::env::{Callback, HostEnv};
use crate::memory::{read, return_bytes, return_with, u, write_u32, write_with};

pub use crate::limits::MAX_BODY_BUFFER;

/// Buffers the embedder's stream holds: the HTTP bodies, and an L4 connection's data.
fn is_body(ty: BufferType) -> bool {
    matches!(
        ty,
        BufferType::HttpRequestBody | BufferType::HttpResponseBody | BufferType::DownstreamData | BufferType::UpstreamData
    )
}

/// Runs `f` on the bytes of a buffer the host holds, or returns the status that says why
/// not. The bodies are the embedder's: `buffer_len` and `read_buffer` serve them.
fn with_buffer<R>(env: &mut HostEnv, ty: i32, f: impl FnOnce(&[u8]) -> R) -> Result<R, Status> {
    match BufferType::from_i32(ty) {
        None => Err(Status::BadArgument),
        Some(BufferType::VmConfiguration) => Ok(f(&env.vm_config)),
        Some(BufferType::PluginConfiguration) => env.root_of_current().map(|r| f(&r.config)).ok_or(Status::NotFound),
        Some(BufferType::HttpCallResponseBody) if env.call.callback == Callback::HttpCallResponse => {
            env.http_response().map(|r| f(&r.body)).ok_or(Status::NotFound)
        }
        Some(BufferType::GrpcCallMessage) if env.call.callback.is_grpc() => {
            env.http_response().map(|r| f(&r.body)).ok_or(Status::NotFound)
        }
        Some(BufferType::HttpCallResponseBody | BufferType::GrpcCallMessage) => Err(Status::NotFound),
        Some(_) => Err(Status::Unimplemented),
    }
}

/// The size of buffer `ty`; a body is not read for it (the embedder may not have copied it).
fn buffer_len(env: &mut HostEnv, ty: i32) -> Result<usize, Status> {
    match BufferType::from_i32(ty) {
        Some(t) if is_body(t) => env.stream().ok_or(Status::NotFound)?.body_size(t).ok_or(Status::NotFound),
        _ => with_buffer(env, ty, |b| b.len()),
    }
}

/// Hands bytes `start..end` of buffer `ty` to `put`: a body piece by piece from where the
/// embedder holds it (no copy in between), any other buffer in one piece.
fn read_buffer(
    env: &mut HostEnv,
    ty: i32,
    start: usize,
    end: usize,
    put: &mut dyn FnMut(&[u8]) -> Result<(), Status>,
) -> Result<(), Status> {
    match BufferType::from_i32(ty) {
        Some(t) if is_body(t) => env.stream().ok_or(Status::NotFound)?.body_read(t, start, end, put).ok_or(Status::NotFound)?,
        _ => with_buffer(env, ty, |b| b.get(start..end).map_or(Err(Status::InternalFailure), put))?,
    }
}

pub(crate) fn proxy_get_buffer_bytes(
    mut env: FunctionEnvMut<HostEnv>,
    ty: i32,
    start: i32,
    max_size: i32,
    ret_ptr: i32,
    ret_size: i32,
) -> i32 {
    // start and max_size are unsigned; the Rust SDK passes u32::MAX for "to the end".
    let (start, max) = (u(start) as usize, u(max_size) as usize);
    // api7's answers for the bodies it serves (the configuration is not checked there).
    let api7 = env.data().api7
        && BufferType::from_i32(ty).is_some_and(|t| is_body(t) || t == BufferType::HttpCallResponseBody);
    // Only the size here: a body is not read (copied out of the embedder) to check a range.
    let range = buffer_len(env.data_mut(), ty).and_then(|len| {
        if api7 && len == 0 {
            return Err(Status::NotFound);
        }
        if start > len || (api7 && (start == len || max == 0)) {
            return Err(Status::BadArgument);
        }
        Ok((start, start.saturating_add(max).min(len)))
    });
    let (start, end) = match range {
        Ok(r) => r,
        Err(s) => return s as i32,
    };
    // Copied straight from where the bytes are (a body may still be the embedder's) into the
    // room the plugin's allocator made; fetched again after it, as it ran guest code.
    let r = return_with(&mut env, end - start, ret_ptr, ret_size, |env, addr| {
        write_with(env, addr, end - start, |data, put| read_buffer(data, ty, start, end, put))
    });
    super::status(r)
}

/// Replaces `size` bytes at `start` with the given data: start 0 and size 0 prepends, a
/// start at or past the end appends, size covering the rest replaces it (Envoy's rules,
/// extended to any range inside the buffer).
pub(crate) fn proxy_set_buffer_bytes(
    mut env: FunctionEnvMut<HostEnv>,
    ty: i32,
    start: i32,
    size: i32,
    data: i32,
    data_len: i32,
) -> i32 {
    let Some(t) = BufferType::from_i32(ty) else { return Status::BadArgument as i32 };
    if !is_body(t) {
        return if matches!(
            t,
            BufferType::VmConfiguration | BufferType::PluginConfiguration | BufferType::HttpCallResponseBody | BufferType::GrpcCallMessage
        ) {
            Status::BadArgument as i32
        } else {
            Status::Unimplemented as i32
        };
    }
    let bytes = match read(&env, data, data_len) {
        Ok(b) => b,
        Err(s) => return s as i32,
    };
    let Some(stream) = env.data_mut().stream() else { return Status::NotFound as i32 };
    let Some(body) = stream.body(t) else { return Status::NotFound as i32 };
    let start = (u(start) as usize).min(body.len());
    let end = start.saturating_add(u(size) as usize).min(body.len());
    if body.len() - (end - start) + bytes.len() > MAX_BODY_BUFFER {
        return Status::BadArgument as i32;
    }
    if start == 0 && end == body.len() {
        // The whole body replaced (the usual rewrite): the new bytes move in, no copy.
        *body = bytes;
    } else {
        body.splice(start..end, bytes);
    }
    Status::Ok as i32
}

pub(crate) fn proxy_get_buffer_status(mut env: FunctionEnvMut<HostEnv>, ty: i32, ret_len: i32, ret_flags: i32) -> i32 {
    let len = match buffer_len(env.data_mut(), ty) {
        Ok(n) => n,
        Err(s) => return s as i32,
    };
    // Flag 1 (end of stream) is set for body buffers by the embedder's callback arguments;
    // the buffer status reports the size only.
    let r = write_u32(&env, ret_len, len as u32).and_then(|_| write_u32(&env, ret_flags, 0));
    super::status(r)
}

/// 0.1.0: the VM configuration during on_vm_start, else the plugin configuration.
pub(crate) fn proxy_get_configuration(mut env: FunctionEnvMut<HostEnv>, ret_ptr: i32, ret_size: i32) -> i32 {
    let ty = if env.data().call.callback == Callback::VmStart {
        BufferType::VmConfiguration
    } else {
        BufferType::PluginConfiguration
    };
    match with_buffer(env.data_mut(), ty as i32, |b| b.to_vec()) {
        Ok(bytes) => return_bytes(&mut env, &bytes, ret_ptr, ret_size) as i32,
        Err(s) => s as i32,
    }
}
