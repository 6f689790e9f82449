//! Bounds-checked access to a plugin's linear memory from hostcalls, and returning host data
//! into guest memory through the plugin's allocator (`proxy_on_memory_allocate` or `malloc`).

use wasmer::{AsStoreMut, FunctionEnvMut, MemoryView};

use crate::abi::Status;
use crate::env::HostEnv;

/// Pointers and sizes arrive as i32 but are unsigned in the ABI.
#[inline]
pub(crate) fn u(v: i32) -> u64 {
    v as u32 as u64
}

fn view<'a>(env: &'a FunctionEnvMut<HostEnv>) -> Result<MemoryView<'a>, Status> {
    let mem = env.data().memory.as_ref().ok_or(Status::InternalFailure)?;
    Ok(mem.view(env))
}

/// Copies `len` bytes at `ptr` into `out` (cleared first). INVALID_MEMORY_ACCESS when the range
/// is outside the memory, so a wild pointer is a status, never a trap or a host crash.
pub(crate) fn read_into(env: &FunctionEnvMut<HostEnv>, ptr: i32, len: i32, out: &mut Vec<u8>) -> Result<(), Status> {
    let v = view(env)?;
    let (start, len) = (u(ptr), u(len));
    let end = start.checked_add(len).ok_or(Status::InvalidMemoryAccess)?;
    if end > v.data_size() {
        return Err(Status::InvalidMemoryAccess);
    }
    out.clear();
    out.resize(len as usize, 0);
    v.read(start, out).map_err(|_| Status::InvalidMemoryAccess)
}

/// Checks that `len` bytes at `ptr` lie inside the memory, and appends at most `max` of them
/// to `out`: for data the host only keeps a bounded prefix of (log messages).
pub(crate) fn read_prefix(env: &FunctionEnvMut<HostEnv>, ptr: i32, len: i32, max: usize, out: &mut Vec<u8>) -> Result<(), Status> {
    let v = view(env)?;
    let (start, len) = (u(ptr), u(len));
    let end = start.checked_add(len).ok_or(Status::InvalidMemoryAccess)?;
    if end > v.data_size() {
        return Err(Status::InvalidMemoryAccess);
    }
    let take = (len as usize).min(max);
    let at = out.len();
    out.resize(at + take, 0);
    v.read(start, &mut out[at..]).map_err(|_| Status::InvalidMemoryAccess)
}

pub(crate) fn read(env: &FunctionEnvMut<HostEnv>, ptr: i32, len: i32) -> Result<Vec<u8>, Status> {
    let mut out = Vec::new();
    read_into(env, ptr, len, &mut out)?;
    Ok(out)
}

pub(crate) fn write(env: &FunctionEnvMut<HostEnv>, ptr: i32, data: &[u8]) -> Result<(), Status> {
    let v = view(env)?;
    v.write(u(ptr), data).map_err(|_| Status::InvalidMemoryAccess)
}

pub(crate) fn write_u32(env: &FunctionEnvMut<HostEnv>, ptr: i32, value: u32) -> Result<(), Status> {
    write(env, ptr, &value.to_le_bytes())
}

pub(crate) fn write_u64(env: &FunctionEnvMut<HostEnv>, ptr: i32, value: u64) -> Result<(), Status> {
    write(env, ptr, &value.to_le_bytes())
}

/// Hands `data` to the plugin: allocates in guest memory, copies, and stores the pointer and
/// size in the two return slots. The return slots are checked before anything is allocated.
pub(crate) fn return_bytes(env: &mut FunctionEnvMut<HostEnv>, data: &[u8], ret_ptr: i32, ret_size: i32) -> Status {
    match return_bytes_inner(env, data, ret_ptr, ret_size) {
        Ok(()) => Status::Ok,
        Err(s) => s,
    }
}

fn return_bytes_inner(env: &mut FunctionEnvMut<HostEnv>, data: &[u8], ret_ptr: i32, ret_size: i32) -> Result<(), Status> {
    {
        let v = view(env)?;
        for p in [ret_ptr, ret_size] {
            if u(p) + 4 > v.data_size() {
                return Err(Status::InvalidMemoryAccess);
            }
        }
    }
    let len = i32::try_from(data.len()).map_err(|_| Status::InternalFailure)?;
    if env.data().call.in_allocator {
        // The allocator made a hostcall that returns data: allocating again would re-enter
        // it, without bound. That hostcall fails instead.
        env.data_mut().log(crate::abi::LogLevel::Warn, b"a hostcall made from the plugin's allocator cannot return data: INTERNAL_FAILURE");
        return Err(Status::InternalFailure);
    }
    let alloc = env.data().alloc.clone().ok_or(Status::InternalFailure)?;
    env.data_mut().call.in_allocator = true;
    let addr = alloc.call(&mut env.as_store_mut(), len);
    env.data_mut().call.in_allocator = false;
    let addr = addr.map_err(|_| Status::InternalFailure)?;
    if addr == 0 && len != 0 {
        return Err(Status::InternalFailure);
    }
    write(env, addr, data)?;
    write_u32(env, ret_ptr, addr as u32)?;
    write_u32(env, ret_size, len as u32)?;
    Ok(())
}
