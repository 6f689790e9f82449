//! The header-map hostcalls. Maps live in the embedder (HttpStream); names and values that
//! could split a header line (CR, LF, NUL) are refused here, for every embedder.

use wasmer::FunctionEnvMut;

use crate::abi::{MapType, Status};
use crate::env::{Callback, EditBudget, HostEnv};
use crate::limits::{MAX_HEADER_EDITS, MAX_HEADER_EDIT_BYTES};
use crate::maps;
use crate::memory::{read, return_bytes, write_u32};

/// A header name: a token, or a pseudo-header (`:path`).
pub fn valid_name(name: &[u8]) -> bool {
    let body = name.strip_prefix(b":").unwrap_or(name);
    !body.is_empty() && body.iter().all(|&b| b > 0x20 && b < 0x7f && b != b':')
}

/// A header value: anything but the bytes that end a line.
pub fn valid_value(value: &[u8]) -> bool {
    !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

/// Hop-by-hop headers that frame the connection, which the embedder writes itself on the
/// responses it frames (a plugin's copy could contradict it: Content-Length and
/// Transfer-Encoding on one response). `Trailer` is not among them: it frames nothing.
pub fn framing_header(name: &[u8]) -> bool {
    const FRAMING: [&[u8]; 6] = [b"transfer-encoding", b"connection", b"keep-alive", b"upgrade", b"proxy-connection", b"te"];
    FRAMING.iter().any(|h| h.eq_ignore_ascii_case(name))
}

fn map_type(ty: i32) -> Result<MapType, Status> {
    MapType::from_i32(ty).ok_or(Status::BadArgument)
}

/// Runs `f` on the effective context's stream; NOT_FOUND when there is none (root context,
/// or another context made effective). The HTTP-call response maps are served from the
/// response being delivered, read-only, whatever the context.
fn with_stream<R>(env: &mut FunctionEnvMut<HostEnv>, f: impl FnOnce(&mut dyn crate::stream::HttpStream) -> R) -> Result<R, Status> {
    let s = env.data_mut().stream().ok_or(Status::NotFound)?;
    Ok(f(s))
}

/// The maps of a call's answer: an HTTP call's response, a gRPC call's metadata.
fn is_call_response(map: MapType) -> bool {
    matches!(
        map,
        MapType::HttpCallResponseHeaders
            | MapType::HttpCallResponseTrailers
            | MapType::GrpcInitialMetadata
            | MapType::GrpcTrailingMetadata
    )
}

/// An answer's map, inside the callback that delivers that kind of answer only.
fn call_response_map<'a>(env: &'a FunctionEnvMut<HostEnv>, map: MapType) -> Result<&'a [(Vec<u8>, Vec<u8>)], Status> {
    let data = env.data();
    let grpc = matches!(map, MapType::GrpcInitialMetadata | MapType::GrpcTrailingMetadata);
    let in_its_callback = if grpc { data.call.callback.is_grpc() } else { data.call.callback == Callback::HttpCallResponse };
    if !in_its_callback {
        return Err(Status::NotFound);
    }
    let r = data.http_response().ok_or(Status::NotFound)?;
    Ok(if matches!(map, MapType::HttpCallResponseHeaders | MapType::GrpcInitialMetadata) { &r.headers } else { &r.trailers })
}

/// Refuses changes to the read-only call-response maps.
fn writable(map: MapType) -> Result<MapType, Status> {
    if is_call_response(map) {
        Err(Status::BadArgument)
    } else {
        Ok(map)
    }
}

/// Charges `edits` header edits of `bytes` bytes to the effective context's budget for `map`
/// (MAX_HEADER_EDITS, MAX_HEADER_EDIT_BYTES): the embedder keeps every edit until the request
/// ends. BAD_ARGUMENT, and nothing charged, past either bound.
fn charge_edits(env: &mut FunctionEnvMut<HostEnv>, map: MapType, edits: usize, bytes: usize) -> Result<(), Status> {
    let data = env.data_mut();
    if data.stream().is_none() {
        return Ok(()); // NOT_FOUND follows: nothing is stored
    }
    let budget = data.edits.entry(data.call.effective_id).or_default();
    EditBudget::charge(&mut budget.maps[map as usize], edits, bytes, MAX_HEADER_EDITS, MAX_HEADER_EDIT_BYTES)
}

/// Serializes `map` into the instance's scratch builder and returns its bytes.
fn serialize_map(env: &mut FunctionEnvMut<HostEnv>, ty: i32) -> Result<Vec<u8>, Status> {
    let map = map_type(ty)?;
    let mut b = std::mem::take(&mut env.data_mut().map_scratch);
    b.clear();
    let st = if is_call_response(map) {
        call_response_map(env, map).map(|pairs| {
            for (k, v) in pairs {
                b.push(k, v);
            }
            Status::Ok
        })
    } else {
        with_stream(env, |s| s.map_pairs(map, &mut b))
    };
    let out = match st {
        Ok(Status::Ok) => Ok(b.finish()),
        Ok(s) | Err(s) => Err(s),
    };
    env.data_mut().map_scratch = b;
    out
}

pub(crate) fn proxy_get_header_map_pairs(mut env: FunctionEnvMut<HostEnv>, ty: i32, ret_ptr: i32, ret_size: i32) -> i32 {
    match serialize_map(&mut env, ty) {
        Ok(bytes) => return_bytes(&mut env, &bytes, ret_ptr, ret_size) as i32,
        Err(s) => s as i32,
    }
}

