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

/// `len` bytes at `ptr` of guest memory, as a raw pointer after the bounds check.
fn range(v: &MemoryView<'_>, ptr: i32, len: usize) -> Result<*mut u8, Status> {
    range_at(v, u(ptr), len)
}

fn range_at(v: &MemoryView<'_>, start: u64, len: usize) -> Result<*mut u8, Status> {
    let len = len as u64;
    let end = start.checked_add(len).ok_or(Status::InvalidMemoryAccess)?;
    if end > v.data_size() {
        return Err(Status::InvalidMemoryAccess);
    }
    // SAFETY: start + len <= data_size, so the pointer stays inside the memory's mapping.
    Ok(unsafe { v.data_ptr().add(start as usize) })
}

/// Copies between host bytes and guest memory with a plain memcpy. wasmer's own view copies
/// with volatile 8-byte moves (a guard against other threads writing the memory), 1.7 times
/// slower on body-sized copies. Sound here because the engine refuses shared memories
/// (runtime.rs): no other thread can reach this memory, and no guest code runs (so the
/// memory cannot grow or move) between the bounds check and the copy.
fn copy_in(v: &MemoryView<'_>, ptr: i32, data: &[u8]) -> Result<(), Status> {
    copy_in_at(v, u(ptr), data)
}

fn copy_in_at(v: &MemoryView<'_>, start: u64, data: &[u8]) -> Result<(), Status> {
    let dst = range_at(v, start, data.len())?;
    // SAFETY: `dst..dst+len` is inside guest memory (checked); host bytes never overlap it.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
    Ok(())
}

fn copy_out(v: &MemoryView<'_>, ptr: i32, out: &mut [u8]) -> Result<(), Status> {
    let src = range(v, ptr, out.len())?;
    // SAFETY: as copy_in.
    unsafe { std::ptr::copy_nonoverlapping(src as *const u8, out.as_mut_ptr(), out.len()) };
    Ok(())
}

/// Copies `len` bytes at `ptr` into `out` (cleared first). INVALID_MEMORY_ACCESS when the range
/// is outside the memory, so a wild pointer is a status, never a trap or a host crash.
pub(crate) fn read_into(env: &FunctionEnvMut<HostEnv>, ptr: i32, len: i32, out: &mut Vec<u8>) -> Result<(), Status> {
    let v = view(env)?;
    let len = u(len) as usize;
    range(&v, ptr, len)?;
    out.clear();
    out.resize(len, 0);
    copy_out(&v, ptr, out)
}

/// Checks that `len` bytes at `ptr` lie inside the memory, and appends at most `max` of them
/// to `out`: for data the host only keeps a bounded prefix of (log messages).
pub(crate) fn read_prefix(env: &FunctionEnvMut<HostEnv>, ptr: i32, len: i32, max: usize, out: &mut Vec<u8>) -> Result<(), Status> {
    let v = view(env)?;
    let len = u(len) as usize;
    range(&v, ptr, len)?;
    let take = len.min(max);
    let at = out.len();
    out.resize(at + take, 0);
    copy_out(&v, ptr, &mut out[at..])
}

pub(crate) fn read(env: &FunctionEnvMut<HostEnv>, ptr: i32, len: i32) -> Result<Vec<u8>, Status> {
    let mut out = Vec::new();
    read_into(env, ptr, len, &mut out)?;
    Ok(out)
}

pub(crate) fn write(env: &FunctionEnvMut<HostEnv>, ptr: i32, data: &[u8]) -> Result<(), Status> {
    copy_in(&view(env)?, ptr, data)
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
    let len = data.len();
    status(return_with(env, len, ret_ptr, ret_size, |env, addr| write(env, addr, data)))
}

fn status(r: Result<(), Status>) -> Status {
    match r {
        Ok(()) => Status::Ok,
        Err(s) => s,
    }
}

/// `return_bytes` for bytes the host has to fetch again once the guest allocated room for
/// them (the allocator is guest code, and may change them): `fill` writes `len` bytes at
/// the address, or fails the hostcall.
pub(crate) fn return_with(
    env: &mut FunctionEnvMut<HostEnv>,
    len: usize,
    ret_ptr: i32,
    ret_size: i32,
    fill: impl FnOnce(&mut FunctionEnvMut<HostEnv>, i32) -> Result<(), Status>,
) -> Result<(), Status> {
    {
        let v = view(env)?;
        for p in [ret_ptr, ret_size] {
            if u(p) + 4 > v.data_size() {
                return Err(Status::InvalidMemoryAccess);
            }
        }
    }
    let len = i32::try_from(len).map_err(|_| Status::InternalFailure)?;
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
    fill(env, addr)?;
    let v = view(env)?;
    copy_in(&v, ret_ptr, &(addr as u32).to_le_bytes())?;
    copy_in(&v, ret_size, &(len as u32).to_le_bytes())
}

/// A `return_with` fill for bytes the env holds: `f` finds them again and hands them to
/// `put`, in one or more pieces, which copies them one after the other from `addr` in guest
/// memory, with no copy in between. More than the `len` bytes allocated, or fewer, fail.
pub(crate) fn write_with(
    env: &mut FunctionEnvMut<HostEnv>,
    addr: i32,
    len: usize,
    f: impl FnOnce(&mut HostEnv, &mut dyn FnMut(&[u8]) -> Result<(), Status>) -> Result<(), Status>,
) -> Result<(), Status> {
    let mem = env.data().memory.clone().ok_or(Status::InternalFailure)?;
    let (data, store) = env.data_and_store_mut();
    let v = mem.view(&store);
    let mut done = 0usize;
    f(data, &mut |bytes| {
        if bytes.len() > len - done {
            return Err(Status::InternalFailure);
        }
        copy_in_at(&v, u(addr) + done as u64, bytes)?;
        done += bytes.len();
        Ok(())
    })?;
    if done == len { Ok(()) } else { Err(Status::InternalFailure) }
}
