//! Floors for scripts/bench (issue 13): costs no host can go below, measured on this machine,
//! so that a target out of reach is shown with a measured lower bound, not an estimate.
//! Each figure is printed as `FLOOR <name> <ns>`: the fastest of BATCHES batches, after a warm-up
//! (a floor is what the machine can do: noise only adds).
//!
//! - `empty_call`: one call of an empty exported wasm function through wasmer's
//!   `TypedFunction::call`, compiled as the host core compiles plugins (Cranelift, the allowed
//!   features, the metering middleware of the default CPU budget). Every wasm entry costs at
//!   least this: no nginx, no host plumbing (no context, no budget reset, no stream).
//! - `empty_call_nometer`: the same without metering (wasm_max_instructions 0), for reference.
//! - `host_empty_callback`: an empty `proxy_on_request_headers` through `PluginInstance` (the
//!   host core's per-callback plumbing on top of `empty_call`), for reference.
//! - `copy_1mib`: one `copy_from_slice` of 1 MiB into a preallocated buffer: a filter that
//!   reads a 1 MiB body must have it copied into its memory at least once.
//! - `sdk_noop_request`, `sdk_fault_request`: every callback of one request of the Rust-SDK
//!   bench filter (t/filters/out/bench.wasm) in `noop` and fault-injection mode, through the
//!   host core with a `MemoryStream`: the filter's own code and the host core, without nginx.
//!   `sdk_*_entries` are the wasm entries of one such request, counted by the host's figures.
//!   `sdk_headers_request`: the same in `headers` mode (reads two request headers, adds two
//!   response headers), the filter of case 2.
//!
//! `cargo test --release -p proxy-wasm-host --test call_floor -- --ignored --nocapture --test-threads=1`

use std::hint::black_box;
use std::time::Instant;

use proxy_wasm_host::{
    compile, new_engine, Compiler, Limits, LogLevel, Logger, MemoryStream, PluginInstance, DEFAULT_LIMITS,
};

const BATCHES: usize = 15;
const FAULT: &str = r#"{"http_status":200,"body":"hello world"}"#;

struct Quiet;

impl Logger for Quiet {
    fn level(&self) -> LogLevel {
        LogLevel::Critical
    }
    fn log(&self, _: LogLevel, _: &[u8]) {}
}

/// Nanoseconds per iteration of `f` in the fastest of BATCHES batches of `n`, after one batch of warm-up.
fn fastest_ns(n: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..n {
        f();
    }
    let mut v: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    // The fastest batch: a lower bound is what the machine can do, and noise only adds.
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[0]
}

fn floor(name: &str, ns: f64) {
    println!("FLOOR {name} {ns:.2}");
}

/// The wasmer engine the host core builds for `limits` (runtime.rs `build_engine`, which is
/// crate-private): Cranelift, the host's features, metering at 1 point per operator when a
/// budget is set. The host's memory tunables are left out: the empty function has no memory.
fn wasmer_engine(limits: &Limits) -> wasmer::Engine {
    use wasmer::sys::CompilerConfig;
    let e = new_engine(Compiler::Cranelift, limits).unwrap();
    let mut c = wasmer::sys::Cranelift::default();
    if e.limits.max_instructions > 0 {
        c.push_middleware(std::sync::Arc::new(wasmer_middlewares::Metering::new(e.limits.max_instructions, |_| 1)));
    }
    wasmer::sys::EngineBuilder::new(c).set_features(Some(proxy_wasm_host::features())).engine().into()
}

fn empty_call(limits: &Limits) -> f64 {
    let mut store = wasmer::Store::new(wasmer_engine(limits));
    let wat = r#"(module (func (export "f") (param i32 i32 i32) (result i32) i32.const 0))"#;
    let module = wasmer::Module::new(&store, wat).unwrap();
    let instance = wasmer::Instance::new(&mut store, &module, &wasmer::imports! {}).unwrap();
    if limits.max_instructions > 0 {
        // Once, not per call: enough points for every call below.
        wasmer_middlewares::metering::set_remaining_points(&mut store, &instance, u64::MAX / 2);
    }
    let f: wasmer::TypedFunction<(i32, i32, i32), i32> = instance.exports.get_typed_function(&store, "f").unwrap();
    fastest_ns(1_000_000, || {
        black_box(f.call(&mut store, black_box(1), 2, 3).unwrap());
    })
}

#[test]
#[ignore]
fn runtime_floors() {
    floor("empty_call", empty_call(&DEFAULT_LIMITS));
    floor("empty_call_nometer", empty_call(&Limits { max_instructions: 0, ..DEFAULT_LIMITS }));

    let wat = r#"(module
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))"#;
    let m = compile(&new_engine(Compiler::Cranelift, &DEFAULT_LIMITS).unwrap(), wat.as_bytes()).unwrap();
    let mut inst = PluginInstance::new(&m, "floor", Vec::new(), Box::new(Quiet), &DEFAULT_LIMITS).unwrap();
    let root = inst.create_root_context(Some(Vec::new())).unwrap();
    let ctx = inst.create_http_context(root).unwrap();
    let mut st = MemoryStream::default();
    floor("host_empty_callback", fastest_ns(300_000, || {
        inst.on_request_headers(ctx, &mut st, 0, false).unwrap();
    }));

    let src: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut dst = vec![0u8; 1 << 20];
    floor("copy_1mib", fastest_ns(500, || {
        black_box(&mut dst).copy_from_slice(black_box(&src));
    }));
    assert_eq!(dst, src);
}

