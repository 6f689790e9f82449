//! The engine's feature set, the bounds of limits.rs, allocator re-entrancy, host panics and
//! the compile cache's trust rules (issue 12), with small WAT plugins.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use proxy_wasm_host::cache::{cache_key, effective_uid};
use proxy_wasm_host::limits::*;
use proxy_wasm_host::{
    compile, compile_cached, maps, new_engine, CacheOutcome, CachePolicy, CompiledModule, Compiler, Engine, HostError,
    HttpStream, LogLevel, Logger, MapType, MemoryStream, Overlay, PluginInstance, Status, StreamOverlay, DEFAULT_LIMITS,
};

type Records = Arc<Mutex<Vec<(LogLevel, String)>>>;

struct TestLogger {
    level: LogLevel,
    records: Records,
}

impl Logger for TestLogger {
    fn level(&self) -> LogLevel {
        self.level
    }
    fn log(&self, level: LogLevel, msg: &[u8]) {
        self.records.lock().unwrap().push((level, String::from_utf8_lossy(msg).into_owned()));
    }
}

fn engine() -> Engine {
    new_engine(Compiler::Cranelift, &DEFAULT_LIMITS).expect("cranelift engine")
}

/// A plugin: `imports`, a memory of `pages`, the ABI marker, a bump allocator at 64 KiB,
/// and `funcs`.
fn plugin(imports: &str, pages: u32, funcs: &str) -> String {
    format!(
        r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  {imports}
  (memory (export "memory") {pages})
  (global $heap (mut i32) (i32.const 65536))
  (func (export "proxy_abi_version_0_2_1"))
  (func $bump (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (data (i32.const 900) "yes")
  (func $yes (drop (call $log (i32.const 5) (i32.const 900) (i32.const 3))))
  {funcs})"#
    )
}

const ALLOC: &str = r#"(func (export "proxy_on_memory_allocate") (param i32) (result i32) (call $bump (local.get 0)))"#;

fn build(text: &str) -> CompiledModule {
    compile(&engine(), text.as_bytes()).unwrap_or_else(|e| panic!("compile failed: {e}\n{text}"))
}

fn compile_err(text: &str) -> String {
    match compile(&engine(), text.as_bytes()) {
        Ok(_) => panic!("expected a compile error for:\n{text}"),
        Err(e) => e,
    }
}

fn instance(m: &CompiledModule, level: LogLevel) -> (PluginInstance, Records) {
    let records: Records = Arc::default();
    let logger = Box::new(TestLogger { level, records: records.clone() });
    let inst = PluginInstance::new(m, "test", Vec::new(), logger, &DEFAULT_LIMITS).unwrap_or_else(|e| panic!("{e}"));
    (inst, records)
}

fn stream() -> MemoryStream {
    MemoryStream { response_headers: Some(Vec::new()), ..Default::default() }
}

/// Runs on_request_headers of a new HTTP context; returns the stream.
fn request(inst: &mut PluginInstance) -> MemoryStream {
    let root = inst.create_root_context(Some(Vec::new())).expect("root");
    let ctx = inst.create_http_context(root).expect("context");
    let mut s = stream();
    inst.on_request_headers(ctx, &mut s, 0, false).expect("on_request_headers");
    s
}

fn said_yes(s: &MemoryStream) -> bool {
    s.logs.iter().any(|(_, m)| m == "yes")
}

// ---------------------------------------------------------------------------------------------
// Features
// ---------------------------------------------------------------------------------------------

/// A Proxy-Wasm module with `extra` fields and no memory of its own unless given.
fn bare(memory: &str, extra: &str) -> String {
    format!(
        r#"(module {memory} (func (export "proxy_abi_version_0_2_1"))
           (func (export "malloc") (param i32) (result i32) (i32.const 0)) {extra})"#
    )
}

