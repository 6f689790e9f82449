//! proxy_set_effective_context, proxy_done, proxy_call_foreign_function.

use wasmer::FunctionEnvMut;

use crate::abi::Status;
use crate::env::HostEnv;
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

/// Only meaningful for a context whose `proxy_on_done` returned false and is still waiting.
/// nginx's log phase cannot wait, so no context is ever left waiting: NOT_FOUND, as the spec
/// says for "no context was waiting to finish".
pub(crate) fn proxy_done(_env: FunctionEnvMut<HostEnv>) -> i32 {
    Status::NotFound as i32
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
