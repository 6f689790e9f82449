//! proxy_get_property / proxy_set_property. Paths are NUL-separated segments (the Rust SDK
//! joins `["request", "path"]` as `request\0path`). The host core answers the plugin's own
//! identity (plugin_name, plugin_root_id, plugin_vm_id); everything about a request comes
//! from the embedder's stream, in Envoy's encodings.

use wasmer::FunctionEnvMut;

use crate::abi::Status;
use crate::env::HostEnv;
use crate::memory::{read, return_bytes};

/// Largest property value a plugin can store.
pub const MAX_PROPERTY_VALUE: usize = 64 * 1024;

pub fn split_path(path: &[u8]) -> Vec<&[u8]> {
    path.split(|&b| b == 0).collect()
}

fn plugin_property(env: &HostEnv, path: &[&[u8]]) -> Option<Vec<u8>> {
    match path {
        [b"plugin_name"] | [b"plugin_vm_id"] => Some(env.name.as_bytes().to_vec()),
        // No root ids are configured in nginx: the empty root id, as Envoy's default (the Lua
        // path sets the plugin's name, as api7's module reports it).
        [b"plugin_root_id"] => Some(env.root_id.as_bytes().to_vec()),
        _ => None,
    }
}

pub(crate) fn proxy_get_property(mut env: FunctionEnvMut<HostEnv>, path: i32, path_len: i32, ret_ptr: i32, ret_size: i32) -> i32 {
    let raw = match read(&env, path, path_len) {
        Ok(p) => p,
        Err(s) => return s as i32,
    };
    let segments = split_path(&raw);
    let data = env.data_mut();
    let value = if let Some(v) = plugin_property(data, &segments) {
        Ok(v)
    } else if let Some(s) = data.stream() {
        let mut out = Vec::new();
        match s.get_property(&segments, &mut out) {
            Status::Ok => Ok(out),
            st => Err(st),
        }
    } else {
        data.root_properties.get(&raw).cloned().ok_or(Status::NotFound)
    };
    match value {
        Ok(v) => return_bytes(&mut env, &v, ret_ptr, ret_size) as i32,
        Err(s) => s as i32,
    }
}

pub(crate) fn proxy_set_property(mut env: FunctionEnvMut<HostEnv>, path: i32, path_len: i32, value: i32, value_len: i32) -> i32 {
    if value_len as u32 as usize > MAX_PROPERTY_VALUE {
        return Status::BadArgument as i32;
    }
    let (raw, value) = match read(&env, path, path_len).and_then(|p| Ok((p, read(&env, value, value_len)?))) {
        Ok(v) => v,
        Err(s) => return s as i32,
    };
    let segments = split_path(&raw);
    if raw.is_empty() || plugin_property(env.data(), &segments).is_some() {
        return Status::BadArgument as i32;
    }
    let data = env.data_mut();
    if let Some(s) = data.stream() {
        return s.set_property(&segments, &value) as i32;
    }
    data.root_properties.insert(raw, value);
    Status::Ok as i32
}
