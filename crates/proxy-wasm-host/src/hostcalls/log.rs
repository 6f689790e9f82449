//! proxy_log, proxy_get_log_level, proxy_get_current_time_nanoseconds.

use std::time::{SystemTime, UNIX_EPOCH};

use wasmer::FunctionEnvMut;

use super::status;
use crate::abi::{LogLevel, Status};
use crate::env::HostEnv;
use crate::limits::MAX_LOG_MESSAGE;
use crate::memory::{read_prefix, write_u32, write_u64};

pub(crate) fn proxy_log(mut env: FunctionEnvMut<HostEnv>, level: i32, ptr: i32, len: i32) -> i32 {
    let Some(level) = LogLevel::from_i32(level) else { return Status::BadArgument as i32 };
    // The level check comes before any copy or formatting: a disabled level costs nothing.
    if level < env.data_mut().log_level() {
        return Status::Ok as i32;
    }
    // A message longer than MAX_LOG_MESSAGE is truncated: the host never copies more.
    let mut buf = std::mem::take(&mut env.data_mut().scratch);
    buf.clear();
    let r = read_prefix(&env, ptr, len, MAX_LOG_MESSAGE, &mut buf);
    if r.is_ok() {
        env.data_mut().log(level, &buf);
    }
    env.data_mut().scratch = buf;
    status(r)
}

pub(crate) fn proxy_get_log_level(mut env: FunctionEnvMut<HostEnv>, ret: i32) -> i32 {
    // The level proxy_log filters with: the request's error_log when there is a request.
    let level = env.data_mut().log_level();
    status(write_u32(&env, ret, level as u32))
}

pub(crate) fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

pub(crate) fn proxy_get_current_time_nanoseconds(env: FunctionEnvMut<HostEnv>, ret: i32) -> i32 {
    status(write_u64(&env, ret, now_nanos()))
}
