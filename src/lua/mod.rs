//! The OpenResty / APISIX path: api7/wasm-nginx-module's C functions, driven by
//! `resty.proxy-wasm` through LuaJIT FFI.

pub(crate) mod calls;
pub(crate) mod ffi;
