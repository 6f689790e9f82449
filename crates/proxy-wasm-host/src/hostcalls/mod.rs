//! Host functions offered to plugins: every Proxy-Wasm hostcall of spec 0.1.0–0.2.1 and WASI
//! preview1 (under both `wasi_snapshot_preview1` and `wasi_unstable`, as Envoy does).
//!
//! The tables below are the contract: a module that imports a name not listed here, or with
//! another signature, is refused at load time with the name in the message. Listed calls
//! that this version does not implement return UNIMPLEMENTED (WASI: an errno) and log once
//! per call, so a plugin gets an honest status, never a trap.

use wasmer::{
    Function, FunctionEnv, FunctionEnvMut, FunctionType, Imports, Module, RuntimeError, Store, Type, Value,
};

use crate::abi::{errno, Status};
use crate::env::HostEnv;

/// How a WASI proc_exit failure message starts (the failure counters tell it apart by it).
pub const PROC_EXIT_MESSAGE: &str = "plugin called proc_exit";

mod buffers;
mod context;
mod grpc_call;
mod headers;
mod http_call;
mod local_response;
mod log;
mod properties;
mod shared;
mod wasi;

pub use headers::framing_header;

use Type::{I32, I64};

/// Import modules that hold WASI preview1.
pub const WASI_MODULES: [&str; 2] = ["wasi_snapshot_preview1", "wasi_unstable"];

/// (name, params); every Proxy-Wasm hostcall returns an i32 status.
pub const PROXY_HOSTCALLS: &[(&str, &[Type])] = &[
    ("proxy_log", &[I32, I32, I32]),
    ("proxy_get_log_level", &[I32]),
    ("proxy_get_current_time_nanoseconds", &[I32]),
    ("proxy_set_tick_period_milliseconds", &[I32]),
    ("proxy_set_effective_context", &[I32]),
    ("proxy_done", &[]),
    ("proxy_get_configuration", &[I32, I32]),
    ("proxy_get_buffer_bytes", &[I32, I32, I32, I32, I32]),
    ("proxy_set_buffer_bytes", &[I32, I32, I32, I32, I32]),
    ("proxy_get_buffer_status", &[I32, I32, I32]),
    ("proxy_get_header_map_pairs", &[I32, I32, I32]),
    ("proxy_set_header_map_pairs", &[I32, I32, I32]),
    ("proxy_get_header_map_size", &[I32, I32]),
    ("proxy_get_header_map_value", &[I32, I32, I32, I32, I32]),
    ("proxy_add_header_map_value", &[I32, I32, I32, I32, I32]),
    ("proxy_replace_header_map_value", &[I32, I32, I32, I32, I32]),
    ("proxy_remove_header_map_value", &[I32, I32, I32]),
    ("proxy_continue_stream", &[I32]),
    ("proxy_close_stream", &[I32]),
    ("proxy_continue_request", &[]),
    ("proxy_continue_response", &[]),
    ("proxy_clear_route_cache", &[]),
    ("proxy_get_status", &[I32, I32, I32]),
    ("proxy_send_local_response", &[I32, I32, I32, I32, I32, I32, I32, I32]),
    ("proxy_http_call", &[I32, I32, I32, I32, I32, I32, I32, I32, I32, I32]),
    ("proxy_dispatch_http_call", &[I32, I32, I32, I32, I32, I32, I32, I32, I32, I32]),
    ("proxy_grpc_call", &[I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32]),
    ("proxy_grpc_stream", &[I32, I32, I32, I32, I32, I32, I32, I32, I32]),
    ("proxy_grpc_send", &[I32, I32, I32, I32]),
    ("proxy_grpc_cancel", &[I32]),
    ("proxy_grpc_close", &[I32]),
    ("proxy_get_shared_data", &[I32, I32, I32, I32, I32]),
    ("proxy_set_shared_data", &[I32, I32, I32, I32, I32]),
    ("proxy_register_shared_queue", &[I32, I32, I32]),
    ("proxy_resolve_shared_queue", &[I32, I32, I32, I32, I32]),
    ("proxy_enqueue_shared_queue", &[I32, I32, I32]),
    ("proxy_dequeue_shared_queue", &[I32, I32, I32]),
    ("proxy_define_metric", &[I32, I32, I32, I32]),
    ("proxy_increment_metric", &[I32, I64]),
    ("proxy_record_metric", &[I32, I64]),
    ("proxy_get_metric", &[I32, I32]),
    ("proxy_get_property", &[I32, I32, I32, I32]),
    ("proxy_set_property", &[I32, I32, I32, I32]),
    ("proxy_call_foreign_function", &[I32, I32, I32, I32, I32, I32]),
];

