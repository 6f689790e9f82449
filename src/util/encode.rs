//! Property values in Envoy's encodings, written into the hostcall's output: integers as
//! 8-byte little-endian, strings as their bytes.

use proxy_wasm_host::Status;

pub(crate) fn int(out: &mut Vec<u8>, v: i64) -> Status {
    out.extend_from_slice(&v.to_le_bytes());
    Status::Ok
}

pub(crate) fn string(out: &mut Vec<u8>, v: &[u8]) -> Status {
    out.extend_from_slice(v);
    Status::Ok
}
