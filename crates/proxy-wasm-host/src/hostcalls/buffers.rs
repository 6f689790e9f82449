//! proxy_get_buffer_bytes, proxy_get_buffer_status, proxy_get_configuration (0.1.0).
//! This version serves the VM and plugin configuration buffers; body, call-response, gRPC and
//! foreign-function buffers return UNIMPLEMENTED (listed in the README matrix).

use wasmer::FunctionEnvMut;

use crate::abi::{BufferType, Status};
use crate::env::{Callback, HostEnv};
use crate::memory::{return_bytes, u, write_u32};

/// The bytes of a configuration buffer, or the status to return.
fn config_buffer(env: &HostEnv, ty: i32) -> Result<Vec<u8>, Status> {
    match BufferType::from_i32(ty) {
        None => Err(Status::BadArgument),
        Some(BufferType::VmConfiguration) => Ok(env.vm_config.clone()),
        Some(BufferType::PluginConfiguration) => {
            env.root_of_current().map(|r| r.config.clone()).ok_or(Status::NotFound)
        }
        Some(_) => Err(Status::Unimplemented),
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
    let buf = match config_buffer(env.data(), ty) {
        Ok(b) => b,
        Err(s) => return s as i32,
    };
    // start and max_size are unsigned; the Rust SDK passes u32::MAX for "to the end".
    let start = u(start) as usize;
    if start > buf.len() {
        return Status::BadArgument as i32;
    }
    let end = start.saturating_add(u(max_size) as usize).min(buf.len());
    return_bytes(&mut env, &buf[start..end], ret_ptr, ret_size) as i32
}

pub(crate) fn proxy_get_buffer_status(env: FunctionEnvMut<HostEnv>, ty: i32, ret_len: i32, ret_flags: i32) -> i32 {
    let buf = match config_buffer(env.data(), ty) {
        Ok(b) => b,
        Err(s) => return s as i32,
    };
    let r = write_u32(&env, ret_len, buf.len() as u32).and_then(|_| write_u32(&env, ret_flags, 0));
    super::status(r)
}

/// 0.1.0: the VM configuration during on_vm_start, else the plugin configuration.
pub(crate) fn proxy_get_configuration(mut env: FunctionEnvMut<HostEnv>, ret_ptr: i32, ret_size: i32) -> i32 {
    let ty = if env.data().call.callback == Callback::VmStart {
        BufferType::VmConfiguration
    } else {
        BufferType::PluginConfiguration
    };
    let buf = match config_buffer(env.data(), ty as i32) {
        Ok(b) => b,
        Err(s) => return s as i32,
    };
    return_bytes(&mut env, &buf, ret_ptr, ret_size) as i32
}