/// (name, params, results) of WASI preview1 functions.
pub const WASI_FUNCTIONS: &[(&str, &[Type], &[Type])] = &[
    ("args_get", &[I32, I32], &[I32]),
    ("args_sizes_get", &[I32, I32], &[I32]),
    ("environ_get", &[I32, I32], &[I32]),
    ("environ_sizes_get", &[I32, I32], &[I32]),
    ("clock_res_get", &[I32, I32], &[I32]),
    ("clock_time_get", &[I32, I64, I32], &[I32]),
    ("fd_advise", &[I32, I64, I64, I32], &[I32]),
    ("fd_allocate", &[I32, I64, I64], &[I32]),
    ("fd_close", &[I32], &[I32]),
    ("fd_datasync", &[I32], &[I32]),
    ("fd_fdstat_get", &[I32, I32], &[I32]),
    ("fd_fdstat_set_flags", &[I32, I32], &[I32]),
    ("fd_fdstat_set_rights", &[I32, I64, I64], &[I32]),
    ("fd_filestat_get", &[I32, I32], &[I32]),
    ("fd_filestat_set_size", &[I32, I64], &[I32]),
    ("fd_filestat_set_times", &[I32, I64, I64, I32], &[I32]),
    ("fd_pread", &[I32, I32, I32, I64, I32], &[I32]),
    ("fd_prestat_get", &[I32, I32], &[I32]),
    ("fd_prestat_dir_name", &[I32, I32, I32], &[I32]),
    ("fd_pwrite", &[I32, I32, I32, I64, I32], &[I32]),
    ("fd_read", &[I32, I32, I32, I32], &[I32]),
    ("fd_readdir", &[I32, I32, I32, I64, I32], &[I32]),
    ("fd_renumber", &[I32, I32], &[I32]),
    ("fd_seek", &[I32, I64, I32, I32], &[I32]),
    ("fd_sync", &[I32], &[I32]),
    ("fd_tell", &[I32, I32], &[I32]),
    ("fd_write", &[I32, I32, I32, I32], &[I32]),
    ("path_create_directory", &[I32, I32, I32], &[I32]),
    ("path_filestat_get", &[I32, I32, I32, I32, I32], &[I32]),
    ("path_filestat_set_times", &[I32, I32, I32, I32, I64, I64, I32], &[I32]),
    ("path_link", &[I32, I32, I32, I32, I32, I32, I32], &[I32]),
    ("path_open", &[I32, I32, I32, I32, I32, I64, I64, I32, I32], &[I32]),
    ("path_readlink", &[I32, I32, I32, I32, I32, I32], &[I32]),
    ("path_remove_directory", &[I32, I32, I32], &[I32]),
    ("path_rename", &[I32, I32, I32, I32, I32, I32], &[I32]),
    ("path_symlink", &[I32, I32, I32, I32, I32], &[I32]),
    ("path_unlink_file", &[I32, I32, I32], &[I32]),
    ("poll_oneoff", &[I32, I32, I32, I32], &[I32]),
    ("proc_exit", &[I32], &[]),
    ("proc_raise", &[I32], &[I32]),
    ("random_get", &[I32, I32], &[I32]),
    ("sched_yield", &[], &[I32]),
    ("sock_accept", &[I32, I32, I32], &[I32]),
    ("sock_recv", &[I32, I32, I32, I32, I32, I32], &[I32]),
    ("sock_send", &[I32, I32, I32, I32, I32], &[I32]),
    ("sock_shutdown", &[I32, I32], &[I32]),
];

