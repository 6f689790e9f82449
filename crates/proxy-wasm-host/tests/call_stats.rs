//! The per-root cost figures (`PluginInstance::take_stats`) behind the embedder's per-filter
//! metrics: what counts as a callback, failure kinds, instructions; and (ignored, run by hand)
//! what they cost per callback.

use proxy_wasm_host::{
    compile, new_engine, CallStats, Compiler, FailureKind, LogLevel, Logger, MemoryStream, PluginInstance, DEFAULT_LIMITS,
};

struct Quiet;

impl Logger for Quiet {
    fn level(&self) -> LogLevel {
        LogLevel::Critical
    }
    fn log(&self, _: LogLevel, _: &[u8]) {}
}

/// Exports context_create and request_headers (no on_done/on_log/on_delete): request headers
/// trap on `unreachable` when the header count is 1, read out of bounds when 2, call
/// proc_exit when 3, loop when 4.
const WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param $c i32) (param $n i32) (param i32) (result i32)
    (if (i32.eq (local.get $n) (i32.const 1)) (then unreachable))
    (if (i32.eq (local.get $n) (i32.const 2)) (then (drop (i32.load (i32.const 0x7ffffff0)))))
    (if (i32.eq (local.get $n) (i32.const 3)) (then (call $exit (i32.const 1))))
    (if (i32.eq (local.get $n) (i32.const 4)) (then (loop $l (br $l))))
    (i32.const 0)))"#;

fn instance(limits: &proxy_wasm_host::Limits, stats: bool) -> (PluginInstance, u32) {
    let m = compile(&new_engine(Compiler::Cranelift, limits).unwrap(), WAT.as_bytes()).unwrap();
    let mut inst = PluginInstance::new(&m, "t", Vec::new(), Box::new(Quiet), limits).unwrap();
    inst.set_stats(stats);
    let root = inst.create_root_context(Some(Vec::new())).unwrap();
    (inst, root)
}

fn only(mut v: Vec<(u32, CallStats)>, root: u32) -> CallStats {
    assert_eq!(v.len(), 1, "{v:?}");
    let (r, s) = v.pop().unwrap();
    assert_eq!(r, root);
    s
}

#[test]
fn callbacks_instructions_and_failure_kinds() {
    let (mut inst, root) = instance(&DEFAULT_LIMITS, true);
    // The root's start: context_create only (vm_start and configure are not exported).
    let s = only(inst.take_stats(), root);
    assert_eq!((s.callbacks, s.buckets.iter().sum::<u64>()), (1, 1));
    for _ in 0..5 {
        let ctx = inst.create_http_context(root).unwrap();
        inst.on_request_headers(ctx, &mut MemoryStream::default(), 0, false).unwrap();
        inst.on_done_and_log(ctx, &mut MemoryStream::default()).unwrap(); // not exported: not counted
        inst.on_delete(ctx).unwrap(); // idem
    }
    let s = only(inst.take_stats(), root);
    assert_eq!(s.callbacks, 10);
    assert!(s.instructions > 0);
    assert_eq!(s.failures, [0; 5]);
    assert_eq!(s.buckets.iter().sum::<u64>(), 10);
    assert!(inst.take_stats().is_empty(), "taken");
    assert_eq!(inst.memory_bytes(), 65536);

    for (n, kind) in [(1, FailureKind::Trap), (2, FailureKind::Memory), (3, FailureKind::ProcExit)] {
        let (mut inst, root) = instance(&DEFAULT_LIMITS, true);
        let ctx = inst.create_http_context(root).unwrap();
        assert!(inst.on_request_headers(ctx, &mut MemoryStream::default(), n, false).is_err());
        let s = only(inst.take_stats(), root);
        let mut want = [0; 5];
        want[kind as usize] = 1;
        assert_eq!((s.callbacks, s.failures), (3, want), "{kind:?}");
    }
    let limits = proxy_wasm_host::Limits { max_instructions: 100_000, ..DEFAULT_LIMITS };
    let (mut inst, root) = instance(&limits, true);
    let ctx = inst.create_http_context(root).unwrap();
    assert!(inst.on_request_headers(ctx, &mut MemoryStream::default(), 4, false).is_err());
    let s = only(inst.take_stats(), root);
    assert_eq!(s.failures[FailureKind::CpuBudget as usize], 1);
    assert!(s.instructions >= 100_000, "{}", s.instructions);

    // Off (the default): nothing gathered.
    let (mut inst, root) = instance(&DEFAULT_LIMITS, false);
    let ctx = inst.create_http_context(root).unwrap();
    inst.on_request_headers(ctx, &mut MemoryStream::default(), 0, false).unwrap();
    assert!(inst.take_stats().is_empty());
}

/// `cargo test --release -p proxy-wasm-host --test call_stats -- --ignored --nocapture`
#[test]
#[ignore]
fn cost_per_callback() {
    const N: u32 = 300_000;
    let mut best = [f64::MAX; 2];
    for _ in 0..5 {
        for (i, on) in [false, true].into_iter().enumerate() {
            let (mut inst, root) = instance(&DEFAULT_LIMITS, on);
            let ctx = inst.create_http_context(root).unwrap();
            let mut st = MemoryStream::default();
            let t = std::time::Instant::now();
            for _ in 0..N {
                inst.on_request_headers(ctx, &mut st, 0, false).unwrap();
            }
            best[i] = best[i].min(t.elapsed().as_nanos() as f64 / N as f64);
        }
    }
    println!("on_request_headers: {:.1} ns off, {:.1} ns on: {:.1} ns per callback for the figures", best[0], best[1], best[1] - best[0]);
}
