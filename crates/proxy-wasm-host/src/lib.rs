//! The Proxy-Wasm host core and its wasm runtime layer, independent of nginx.
//!
//! - `abi`, `maps`: the ABI's constants and header-map codec (pure, fuzzable).
//! - `runtime`: wasmer engines, the WebAssembly features allowed, compilation, load-time validation.
//! - `cache`: the on-disk cache of compiled modules and who may trust or write it.
//! - `limits`: every bound the host puts on a plugin, in one place.
//! - `instance`: one plugin instance, its contexts and the callback lifecycle.
//! - `hostcalls`: the functions plugins import (Proxy-Wasm and WASI).
//! - `http_call`: calls plugins dispatch and the responses the embedder hands back;
//!   `grpc_call`: gRPC calls framed as HTTP/2 requests, their answers as events;
//!   `call_target`: call targets and the allow-list patterns that match them.
//! - `stream`: the `HttpStream` trait an embedder implements for one request.
//! - `shared_store`: shared data, queues and metrics in a raw (shared) memory region.

pub mod abi;
pub mod cache;
mod child_compile;
pub mod call_target;
mod env;
pub mod hostcalls;
pub mod grpc_call;
pub mod http_call;
pub mod instance;
pub mod limits;
pub mod maps;
mod memory;
pub mod runtime;
pub mod shared_store;
pub mod stream;

pub use abi::{Action, LogLevel, MapType, Status};
pub use env::{Callback, Logger, StreamOps};
pub use grpc_call::{GrpcEvent, GrpcKind};
pub use http_call::{CallPolicy, HttpCallRequest, HttpCallResponse};
pub use instance::{CallStats, FailureKind, HostError, Outcome, PluginInstance};
pub use limits::{Limits, DEFAULT_LIMITS};
pub use cache::{compile_cached, compile_cached_in_child, CacheOutcome, CachePolicy};
pub use runtime::{compile, features, new_engine, CompiledModule, Compiler, Engine};
pub use shared_store::SharedStore;
pub use stream::{HttpStream, LocalResponse, MemoryStream, Overlay, StreamOverlay};
