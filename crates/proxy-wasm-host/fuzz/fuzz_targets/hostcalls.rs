//! Every hostcall with arguments the fuzzer chooses (wild pointers, huge or negative
//! lengths, malformed serialized maps), through a WAT plugin that runs the input as a
//! program (hostcalls.wat). The host must answer with statuses: a trap, a panic or a hang is a
//! bug. Ticks and stream closes are recorded, never acted on here; HTTP calls the program
//! dispatches are answered (with a response made of the input, or as failed), which runs the
//! program again with the call-response maps and buffer in reach (gRPC calls get events made
//! of the input: metadata, messages, a close, or are left half-answered); shared data, queues and
//! metrics go to a heap-backed store.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use proxy_wasm_host::shared_store::{SharedStore, MIN_SIZE};
use proxy_wasm_host::{compile, new_engine, Compiler, GrpcEvent, HttpCallResponse, Limits, LogLevel, Logger, MemoryStream, PluginInstance};

struct Quiet;
impl Logger for Quiet {
    fn level(&self) -> LogLevel {
        LogLevel::Trace
    }
    fn log(&self, _: LogLevel, _: &[u8]) {}
}

thread_local! {
    static PLUGIN: RefCell<Option<(PluginInstance, u32)>> = const { RefCell::new(None) };
}

/// Modules production refuses (runtime::features): the fuzzed plugin runs in the same engine.
const REFUSED: [&str; 2] = [
    r#"(module (memory (export "memory") 1 1 shared) (func (export "proxy_abi_version_0_2_1"))
       (func (export "malloc") (param i32) (result i32) (i32.const 0)))"#,
    r#"(module (memory (export "memory") 1) (memory 1) (func (export "proxy_abi_version_0_2_1"))
       (func (export "malloc") (param i32) (result i32) (i32.const 0)))"#,
];

fn fresh() -> (PluginInstance, u32) {
    let limits = Limits { max_memory: 1 << 20, max_instructions: 10_000_000 };
    let engine = new_engine(Compiler::Cranelift, &limits).expect("engine");
    for m in REFUSED {
        let e = compile(&engine, m.as_bytes()).err().expect("threads and multi-memory are refused");
        assert!(e.contains("which this host refuses"), "{e}");
    }
    let module = compile(&engine, include_bytes!("hostcalls.wat")).expect("the fuzz plugin compiles");
    let mut inst = PluginInstance::new(&module, "fuzz", b"vm".to_vec(), Box::new(Quiet), &limits).expect("instance");
    inst.set_shared_store(Some(std::sync::Arc::new(SharedStore::new_private(MIN_SIZE))));
    let root = inst.create_root_context(Some(b"config".to_vec())).expect("root");
    (inst, root)
}

fuzz_target!(|data: &[u8]| {
    PLUGIN.with(|p| {
        let mut p = p.borrow_mut();
        let (inst, root) = p.get_or_insert_with(fresh);
        let mut stream = MemoryStream {
            request_headers: vec![(b"f".to_vec(), data.to_vec()), (b":path".to_vec(), b"/".to_vec())],
            response_headers: Some(vec![(b":status".to_vec(), b"200".to_vec())]),
            response_body: Some(data.iter().rev().copied().collect()),
            ..Default::default()
        };
        let ok = (|| {
            let ctx = inst.create_http_context(*root).ok()?;
            inst.on_request_headers(ctx, &mut stream, 2, false).ok()?;
            inst.on_body(true, ctx, &mut stream, data.len(), true).ok()?;
            for (n, call) in inst.take_http_calls().into_iter().enumerate() {
                if call.grpc.is_some() {
                    // A gRPC answer made of the input: metadata, messages, a close (some
                    // calls stop early: never closed, forgotten below).
                    let md = vec![(b"x-bin".to_vec(), data.to_vec()), (b"k".to_vec(), b"v".to_vec())];
                    let events = [
                        GrpcEvent::InitialMetadata(md.clone()),
                        GrpcEvent::Message(data.to_vec()),
                        GrpcEvent::Message(Vec::new()),
                        GrpcEvent::TrailingMetadata(md),
                        GrpcEvent::Close { status: data.first().copied().unwrap_or(0) as u32 % 17, message: data.to_vec() },
                    ];
                    let upto = if n % 3 == 2 { 3 } else { events.len() };
                    for ev in events.into_iter().take(upto) {
                        inst.on_grpc_event(call.context_id, call.token, ev, Some(&mut stream)).ok()?;
                    }
                    if upto < 5 {
                        inst.forget_http_calls(&[call.token]);
                    }
                    continue;
                }
                let resp = if n % 2 == 0 {
                    HttpCallResponse {
                        headers: vec![(b":status".to_vec(), b"200".to_vec()), (b"x".to_vec(), data.to_vec())],
                        body: data.to_vec(),
                        trailers: vec![(b"t".to_vec(), b"1".to_vec())],
                    }
                } else {
                    HttpCallResponse::failed()
                };
                inst.on_http_call_response(call.context_id, call.token, &resp, Some(&mut stream)).ok()?;
            }
            // Calls made from the responses are never answered: the instance stops counting them.
            let late: Vec<u32> = inst.take_http_calls().iter().map(|c| c.token).collect();
            inst.forget_http_calls(&late);
            inst.on_delete(ctx).ok()
        })();
        // A host error can only be the plugin's own (the CPU budget): start over cleanly.
        if ok.is_none() {
            *p = None;
        }
    });
});