fn pairs(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    list.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
}

/// The bench filter with one root configured with `config`.
fn bench_filter(bytes: &[u8], config: &str) -> (PluginInstance, u32) {
    let m = compile(&new_engine(Compiler::Cranelift, &DEFAULT_LIMITS).unwrap(), bytes).unwrap();
    let mut inst = PluginInstance::new(&m, "bench", Vec::new(), Box::new(Quiet), &DEFAULT_LIMITS).unwrap();
    let root = inst.create_root_context(Some(config.as_bytes().to_vec())).unwrap();
    (inst, root)
}

/// One request of the noop (or headers) filter: 7 callbacks (context_create, request and response headers,
/// response body, done, log, delete).
fn noop_request(inst: &mut PluginInstance, root: u32, st: &mut MemoryStream, nreq: u32, nresp: u32) {
    let ctx = inst.create_http_context(root).unwrap();
    assert!(inst.on_request_headers(ctx, st, nreq, true).unwrap().local_response.is_none());
    inst.on_response_headers(ctx, st, nresp, false).unwrap();
    inst.on_body(true, ctx, st, 11, true).unwrap();
    inst.on_done_and_log(ctx, st).unwrap();
    inst.on_delete(ctx).unwrap();
}

/// One request of the fault-injection filter: the local response from on_request_headers,
/// then done, log, delete (nginx runs no response callbacks on the local response).
fn fault_request(inst: &mut PluginInstance, root: u32, st: &mut MemoryStream, nreq: u32) {
    let ctx = inst.create_http_context(root).unwrap();
    let out = inst.on_request_headers(ctx, st, nreq, true).unwrap();
    let lr = black_box(out.local_response).expect("a local response");
    assert_eq!((lr.status, &lr.body[..]), (200, &b"hello world"[..]));
    inst.on_done_and_log(ctx, st).unwrap();
    inst.on_delete(ctx).unwrap();
}

/// Wasm entries of one request, as the host's per-root figures count them.
fn entries(inst: &mut PluginInstance, root: u32, one: impl FnOnce(&mut PluginInstance)) -> u64 {
    inst.set_stats(true);
    inst.take_stats();
    one(inst);
    let s = inst.take_stats();
    inst.set_stats(false);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].0, root);
    assert_eq!(s[0].1.failures, [0; 5]);
    s[0].1.callbacks
}

#[test]
#[ignore]
fn sdk_request_floors() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../t/filters/out/bench.wasm");
    let Ok(bytes) = std::fs::read(path) else {
        println!("FLOOR-SKIP sdk_noop_request sdk_fault_request: {path} is missing (bash scripts/build-filters.sh)");
        return;
    };
    let mut st = MemoryStream {
        request_headers: pairs(&[
            (":method", "GET"),
            (":path", "/c6/wasm"),
            (":authority", "127.0.0.1"),
            (":scheme", "http"),
            ("user-agent", "wrk"),
        ]),
        response_headers: Some(pairs(&[(":status", "200"), ("content-type", "text/plain"), ("content-length", "11")])),
        response_body: Some(b"hello world".to_vec()),
        ..MemoryStream::default()
    };
    let nreq = st.request_headers.len() as u32;
    let nresp = st.response_headers.as_ref().unwrap().len() as u32;

    let (mut inst, root) = bench_filter(&bytes, "noop");
    let n = entries(&mut inst, root, |i| noop_request(i, root, &mut st.clone(), nreq, nresp));
    floor("sdk_noop_request", fastest_ns(20_000, || noop_request(&mut inst, root, &mut st, nreq, nresp)));
    println!("FLOOR sdk_noop_entries {n}");

    // The headers filter adds two response headers per request: dropped again after each
    // request, so that every request sees the same maps (the drop is counted in the figure).
    let (mut inst, root) = bench_filter(&bytes, "headers");
    let one = |i: &mut PluginInstance, st: &mut MemoryStream| {
        noop_request(i, root, st, nreq, nresp);
        let added = st.response_headers.as_mut().unwrap();
        assert_eq!(added.len(), nresp as usize + 2);
        added.truncate(nresp as usize);
    };
    let n = entries(&mut inst, root, |i| one(i, &mut st.clone()));
    floor("sdk_headers_request", fastest_ns(20_000, || one(&mut inst, &mut st)));
    println!("FLOOR sdk_headers_entries {n}");

    let (mut inst, root) = bench_filter(&bytes, FAULT);
    let n = entries(&mut inst, root, |i| fault_request(i, root, &mut st.clone(), nreq));
    floor("sdk_fault_request", fastest_ns(20_000, || fault_request(&mut inst, root, &mut st, nreq)));
    println!("FLOOR sdk_fault_entries {n}");
    assert!(st.logs.is_empty(), "{:?}", st.logs);
}