/// The signature the host provides for `module.name`, if it provides it at all.
pub fn provided_signature(module: &str, name: &str) -> Option<FunctionType> {
    if module == "env" {
        let (_, params) = PROXY_HOSTCALLS.iter().find(|(n, _)| *n == name)?;
        return Some(FunctionType::new(params.to_vec(), vec![I32]));
    }
    if WASI_MODULES.contains(&module) {
        let (_, params, results) = WASI_FUNCTIONS.iter().find(|(n, _, _)| *n == name)?;
        return Some(FunctionType::new(params.to_vec(), results.to_vec()));
    }
    None
}

/// Builds the import object for `module`: implemented calls get their real function,
/// the others an honest stub. Imports were validated at compile time (runtime::compile).
pub(crate) fn imports(store: &mut Store, env: &FunctionEnv<HostEnv>, module: &Module) -> Result<Imports, String> {
    let mut imports = Imports::new();
    for imp in module.imports() {
        let (ns, name) = (imp.module(), imp.name());
        let f = if ns == "env" {
            proxy_function(store, env, name)
        } else if WASI_MODULES.contains(&ns) {
            wasi::function(store, env, name)
        } else {
            None
        };
        let f = match f {
            Some(f) => f,
            None => match provided_signature(ns, name) {
                Some(sig) => stub(store, env, ns, name, sig),
                None => return Err(format!("imports {ns}.{name}, which this host does not provide")),
            },
        };
        imports.define(ns, name, f);
    }
    Ok(imports)
}

fn proxy_function(store: &mut Store, env: &FunctionEnv<HostEnv>, name: &str) -> Option<Function> {
    let t = |f| Some(f);
    match name {
        "proxy_log" => t(Function::new_typed_with_env(store, env, log::proxy_log)),
        "proxy_get_log_level" => t(Function::new_typed_with_env(store, env, log::proxy_get_log_level)),
        "proxy_get_current_time_nanoseconds" => {
            t(Function::new_typed_with_env(store, env, log::proxy_get_current_time_nanoseconds))
        }
        "proxy_set_effective_context" => t(Function::new_typed_with_env(store, env, context::proxy_set_effective_context)),
        "proxy_done" => t(Function::new_typed_with_env(store, env, context::proxy_done)),
        "proxy_set_tick_period_milliseconds" => {
            t(Function::new_typed_with_env(store, env, context::proxy_set_tick_period_milliseconds))
        }
        "proxy_continue_stream" => t(Function::new_typed_with_env(store, env, context::proxy_continue_stream)),
        "proxy_close_stream" => t(Function::new_typed_with_env(store, env, context::proxy_close_stream)),
        "proxy_continue_request" => t(Function::new_typed_with_env(store, env, context::proxy_continue_request)),
        "proxy_continue_response" => t(Function::new_typed_with_env(store, env, context::proxy_continue_response)),
        "proxy_clear_route_cache" => t(Function::new_typed_with_env(store, env, context::proxy_clear_route_cache)),
        "proxy_get_configuration" => t(Function::new_typed_with_env(store, env, buffers::proxy_get_configuration)),
        "proxy_get_buffer_bytes" => t(Function::new_typed_with_env(store, env, buffers::proxy_get_buffer_bytes)),
        "proxy_get_buffer_status" => t(Function::new_typed_with_env(store, env, buffers::proxy_get_buffer_status)),
        "proxy_set_buffer_bytes" => t(Function::new_typed_with_env(store, env, buffers::proxy_set_buffer_bytes)),
        "proxy_get_header_map_pairs" => t(Function::new_typed_with_env(store, env, headers::proxy_get_header_map_pairs)),
        "proxy_set_header_map_pairs" => t(Function::new_typed_with_env(store, env, headers::proxy_set_header_map_pairs)),
        "proxy_get_header_map_size" => t(Function::new_typed_with_env(store, env, headers::proxy_get_header_map_size)),
        "proxy_get_header_map_value" => t(Function::new_typed_with_env(store, env, headers::proxy_get_header_map_value)),
        "proxy_add_header_map_value" => t(Function::new_typed_with_env(store, env, headers::proxy_add_header_map_value)),
        "proxy_replace_header_map_value" => {
            t(Function::new_typed_with_env(store, env, headers::proxy_replace_header_map_value))
        }
        "proxy_remove_header_map_value" => {
            t(Function::new_typed_with_env(store, env, headers::proxy_remove_header_map_value))
        }
        "proxy_send_local_response" => {
            t(Function::new_typed_with_env(store, env, local_response::proxy_send_local_response))
        }
        "proxy_http_call" | "proxy_dispatch_http_call" => {
            t(Function::new_typed_with_env(store, env, http_call::proxy_http_call))
        }
        "proxy_grpc_call" => t(Function::new_typed_with_env(store, env, grpc_call::proxy_grpc_call)),
        "proxy_grpc_stream" => t(Function::new_typed_with_env(store, env, grpc_call::proxy_grpc_stream)),
        "proxy_grpc_send" => t(Function::new_typed_with_env(store, env, grpc_call::proxy_grpc_send)),
        "proxy_grpc_cancel" => t(Function::new_typed_with_env(store, env, grpc_call::proxy_grpc_cancel)),
        "proxy_grpc_close" => t(Function::new_typed_with_env(store, env, grpc_call::proxy_grpc_close)),
        "proxy_get_status" => t(Function::new_typed_with_env(store, env, grpc_call::proxy_get_status)),
        "proxy_get_property" => t(Function::new_typed_with_env(store, env, properties::proxy_get_property)),
        "proxy_set_property" => t(Function::new_typed_with_env(store, env, properties::proxy_set_property)),
        "proxy_get_shared_data" => t(Function::new_typed_with_env(store, env, shared::proxy_get_shared_data)),
        "proxy_set_shared_data" => t(Function::new_typed_with_env(store, env, shared::proxy_set_shared_data)),
        "proxy_register_shared_queue" => t(Function::new_typed_with_env(store, env, shared::proxy_register_shared_queue)),
        "proxy_resolve_shared_queue" => t(Function::new_typed_with_env(store, env, shared::proxy_resolve_shared_queue)),
        "proxy_enqueue_shared_queue" => t(Function::new_typed_with_env(store, env, shared::proxy_enqueue_shared_queue)),
        "proxy_dequeue_shared_queue" => t(Function::new_typed_with_env(store, env, shared::proxy_dequeue_shared_queue)),
        "proxy_define_metric" => t(Function::new_typed_with_env(store, env, shared::proxy_define_metric)),
        "proxy_increment_metric" => t(Function::new_typed_with_env(store, env, shared::proxy_increment_metric)),
        "proxy_record_metric" => t(Function::new_typed_with_env(store, env, shared::proxy_record_metric)),
        "proxy_get_metric" => t(Function::new_typed_with_env(store, env, shared::proxy_get_metric)),
        "proxy_call_foreign_function" => {
            t(Function::new_typed_with_env(store, env, context::proxy_call_foreign_function))
        }
        _ => None,
    }
}

