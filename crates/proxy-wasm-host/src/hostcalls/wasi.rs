//! WASI preview1 for plugins: what SDK-built filters call at start-up and for logging.
//! stdout/stderr go to the error log (INFO / ERROR); clocks and randomness are real; the
//! environment and arguments are empty; there is no filesystem (no preopened directories).

use std::sync::OnceLock;
use std::time::Instant;

use wasmer::{Function, FunctionEnv, FunctionEnvMut, RuntimeError, Store};

use crate::abi::{errno, LogLevel};
use crate::env::HostEnv;
use crate::memory::{read, read_into, u, write, write_u32, write_u64};

/// Largest random_get request (cpp-host uses the same cap).
const MAX_RANDOM: u32 = 64 * 1024;
/// Largest iovec count accepted by fd_write.
const MAX_IOVS: u32 = 1024;

pub(crate) fn function(store: &mut Store, env: &FunctionEnv<HostEnv>, name: &str) -> Option<Function> {
    Some(match name {
        "fd_write" => Function::new_typed_with_env(store, env, fd_write),
        "clock_time_get" => Function::new_typed_with_env(store, env, clock_time_get),
        "clock_res_get" => Function::new_typed_with_env(store, env, clock_res_get),
        "random_get" => Function::new_typed_with_env(store, env, random_get),
        "environ_sizes_get" | "args_sizes_get" => Function::new_typed_with_env(store, env, sizes_get_empty),
        "environ_get" | "args_get" => Function::new_typed_with_env(store, env, get_empty),
        "proc_exit" => Function::new_typed_with_env(store, env, proc_exit),
        "sched_yield" => Function::new_typed_with_env(store, env, sched_yield),
        "fd_fdstat_get" => Function::new_typed_with_env(store, env, fd_fdstat_get),
        "fd_prestat_get" => Function::new_typed_with_env(store, env, fd_prestat_get),
        "fd_close" => Function::new_typed_with_env(store, env, fd_close),
        _ => return None,
    })
}

fn err(e: crate::abi::Status) -> i32 {
    match e {
        crate::abi::Status::InvalidMemoryAccess => errno::FAULT,
        _ => errno::INVAL,
    }
}

fn fd_write(mut env: FunctionEnvMut<HostEnv>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32) -> i32 {
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return errno::BADF,
    };
    if iovs_len as u32 > MAX_IOVS {
        return errno::INVAL;
    }
    let mut out = std::mem::take(&mut env.data_mut().scratch);
    out.clear();
    let mut piece = Vec::new();
    let mut result = errno::SUCCESS;
    for i in 0..iovs_len as u32 {
        let iov = match read(&env, (u(iovs) + u64::from(i) * 8) as i32, 8) {
            Ok(b) => b,
            Err(e) => {
                result = err(e);
                break;
            }
        };
        let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        if let Err(e) = read_into(&env, ptr, len, &mut piece) {
            result = err(e);
            break;
        }
        out.extend_from_slice(&piece);
    }
    if result == errno::SUCCESS {
        let n = out.len() as u32;
        if level >= env.data().logger.level() {
            let msg = out.strip_suffix(b"\n").unwrap_or(&out).to_vec();
            env.data_mut().log(level, &msg);
        }
        if let Err(e) = write_u32(&env, nwritten, n) {
            result = err(e);
        }
    }
    env.data_mut().scratch = out;
    result
}

fn monotonic_nanos() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn clock_time_get(env: FunctionEnvMut<HostEnv>, id: i32, _precision: i64, ret: i32) -> i32 {
    let t = match id {
        0 => super::log::now_nanos(), // REALTIME
        1 => monotonic_nanos(),      // MONOTONIC
        _ => return errno::INVAL,    // process/thread CPU clocks are not offered
    };
    match write_u64(&env, ret, t) {
        Ok(()) => errno::SUCCESS,
        Err(e) => err(e),
    }
}

fn clock_res_get(env: FunctionEnvMut<HostEnv>, id: i32, ret: i32) -> i32 {
    if id != 0 && id != 1 {
        return errno::INVAL;
    }
    match write_u64(&env, ret, 1) {
        Ok(()) => errno::SUCCESS,
        Err(e) => err(e),
    }
}

fn random_get(env: FunctionEnvMut<HostEnv>, buf: i32, len: i32) -> i32 {
    if len as u32 > MAX_RANDOM {
        return errno::INVAL;
    }
    let mut bytes = vec![0u8; len as u32 as usize];
    if getrandom::getrandom(&mut bytes).is_err() {
        return errno::NOSYS;
    }
    match write(&env, buf, &bytes) {
        Ok(()) => errno::SUCCESS,
        Err(e) => err(e),
    }
}

fn sizes_get_empty(env: FunctionEnvMut<HostEnv>, count: i32, size: i32) -> i32 {
    match write_u32(&env, count, 0).and_then(|_| write_u32(&env, size, 0)) {
        Ok(()) => errno::SUCCESS,
        Err(e) => err(e),
    }
}

fn get_empty(_env: FunctionEnvMut<HostEnv>, _ptrs: i32, _buf: i32) -> i32 {
    errno::SUCCESS
}

/// A plugin that exits has nothing left to run: end the callback with a trap.
fn proc_exit(_env: FunctionEnvMut<HostEnv>, code: i32) -> Result<(), RuntimeError> {
    Err(RuntimeError::new(format!("plugin called proc_exit({code})")))
}

fn sched_yield(_env: FunctionEnvMut<HostEnv>) -> i32 {
    errno::SUCCESS
}

/// stdin/stdout/stderr exist as character devices; nothing else does.
fn fd_fdstat_get(env: FunctionEnvMut<HostEnv>, fd: i32, ret: i32) -> i32 {
    if !(0..=2).contains(&fd) {
        return errno::BADF;
    }
    // fdstat: u8 filetype, u16 flags (at 2), u64 rights_base (at 8), u64 rights_inheriting (at 16)
    let mut stat = [0u8; 24];
    stat[0] = 2; // CHARACTER_DEVICE
    let rights: u64 = if fd == 0 { 1 << 1 } else { 1 << 6 }; // FD_READ / FD_WRITE
    stat[8..16].copy_from_slice(&rights.to_le_bytes());
    match write(&env, ret, &stat) {
        Ok(()) => errno::SUCCESS,
        Err(e) => err(e),
    }
}

/// No preopened directories: BADF ends wasi-libc's preopen scan.
fn fd_prestat_get(_env: FunctionEnvMut<HostEnv>, _fd: i32, _ret: i32) -> i32 {
    errno::BADF
}

fn fd_close(_env: FunctionEnvMut<HostEnv>, fd: i32) -> i32 {
    if (0..=2).contains(&fd) {
        errno::SUCCESS
    } else {
        errno::BADF
    }
}