#[test]
fn refused_features_are_named() {
    let shared = r#"(memory (export "memory") 1 1 shared)"#;
    let e = compile_err(&bare(shared, ""));
    assert!(e.starts_with("uses the WebAssembly feature threads (shared memory, atomics), which this host refuses"), "{e}");
    let wait = r#"(func (export "w") (drop (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1))))"#;
    let e = compile_err(&bare(shared, wait));
    assert!(e.contains("threads"), "{e}");
    // Atomics on an unshared memory need the feature too.
    let e = compile_err(&bare(r#"(memory (export "memory") 1)"#, r#"(func (export "n") (drop (memory.atomic.notify (i32.const 0) (i32.const 1))))"#));
    assert!(e.contains("threads"), "{e}");

    let two = r#"(memory (export "memory") 1) (memory $b 1)"#;
    let e = compile_err(&bare(two, ""));
    assert!(e.starts_with("uses the WebAssembly feature multi-memory (more than one memory), which this host refuses"), "{e}");

    let e = compile_err(&bare(r#"(memory (export "memory") 1 1 shared) (memory $b 1)"#, ""));
    assert!(e.starts_with("uses the WebAssembly features threads (shared memory, atomics), multi-memory"), "{e}");

    let e = compile_err(&bare(r#"(memory (export "memory") i64 1)"#, ""));
    assert!(e.contains("memory64"), "{e}");

    let e = compile_err(&bare(r#"(memory (export "memory") 1)"#, r#"(tag $t) (func (export "x") (throw $t))"#));
    assert!(e.contains("exception handling"), "{e}");

    let e = compile_err(&bare(r#"(memory (export "memory") 1)"#, r#"(func $f (return_call $f))"#));
    assert!(e.contains("tail calls"), "{e}");

    // Still an invalid module when no feature would make it valid.
    let e = compile_err(&bare(r#"(memory (export "memory") 1)"#, r#"(func (result i32))"#));
    assert!(e.starts_with("is not a valid wasm module"), "{e}");
}

#[test]
fn the_features_sdks_emit_are_allowed() {
    let body = r#"
      (table $t 1 funcref)
      (func (export "simd") (result i32) (i32x4.extract_lane 0 (v128.const i32x4 1 2 3 4)))
      (func (export "bulk") (memory.fill (i32.const 0) (i32.const 1) (i32.const 16)) (memory.copy (i32.const 16) (i32.const 0) (i32.const 16)))
      (func (export "refs") (result i32) (table.grow $t (ref.null func) (i32.const 1)))
      (func (export "multi") (result i32 i32) (i32.const 1) (i32.const 2))
      (func (export "signext") (result i32) (i32.extend8_s (i32.const 255)))
      (func (export "sat") (result i32) (i32.trunc_sat_f32_s (f32.const 1e30)))"#;
    build(&bare(r#"(memory (export "memory") 1)"#, body));
}

#[test]
fn a_cached_artifact_cannot_bring_in_a_refused_feature() {
    let text = bare(r#"(memory (export "memory") 1 1 shared)"#, "");
    let bytes = wasmer::wat2wasm(text.as_bytes()).unwrap().into_owned();
    // An artifact of this module, as a host with wasmer's default features would cache it.
    let permissive: wasmer::Engine = wasmer::sys::EngineBuilder::new(wasmer::sys::Cranelift::default()).engine().into();
    let artifact = wasmer::Module::new(&permissive, &bytes).expect("wasmer's defaults accept threads").serialize().unwrap();
    let dir = temp_dir("refused");
    std::fs::write(dir.join(cache_key(&bytes, Compiler::Cranelift, &DEFAULT_LIMITS)), &artifact).unwrap();
    let policy = CachePolicy { owner: effective_uid(), write: true };
    match compile_cached(&engine(), &bytes, Some(&dir), policy) {
        Ok(_) => panic!("a cached threads module was loaded"),
        Err(e) => assert!(e.contains("threads"), "{e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

#[test]
fn tables_are_capped() {
    let funcs = format!(
        r#"(table $t 1 funcref)
        {ALLOC}
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          ;; 2^30 elements fail; growing to the cap works; one more fails
          (if (i32.eq (table.grow $t (ref.null func) (i32.const 0x40000000)) (i32.const -1))
            (then
              (if (i32.ne (table.grow $t (ref.null func) (i32.const {grow})) (i32.const -1))
                (then
                  (if (i32.eq (table.grow $t (ref.null func) (i32.const 1)) (i32.const -1))
                    (then (call $yes)))))))
          (i32.const 0))"#,
        grow = MAX_TABLE_ELEMENTS - 1
    );
    let (mut inst, _) = instance(&build(&plugin("", 2, &funcs)), LogLevel::Info);
    assert!(said_yes(&request(&mut inst)));

    let e = compile_err(&plugin("", 1, &format!("{ALLOC} (table {} funcref)", MAX_TABLE_ELEMENTS + 1)));
    assert!(e.contains("declares a table of 1048577 elements at start, more than the limit of 1048576"), "{e}");
    let tables: String = (0..=MAX_TABLES).map(|i| format!("(table $t{i} 1 funcref)")).collect();
    let e = compile_err(&plugin("", 1, &format!("{ALLOC} {tables}")));
    assert!(e.contains(&format!("has {} tables, more than the limit of {MAX_TABLES}", MAX_TABLES + 1)), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Log messages
// ---------------------------------------------------------------------------------------------

/// 16 MiB of memory, 15 of them 'A', and fd_write(2) of 1024 iovecs covering those 15 MiB
/// each: 15 GiB if the host joined them.
fn fd_write_flood() -> CompiledModule {
    let imports = r#"(import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))"#;
    let funcs = format!(
        r#"{ALLOC}
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (local $i i32)
          (memory.fill (i32.const 0x100000) (i32.const 65) (i32.const 0xF00000))
          (loop $iov
            (i32.store (i32.add (i32.const 0x40000) (i32.mul (local.get $i) (i32.const 8))) (i32.const 0x100000))
            (i32.store (i32.add (i32.const 0x40004) (i32.mul (local.get $i) (i32.const 8))) (i32.const 0xF00000))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $iov (i32.lt_u (local.get $i) (i32.const 1024))))
          ;; SUCCESS, and every byte reported written (saturated at u32::MAX)
          (if (i32.eqz (call $fd_write (i32.const 2) (i32.const 0x40000) (i32.const 1024) (i32.const 3072)))
            (then (if (i32.eq (i32.load (i32.const 3072)) (i32.const -1)) (then (call $yes)))))
          (i32.const 0))"#
    );
    build(&plugin(imports, 256, &funcs))
}

#[test]
fn fd_write_keeps_a_bounded_prefix() {
    let (mut inst, _) = instance(&fd_write_flood(), LogLevel::Info);
    let s = request(&mut inst);
    assert!(said_yes(&s));
    let flood: Vec<_> = s.logs.iter().filter(|(_, m)| m.starts_with('A')).collect();
    assert_eq!(flood.len(), 1);
    assert_eq!(flood[0].0, LogLevel::Error);
    assert_eq!(flood[0].1.len(), MAX_LOG_MESSAGE);
}

/// A stream whose log records nothing below Critical (a location's own error_log level).
struct QuietStream(MemoryStream);

impl StreamOverlay for QuietStream {
    fn inner(&mut self) -> &mut dyn HttpStream {
        &mut self.0
    }
    fn inner_ref(&self) -> &dyn HttpStream {
        &self.0
    }
    fn log_level(&self) -> Option<LogLevel> {
        Some(LogLevel::Critical)
    }
}

#[test]
fn fd_write_copies_nothing_when_the_level_is_off() {
    // The instance logger records everything; the request's log only Critical.
    let (mut inst, records) = instance(&fd_write_flood(), LogLevel::Trace);
    let root = inst.create_root_context(Some(Vec::new())).unwrap();
    let ctx = inst.create_http_context(root).unwrap();
    let mut s = Overlay(QuietStream(stream()));
    inst.on_request_headers(ctx, &mut s, 0, false).unwrap();
    // "yes" is Critical: the call succeeded; the Error-level flood was not logged anywhere.
    assert!(said_yes(&s.0 .0));
    assert!(!s.0 .0.logs.iter().any(|(_, m)| m.starts_with('A')));
    assert!(!records.lock().unwrap().iter().any(|(_, m)| m.starts_with('A')));
}

#[test]
fn proxy_log_truncates_long_messages() {
    let funcs = format!(
        r#"{ALLOC}
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (memory.fill (i32.const 0x100000) (i32.const 66) (i32.const 0xF00000))
          (drop (call $log (i32.const 2) (i32.const 0x100000) (i32.const 0xF00000)))
          (i32.const 0))"#
    );
    let (mut inst, _) = instance(&build(&plugin("", 256, &funcs)), LogLevel::Info);
    let s = request(&mut inst);
    assert_eq!(s.logs.len(), 1);
    assert_eq!(s.logs[0].1.len(), MAX_LOG_MESSAGE);
}

// ---------------------------------------------------------------------------------------------
// Header edits and root properties
// ---------------------------------------------------------------------------------------------

/// Adds `x-a: <len bytes>` to `map` until refused; says yes if the last status was
/// BAD_ARGUMENT (2).
fn add_until_refused(callback: &str, map: u32, len: u32) -> String {
    format!(
        r#"(func (export "{callback}") (param i32 i32 i32) (result i32)
          (local $st i32) (local $i i32)
          (memory.fill (i32.const 0x9000) (i32.const 118) (i32.const {len}))
          (block $done
            (loop $next
              (local.set $st (call $add (i32.const {map}) (i32.const 960) (i32.const 3) (i32.const 0x9000) (i32.const {len})))
              (br_if $done (local.get $st))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $next (i32.lt_u (local.get $i) (i32.const 100000)))))
          (if (i32.eq (local.get $st) (i32.const 2)) (then (call $yes)))
          (i32.const 0))"#
    )
}

#[test]
fn header_edits_are_bounded_per_context_and_map() {
    let imports = r#"(import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))"#;
    let funcs = format!(
        r#"{ALLOC} (data (i32.const 960) "x-a") {} {}"#,
        add_until_refused("proxy_on_request_headers", 0, 10),
        add_until_refused("proxy_on_response_headers", 2, 8000)
    );
    let (mut inst, _) = instance(&build(&plugin(imports, 2, &funcs)), LogLevel::Info);
    let root = inst.create_root_context(Some(Vec::new())).unwrap();
    for _ in 0..2 {
        // A new context gets a new budget.
        let ctx = inst.create_http_context(root).unwrap();
        let mut s = stream();
        inst.on_request_headers(ctx, &mut s, 0, false).unwrap();
        assert!(said_yes(&s));
        assert_eq!(s.request_headers.len(), MAX_HEADER_EDITS as usize);
        // The byte bound, on another map of the same context.
        let mut r = stream();
        inst.on_response_headers(ctx, &mut r, 0, false).unwrap();
        assert!(said_yes(&r));
        assert_eq!(r.response_headers.as_ref().unwrap().len(), MAX_HEADER_EDIT_BYTES / (3 + 8000));
        inst.on_delete(ctx).unwrap();
    }
}

#[test]
fn root_properties_are_bounded() {
    let imports = r#"(import "env" "proxy_set_property" (func $set (param i32 i32 i32 i32) (result i32)))"#;
    // Sets distinct paths with `len`-byte values until refused; says yes when `expect` were set.
    let funcs = format!(
        r#"{ALLOC}
        (func $flood (param $len i32) (param $expect i32)
          (local $i i32)
          (i32.store8 (i32.const 4096) (i32.const 112))
          (block $done
            (loop $next
              (i32.store (i32.const 4097) (i32.add (local.get $i) (i32.add (local.get $len) (i32.const 0x01010101))))
              (br_if $done (call $set (i32.const 4096) (i32.const 5) (i32.const 0x9000) (local.get $len)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $next (i32.lt_u (local.get $i) (i32.const 100000)))))
          (if (i32.eq (local.get $i) (local.get $expect)) (then (call $yes))))
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (memory.fill (i32.const 0x9000) (i32.const 118) (i32.const 65536))
          (call $flood (i32.const 1) (i32.const {count}))
          (i32.const 1))
        (func (export "proxy_on_tick") (param i32)
          ;; after the 256 small ones, no room for anything new
          (call $flood (i32.const 65536) (i32.const 0)))"#,
        count = MAX_ROOT_PROPERTIES
    );
    let (mut inst, records) = instance(&build(&plugin(imports, 2, &funcs)), LogLevel::Info);
    let root = inst.create_root_context(Some(Vec::new())).unwrap();
    inst.on_tick(root).unwrap();
    let yes = records.lock().unwrap().iter().filter(|(_, m)| m == "yes").count();
    assert_eq!(yes, 2);

    // The byte bound: 64 KiB values fill 1 MiB after 15 of them.
    let funcs2 = funcs.replace(&format!("(call $flood (i32.const 1) (i32.const {MAX_ROOT_PROPERTIES}))"), &format!(
        "(call $flood (i32.const 65536) (i32.const {}))",
        MAX_ROOT_PROPERTY_BYTES / (5 + 65536)
    ));
    let (mut inst, records) = instance(&build(&plugin(imports, 2, &funcs2)), LogLevel::Info);
    inst.create_root_context(Some(Vec::new())).unwrap();
    assert!(records.lock().unwrap().iter().any(|(_, m)| m == "yes"));
}

#[test]
fn property_sets_on_a_request_are_bounded() {
    let imports = r#"(import "env" "proxy_set_property" (func $set (param i32 i32 i32 i32) (result i32)))"#;
    // Sets the same request property with a `len`-byte value until refused; says yes when
    // `expect` sets were accepted.
    let flood = |callback: &str, len: u32, expect: usize| {
        format!(
            r#"(func (export "{callback}") (param i32 i32 i32) (result i32)
              (local $i i32)
              (memory.fill (i32.const 0x9000) (i32.const 118) (i32.const {len}))
              (block $done
                (loop $next
                  (br_if $done (call $set (i32.const 960) (i32.const 5) (i32.const 0x9000) (i32.const {len})))
                  (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (br_if $next (i32.lt_u (local.get $i) (i32.const 100000)))))
              (if (i32.eq (local.get $i) (i32.const {expect})) (then (call $yes)))
              (i32.const 0))"#
        )
    };
    let funcs = format!(
        r#"{ALLOC} (data (i32.const 960) "ngx\00v") {} {}"#,
        flood("proxy_on_request_headers", 1, MAX_PROPERTY_SETS as usize),
        flood("proxy_on_response_headers", 65536, MAX_PROPERTY_SET_BYTES / (5 + 65536))
    );
    let (mut inst, _) = instance(&build(&plugin(imports, 2, &funcs)), LogLevel::Info);
    let root = inst.create_root_context(Some(Vec::new())).unwrap();
    for _ in 0..2 {
        let ctx = inst.create_http_context(root).unwrap();
        let mut s = stream();
        inst.on_request_headers(ctx, &mut s, 0, false).unwrap();
        assert!(said_yes(&s));
        inst.on_delete(ctx).unwrap();
        // A fresh context, for the byte bound.
        let ctx = inst.create_http_context(root).unwrap();
        let mut s = stream();
        inst.on_response_headers(ctx, &mut s, 0, false).unwrap();
        assert!(said_yes(&s));
        inst.on_delete(ctx).unwrap();
    }
}

#[test]
fn per_call_inputs_are_bounded() {
    let imports = r#"(import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_set_property" (func $set (param i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))"#;
    // BAD_ARGUMENT (2) for a local response whose details are over MAX_LOCAL_RESPONSE_DETAILS
    // and for a property path over MAX_PROPERTY_PATH (both inside memory); then a local
    // response with details of exactly the bound is accepted (0).
    let funcs = format!(
        r#"{ALLOC}
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (memory.fill (i32.const 0x10000) (i32.const 100) (i32.const {over_d}))
          (if (i32.eq (call $local (i32.const 200) (i32.const 0x10000) (i32.const {over_d}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)) (i32.const 2))
            (then
              (if (i32.eq (call $set (i32.const 0x10000) (i32.const {over_p}) (i32.const 0) (i32.const 1)) (i32.const 2))
                (then
                  (if (i32.eqz (call $local (i32.const 200) (i32.const 0x10000) (i32.const {at_d}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
                    (then (call $yes)))))))
          (i32.const 0))
        (func (export "proxy_on_tick") (param i32)
          (local $i i32)
          (loop $again
            (drop (call $tick (local.get $i)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $again (i32.lt_u (local.get $i) (i32.const 100000)))))"#,
        over_d = MAX_LOCAL_RESPONSE_DETAILS + 1,
        at_d = MAX_LOCAL_RESPONSE_DETAILS,
        over_p = MAX_PROPERTY_PATH + 1
    );
    let (mut inst, _) = instance(&build(&plugin(imports, 4, &funcs)), LogLevel::Info);
    let root = inst.create_root_context(Some(Vec::new())).unwrap();
    let ctx = inst.create_http_context(root).unwrap();
    let mut s = stream();
    let out = inst.on_request_headers(ctx, &mut s, 0, false).unwrap();
    assert!(said_yes(&s));
    assert_eq!(out.local_response.unwrap().details.len(), MAX_LOCAL_RESPONSE_DETAILS);
    // 100000 tick-period changes in one callback leave one pending change, the last.
    inst.on_tick(root).unwrap();
    assert_eq!(inst.take_tick_changes(), vec![(root, 99_999)]);
}

// ---------------------------------------------------------------------------------------------
// Allocator re-entrancy and host panics
// ---------------------------------------------------------------------------------------------

#[test]
fn an_allocator_cannot_reenter_the_host_to_allocate() {
    let imports = r#"(import "env" "proxy_get_property" (func $get (param i32 i32 i32 i32) (result i32)))"#;
    // The allocator asks for a property (which calls the allocator...) and remembers the
    // status it got at 800.
    let funcs = r#"
        (data (i32.const 960) "plugin_name")
        (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
          (i32.store (i32.const 800) (call $get (i32.const 960) (i32.const 11) (i32.const 808) (i32.const 812)))
          (call $bump (local.get $n)))
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (if (i32.eqz (call $get (i32.const 960) (i32.const 11) (i32.const 816) (i32.const 820)))
            (then (if (i32.eq (i32.load (i32.const 800)) (i32.const 10)) (then (call $yes)))))
          (i32.const 0))"#;
    let (mut inst, _) = instance(&build(&plugin(imports, 2, funcs)), LogLevel::Info);
    let s = request(&mut inst);
    assert!(said_yes(&s), "{:?}", s.logs);
    assert!(s.logs.iter().any(|(l, m)| *l == LogLevel::Warn && m.contains("allocator cannot return data")));
}

/// A stream whose log panics, as a bug in an embedder or a hostcall would.
struct PanickingStream(MemoryStream);

impl StreamOverlay for PanickingStream {
    fn inner(&mut self) -> &mut dyn HttpStream {
        &mut self.0
    }
    fn inner_ref(&self) -> &dyn HttpStream {
        &self.0
    }
    fn log(&mut self, _: LogLevel, _: &[u8]) {
        panic!("a bug in the host");
    }
}

#[test]
fn a_host_panic_fails_the_callback_like_a_trap() {
    let funcs = format!(
        r#"{ALLOC}
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (call $yes)
          (i32.const 0))"#
    );
    let (mut inst, _) = instance(&build(&plugin("", 2, &funcs)), LogLevel::Info);
    let root = inst.create_root_context(Some(Vec::new())).unwrap();
    let ctx = inst.create_http_context(root).unwrap();
    let mut s = Overlay(PanickingStream(stream()));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inst.on_request_headers(ctx, &mut s, 0, false)));
    match r {
        Err(_) => panic!("the panic escaped the host core"),
        Ok(Err(HostError::Panic { callback, message })) => {
            assert_eq!(callback, "proxy_on_request_headers");
            assert_eq!(message, "a bug in the host");
        }
        Ok(other) => panic!("expected HostError::Panic, got {other:?}"),
    }
    // The embedder drops the instance on any error (as after a trap); the message says why.
    let e = HostError::Panic { callback: "proxy_on_request_headers", message: "x".into() };
    assert_eq!(e.to_string(), "proxy_on_request_headers failed: internal error in the host: x");
}

// ---------------------------------------------------------------------------------------------
// Compile cache
// ---------------------------------------------------------------------------------------------

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pwh-engine-limits-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn miss(o: CacheOutcome) -> String {
    match o {
        CacheOutcome::Miss(why) => why,
        other => panic!("expected a miss, got {other:?}"),
    }
}

#[test]
fn the_compile_cache_is_trusted_only_when_safe() {
    let text = plugin("", 1, ALLOC);
    let bytes = text.as_bytes();
    let e = engine();
    let me = effective_uid();
    let master = CachePolicy { owner: me, write: true };
    let worker = CachePolicy { owner: me, write: false };

    // A missing directory: the master creates it (0755) and stores one file (0644).
    let dir = temp_dir("trust").join("cache");
    let (_, o) = compile_cached(&e, bytes, Some(&dir), master).unwrap();
    assert_eq!(o, CacheOutcome::Stored);
    assert_eq!(mode(&dir), 0o755);
    let stored = files(&dir);
    assert_eq!(stored.len(), 1);
    assert_eq!(mode(&stored[0]), 0o644);
    assert_eq!(compile_cached(&e, bytes, Some(&dir), worker).unwrap().1, CacheOutcome::Hit);

    // A worker never writes, nor creates the directory.
    let wdir = temp_dir("trust-worker").join("cache");
    assert_eq!(compile_cached(&e, bytes, Some(&wdir), worker).unwrap().1, CacheOutcome::Compiled);
    assert!(!wdir.exists());

    // A world-writable directory is not used at all.
    let ww = temp_dir("trust-ww");
    std::fs::set_permissions(&ww, std::fs::Permissions::from_mode(0o777)).unwrap();
    let why = miss(compile_cached(&e, bytes, Some(&ww), master).unwrap().1);
    assert!(why.contains("is group or world writable (mode 777): ignored"), "{why}");
    assert!(files(&ww).is_empty());

    // Nor one owned by another user.
    let why = miss(compile_cached(&e, bytes, Some(&dir), CachePolicy { owner: me + 1, write: true }).unwrap().1);
    assert!(why.contains(&format!("is owned by uid {me}, not by the master's user (uid {})", me + 1)), "{why}");

    // A group-writable file is ignored; a worker leaves it, the master replaces it.
    std::fs::set_permissions(&stored[0], std::fs::Permissions::from_mode(0o664)).unwrap();
    let why = miss(compile_cached(&e, bytes, Some(&dir), worker).unwrap().1);
    assert!(why.contains("the cached file") && why.contains("is group or world writable (mode 664): ignored"), "{why}");
    assert_eq!(mode(&stored[0]), 0o664);
    let why = miss(compile_cached(&e, bytes, Some(&dir), master).unwrap().1);
    assert!(why.ends_with("(replaced by a fresh artifact)"), "{why}");
    assert_eq!(mode(&stored[0]), 0o644);
    assert_eq!(compile_cached(&e, bytes, Some(&dir), worker).unwrap().1, CacheOutcome::Hit);

    // A file owned by another user (needs root to make one).
    if me == 0 {
        std::os::unix::fs::chown(&stored[0], Some(65534), Some(65534)).unwrap();
        let why = miss(compile_cached(&e, bytes, Some(&dir), worker).unwrap().1);
        assert!(why.contains("is owned by uid 65534, not by the master's user (uid 0): ignored"), "{why}");
        assert_eq!(compile_cached(&e, bytes, Some(&dir), master).unwrap().1, CacheOutcome::Miss(format!("{why} (replaced by a fresh artifact)")));
    }

    // A symbolic link is not followed, even to a good artifact.
    let good = dir.join("good.bin");
    std::fs::rename(&stored[0], &good).unwrap();
    std::os::unix::fs::symlink(&good, &stored[0]).unwrap();
    let why = miss(compile_cached(&e, bytes, Some(&dir), worker).unwrap().1);
    assert!(why.contains("is a symbolic link: ignored"), "{why}");

    // No temporary file is left behind.
    assert!(files(&dir).iter().all(|f| !f.file_name().unwrap().to_string_lossy().starts_with('.')));
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    let _ = std::fs::remove_dir_all(wdir.parent().unwrap());
    let _ = std::fs::remove_dir_all(&ww);
}