/// A listed but unimplemented call: logs its name and returns UNIMPLEMENTED (or ENOSYS for
/// WASI), whatever its signature.
fn stub(store: &mut Store, env: &FunctionEnv<HostEnv>, ns: &str, name: &str, sig: FunctionType) -> Function {
    let is_wasi = ns != "env";
    let msg = format!("{ns}.{name} is not implemented by this host: returned {}", if is_wasi { "ENOSYS" } else { "UNIMPLEMENTED" });
    let has_result = !sig.results().is_empty();
    Function::new_with_env(store, env, sig, move |mut env: FunctionEnvMut<HostEnv>, _args: &[Value]| {
        env.data_mut().log(crate::abi::LogLevel::Warn, msg.as_bytes());
        let code = if is_wasi { errno::NOSYS } else { Status::Unimplemented as i32 };
        Ok::<Vec<Value>, RuntimeError>(if has_result { vec![Value::I32(code)] } else { vec![] })
    })
}

/// Whether a header name and value would be accepted by the header hostcalls (for fuzzing
/// and embedders).
pub fn headers_valid(name: &[u8], value: &[u8]) -> bool {
    headers::valid_name(name) && headers::valid_value(value)
}

/// A property path split on its NUL separators, as get/set_property see it.
pub fn split_property_path(path: &[u8]) -> Vec<&[u8]> {
    properties::split_path(path)
}

/// Turns a `Result<(), Status>` into the i32 a hostcall returns.
#[inline]
pub(crate) fn status(r: Result<(), Status>) -> i32 {
    match r {
        Ok(()) => Status::Ok as i32,
        Err(s) => s as i32,
    }
}
