//! WASI preview1 for plugins: what SDK-built filters call at start-up and for logging.
//! stdout/stderr go to the error log (INFO / ERROR); clocks and randomness are real; the
//! environment and arguments are empty; there is no filesystem (no preopened directories).

use std::sync::OnceLock;
use std::time::Instant;

use wasmer::{Function, FunctionEnv, FunctionEnvMut, RuntimeError, Store};

use crate::abi::{errno, LogLevel};
use crate::env::HostEnv;
use crate::limits::{MAX_IOVS, MAX_LOG_MESSAGE, MAX_RANDOM};
use crate::memory::{read, read_prefix, u, write, write_u32, write_u64};

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

/// stdout/stderr to the log. The plugin is told everything was written, but the log gets at
/// most MAX_LOG_MESSAGE bytes, and nothing is copied at all when the level is off.
fn fd_write(mut env: FunctionEnvMut<HostEnv>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32) -> i32 {
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return errno::BADF,
    };
    if iovs_len as u32 > MAX_IOVS {
        return errno::INVAL;
    }
    let keep = level >= env.data_mut().log_level();
    let mut out = std::mem::take(&mut env.data_mut().scratch);
    out.clear();
    let mut total: u32 = 0;
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
        let room = if keep { MAX_LOG_MESSAGE - out.len() } else { 0 };
        if let Err(e) = read_prefix(&env, ptr, len, room, &mut out) {
            result = err(e);
            break;
        }
        // Bounded by the memory size, so at most 4 GiB each; saturate on the (absurd) sum.
        total = total.saturating_add(len as u32);
    }
    if result == errno::SUCCESS {
        if keep {
            let msg = out.strip_suffix(b"\n").unwrap_or(&out).to_vec();
            env.data_mut().log(level, &msg);
        }
        if let Err(e) = write_u32(&env, nwritten, total) {
            result = err(e);
        }
    }
    // The scratch buffer is kept: it never grows past MAX_LOG_MESSAGE here.
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
    Err(RuntimeError::new(format!("{}({code})", super::PROC_EXIT_MESSAGE)))
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
