//! proxy_get_property / proxy_set_property. Paths are NUL-separated segments (the Rust SDK
//! joins `["request", "path"]` as `request\0path`). The host core answers the plugin's own
//! identity (plugin_name, plugin_root_id, plugin_vm_id); everything about a request comes
//! from the embedder's stream, in Envoy's encodings.

use wasmer::FunctionEnvMut;

use crate::abi::Status;
use crate::env::{EditBudget, HostEnv};
use crate::limits::{
    MAX_PROPERTY_PATH, MAX_PROPERTY_SETS, MAX_PROPERTY_SET_BYTES, MAX_ROOT_PROPERTIES, MAX_ROOT_PROPERTY_BYTES,
};
use crate::memory::{read, return_bytes};

pub use crate::limits::MAX_PROPERTY_VALUE;

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
    if value_len as u32 as usize > MAX_PROPERTY_VALUE || path_len as u32 as usize > MAX_PROPERTY_PATH {
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
    if data.stream().is_some() {
        // Each set may make the embedder keep a copy until the request ends (nginx: the
        // request pool), replaced values included.
        let budget = data.edits.entry(data.call.effective_id).or_default();
        let bytes = raw.len() + value.len();
        if let Err(s) = EditBudget::charge(&mut budget.properties, 1, bytes, MAX_PROPERTY_SETS, MAX_PROPERTY_SET_BYTES) {
            return s as i32;
        }
    }
    if let Some(s) = data.stream() {
        return s.set_property(&segments, &value) as i32;
    }
    root_property_insert(data, raw, value) as i32
}

/// Stores a root-context property within MAX_ROOT_PROPERTIES and MAX_ROOT_PROPERTY_BYTES
/// (a replaced value gives its bytes back); BAD_ARGUMENT past them.
fn root_property_insert(data: &mut HostEnv, path: Vec<u8>, value: Vec<u8>) -> Status {
    let old = data.root_properties.get(&path).map(|v| path.len() + v.len());
    let count = data.root_properties.len() + usize::from(old.is_none());
    let bytes = data.root_property_bytes - old.unwrap_or(0) + path.len() + value.len();
    if count > MAX_ROOT_PROPERTIES || bytes > MAX_ROOT_PROPERTY_BYTES {
        return Status::BadArgument;
    }
    data.root_property_bytes = bytes;
    data.root_properties.insert(path, value);
    Status::Ok
}