pub(crate) fn proxy_get_header_map_size(mut env: FunctionEnvMut<HostEnv>, ty: i32, ret_size: i32) -> i32 {
    match serialize_map(&mut env, ty) {
        Ok(bytes) => super::status(write_u32(&env, ret_size, bytes.len() as u32)),
        Err(s) => s as i32,
    }
}

pub(crate) fn proxy_get_header_map_value(
    mut env: FunctionEnvMut<HostEnv>,
    ty: i32,
    key: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_size: i32,
) -> i32 {
    let map = match map_type(ty) {
        Ok(m) => m,
        Err(s) => return s as i32,
    };
    let key = match read(&env, key, key_len) {
        Ok(k) => k,
        Err(s) => return s as i32,
    };
    let mut value = std::mem::take(&mut env.data_mut().scratch);
    value.clear();
    let st = if is_call_response(map) {
        match call_response_map(&env, map) {
            Ok(pairs) => match pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(&key)) {
                Some((_, v)) => {
                    value.extend_from_slice(v);
                    Status::Ok
                }
                None => Status::NotFound,
            },
            Err(s) => s,
        }
    } else {
        with_stream(&mut env, |s| s.map_get(map, &key, &mut value)).unwrap_or_else(|s| s)
    };
    let r = match st {
        Status::Ok => return_bytes(&mut env, &value, ret_ptr, ret_size),
        // 0.1.0 plugins expect an empty value, not NOT_FOUND, for a missing header.
        Status::NotFound if !env.data().abi.missing_header_is_not_found() => {
            return_bytes(&mut env, b"", ret_ptr, ret_size)
        }
        s => s,
    };
    env.data_mut().scratch = value;
    r as i32
}

pub(crate) fn proxy_set_header_map_pairs(mut env: FunctionEnvMut<HostEnv>, ty: i32, ptr: i32, len: i32) -> i32 {
    let map = match map_type(ty).and_then(writable) {
        Ok(m) => m,
        Err(s) => return s as i32,
    };
    let bytes = match read(&env, ptr, len) {
        Ok(b) => b,
        Err(s) => return s as i32,
    };
    let pairs = match maps::deserialize(&bytes) {
        Ok(p) => p,
        Err(s) => return s as i32,
    };
    if !pairs.iter().all(|(k, v)| valid_name(k) && valid_value(v)) {
        return Status::BadArgument as i32;
    }
    let bytes = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
    if let Err(s) = charge_edits(&mut env, map, pairs.len(), bytes) {
        return s as i32;
    }
    with_stream(&mut env, |s| s.map_set_pairs(map, &pairs)).unwrap_or_else(|s| s) as i32
}

fn key_value(env: &FunctionEnvMut<HostEnv>, k: i32, kl: i32, v: i32, vl: i32) -> Result<(Vec<u8>, Vec<u8>), Status> {
    let key = read(env, k, kl)?;
    let value = read(env, v, vl)?;
    if !valid_name(&key) || !valid_value(&value) {
        return Err(Status::BadArgument);
    }
    Ok((key, value))
}

pub(crate) fn proxy_add_header_map_value(mut env: FunctionEnvMut<HostEnv>, ty: i32, k: i32, kl: i32, v: i32, vl: i32) -> i32 {
    let r = map_type(ty).and_then(writable).and_then(|m| Ok((m, key_value(&env, k, kl, v, vl)?)));
    match r {
        Ok((map, (key, value))) => {
            if let Err(s) = charge_edits(&mut env, map, 1, key.len() + value.len()) {
                return s as i32;
            }
            with_stream(&mut env, |s| s.map_add(map, &key, &value)).unwrap_or_else(|s| s) as i32
        }
        Err(s) => s as i32,
    }
}

pub(crate) fn proxy_replace_header_map_value(mut env: FunctionEnvMut<HostEnv>, ty: i32, k: i32, kl: i32, v: i32, vl: i32) -> i32 {
    let r = map_type(ty).and_then(writable).and_then(|m| Ok((m, key_value(&env, k, kl, v, vl)?)));
    match r {
        Ok((map, (key, value))) => {
            if let Err(s) = charge_edits(&mut env, map, 1, key.len() + value.len()) {
                return s as i32;
            }
            with_stream(&mut env, |s| s.map_replace(map, &key, &value)).unwrap_or_else(|s| s) as i32
        }
        Err(s) => s as i32,
    }
}

pub(crate) fn proxy_remove_header_map_value(mut env: FunctionEnvMut<HostEnv>, ty: i32, k: i32, kl: i32) -> i32 {
    let map = match map_type(ty).and_then(writable) {
        Ok(m) => m,
        Err(s) => return s as i32,
    };
    let key = match read(&env, k, kl) {
        Ok(k) => k,
        Err(s) => return s as i32,
    };
    with_stream(&mut env, |s| s.map_remove(map, &key)).unwrap_or_else(|s| s) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values() {
        assert!(valid_name(b"x-foo"));
        assert!(valid_name(b":path"));
        assert!(!valid_name(b""));
        assert!(!valid_name(b":"));
        assert!(!valid_name(b"a b"));
        assert!(!valid_name(b"a\r\nb"));
        assert!(!valid_name(b"a:b"));
        assert!(framing_header(b"Transfer-Encoding"));
        assert!(framing_header(b"connection"));
        assert!(!framing_header(b"trailer"));
        assert!(!framing_header(b"x-te"));
        assert!(valid_value(b""));
        assert!(valid_value(b"v a l"));
        assert!(!valid_value(b"v\r\nx-injected: 1"));
        assert!(!valid_value(b"v\0"));
    }
}
