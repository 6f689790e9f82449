//! Integration tests of the host core's public API, with small WAT modules as plugins.
//!
//! Plugins report what hostcalls returned through `proxy_log`: the prelude's `$st` logs
//! "st=NNNN" (the status as four decimal digits) and `$ret` logs the bytes a hostcall handed
//! back in the return slots at 100 (pointer) and 104 (size). Both log at Critical, so they are
//! recorded whatever the logger's level.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use proxy_wasm_host::abi::AbiVersion;
use proxy_wasm_host::hostcalls::{PROXY_HOSTCALLS, WASI_FUNCTIONS};
use proxy_wasm_host::{HttpCallResponse, 
    compile, maps, new_engine, Action, CompiledModule, Compiler, Engine, HostError, HttpStream, LocalResponse,
    LogLevel, Logger, MapType, MemoryStream, PluginInstance, Status,
};

// ---------------------------------------------------------------------------------------------
// Test support
// ---------------------------------------------------------------------------------------------

type Records = Arc<Mutex<Vec<(LogLevel, String)>>>;

/// Records every message it is given (the host does the level filtering).
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

fn logger(level: LogLevel) -> (Box<dyn Logger>, Records) {
    let records: Records = Arc::default();
    (Box::new(TestLogger { level, records: records.clone() }), records)
}

fn messages(records: &Records) -> Vec<String> {
    records.lock().unwrap().iter().map(|(_, m)| m.clone()).collect()
}

/// The header-map methods of an `HttpStream` that wraps a `MemoryStream` in `self.inner`.
macro_rules! forward_maps {
    () => {
        fn map_pairs(&mut self, map: MapType, out: &mut maps::MapBuilder) -> Status {
            self.inner.map_pairs(map, out)
        }
        fn map_get(&mut self, map: MapType, key: &[u8], out: &mut Vec<u8>) -> Status {
            self.inner.map_get(map, key, out)
        }
        fn map_set_pairs(&mut self, map: MapType, pairs: &[(&[u8], &[u8])]) -> Status {
            self.inner.map_set_pairs(map, pairs)
        }
        fn map_add(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Status {
            self.inner.map_add(map, key, value)
        }
        fn map_replace(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Status {
            self.inner.map_replace(map, key, value)
        }
        fn map_remove(&mut self, map: MapType, key: &[u8]) -> Status {
            self.inner.map_remove(map, key)
        }
    };
}

/// A MemoryStream whose plugin messages go to the same record as the instance logger, so the
/// whole lifecycle can be read in one order.
struct SharedStream {
    inner: MemoryStream,
    records: Records,
}

impl HttpStream for SharedStream {
    fn log(&mut self, level: LogLevel, msg: &[u8]) {
        self.records.lock().unwrap().push((level, String::from_utf8_lossy(msg).into_owned()));
    }
    forward_maps!();
}

fn engine() -> Engine {
    new_engine(Compiler::Cranelift, &proxy_wasm_host::DEFAULT_LIMITS).expect("cranelift engine")
}

fn st(n: u32) -> String {
    format!("st={n:04}")
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
}

fn stream_with(req: &[(&str, &str)]) -> MemoryStream {
    MemoryStream { request_headers: headers(req), response_headers: Some(Vec::new()), ..Default::default() }
}

const HEAP_START: u32 = 65536;
const DATA_START: u32 = 2048;

/// Builds a WAT plugin: a prelude (memory, ABI marker, bump allocator, `$st`, `$ret`, `$say`
/// helpers), hostcall imports derived from the host's own signature tables, string data
/// segments placed by `s()`, and the callbacks a test adds.
struct Wat {
    marker: &'static str,
    imports: Vec<String>,
    imported: BTreeSet<String>,
    funcs: Vec<String>,
    data: Vec<(u32, Vec<u8>)>,
    next: u32,
}

fn wat_types(types: &[impl std::fmt::Debug]) -> String {
    types.iter().map(|t| format!("{t:?}").to_lowercase()).collect::<Vec<_>>().join(" ")
}

impl Wat {
    fn new() -> Wat {
        Wat::with_abi("proxy_abi_version_0_2_1")
    }

    fn with_abi(marker: &'static str) -> Wat {
        let mut w = Wat {
            marker,
            imports: Vec::new(),
            imported: BTreeSet::new(),
            funcs: Vec::new(),
            data: Vec::new(),
            next: DATA_START,
        };
        w.env("proxy_log");
        w
    }

    /// Imports a Proxy-Wasm hostcall as `$name`, with the signature the host provides.
    fn env(&mut self, name: &str) -> &mut Wat {
        if self.imported.insert(format!("env.{name}")) {
            let (_, params) = PROXY_HOSTCALLS.iter().find(|(n, _)| *n == name).expect("known hostcall");
            self.imports.push(format!(
                "(import \"env\" \"{name}\" (func ${name} (param {}) (result i32)))",
                wat_types(params)
            ));
        }
        self
    }

    /// Imports a WASI preview1 function as `$name`.
    fn wasi(&mut self, name: &str) -> &mut Wat {
        if self.imported.insert(format!("wasi.{name}")) {
            let (_, params, results) = WASI_FUNCTIONS.iter().find(|(n, _, _)| *n == name).expect("known WASI call");
            let results = if results.is_empty() { String::new() } else { format!("(result {})", wat_types(results)) };
            self.imports.push(format!(
                "(import \"wasi_snapshot_preview1\" \"{name}\" (func ${name} (param {}) {results}))",
                wat_types(params)
            ));
        }
        self
    }

    /// Places `bytes` in a data segment and returns its address.
    fn ptr(&mut self, bytes: &[u8]) -> u32 {
        let at = self.next;
        self.data.push((at, bytes.to_vec()));
        self.next += (bytes.len() as u32 + 8) & !7;
        assert!(self.next < HEAP_START / 2, "test data too large");
        at
    }

    /// `(i32.const ptr) (i32.const len)` of `bytes` placed in a data segment.
    fn s(&mut self, bytes: impl AsRef<[u8]>) -> String {
        let bytes = bytes.as_ref();
        let at = self.ptr(bytes);
        format!("(i32.const {at}) (i32.const {})", bytes.len())
    }

    /// Code that logs `msg` at Info.
    fn say(&mut self, msg: &str) -> String {
        format!("(drop (call $proxy_log (i32.const 2) {}))", self.s(msg))
    }

    fn func(&mut self, text: impl Into<String>) -> &mut Wat {
        self.funcs.push(text.into());
        self
    }

    fn text(&self) -> String {
        let mut out = String::from("(module\n");
        for i in &self.imports {
            out.push_str(i);
            out.push('\n');
        }
        out.push_str(&format!(
            r#"
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const {HEAP_START}))
  (func (export "{marker}"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap
      (i32.and (i32.add (i32.add (global.get $heap) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (data (i32.const 1000) "st=0000")
  (func $st (param $s i32)
    (i32.store8 (i32.const 1003)
      (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $s) (i32.const 1000)) (i32.const 10))))
    (i32.store8 (i32.const 1004)
      (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $s) (i32.const 100)) (i32.const 10))))
    (i32.store8 (i32.const 1005)
      (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $s) (i32.const 10)) (i32.const 10))))
    (i32.store8 (i32.const 1006)
      (i32.add (i32.const 48) (i32.rem_u (local.get $s) (i32.const 10))))
    (drop (call $proxy_log (i32.const 5) (i32.const 1000) (i32.const 7))))
  (func $ret
    (drop (call $proxy_log (i32.const 5) (i32.load (i32.const 100)) (i32.load (i32.const 104)))))
  ;; logs the status, and the returned bytes when the status is OK
  (func $st_ret (param $s i32)
    (call $st (local.get $s))
    (if (i32.eqz (local.get $s)) (then (call $ret))))
"#,
            marker = self.marker
        ));
        for f in &self.funcs {
            out.push_str(f);
            out.push('\n');
        }
        for (at, bytes) in &self.data {
            let esc: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
            out.push_str(&format!("  (data (i32.const {at}) \"{esc}\")\n"));
        }
        out.push_str(")\n");
        out
    }

    fn compile(&self, engine: &Engine) -> CompiledModule {
        let text = self.text();
        compile(engine, text.as_bytes()).unwrap_or_else(|e| panic!("compile failed: {e}\n{text}"))
    }
}

fn instantiate(_engine: &Engine, m: &CompiledModule, vm_config: &[u8], level: LogLevel) -> (PluginInstance, Records) {
    let (log, records) = logger(level);
    match PluginInstance::new(m, "test", vm_config.to_vec(), log, &proxy_wasm_host::DEFAULT_LIMITS) {
        Ok(i) => (i, records),
        Err(e) => panic!("instantiate failed: {e}"),
    }
}

/// A complete module, for the validation tests that need something missing.
fn raw_module(marker: bool, memory: bool, alloc: &str, extra: &str) -> String {
    format!(
        "(module {extra} {} {} {})",
        if marker { r#"(func (export "proxy_abi_version_0_2_1"))"# } else { "" },
        if memory { r#"(memory (export "memory") 1)"# } else { "(memory 1)" },
        if alloc.is_empty() {
            String::new()
        } else {
            format!(r#"(func (export "{alloc}") (param i32) (result i32) (i32.const 1024))"#)
        },
    )
}

fn compile_err(engine: &Engine, text: &str) -> String {
    match compile(engine, text.as_bytes()) {
        Ok(_) => panic!("expected a compile error for:\n{text}"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// 1. compilation and validation
// ---------------------------------------------------------------------------------------------

#[test]
fn compile_rejects_invalid_modules_with_a_reason() {
    let engine = engine();

    let e = compile(&engine, b"\0asm\x01\0\0\0\x99garbage").err().expect("garbage binary");
    assert!(e.starts_with("is not a valid wasm module"), "{e}");
    let e = compile(&engine, b"this is not wasm").err().expect("garbage text");
    assert!(e.starts_with("is not a valid wasm module"), "{e}");

    // A well-formed module that is not a Proxy-Wasm plugin.
    let e = compile_err(&engine, &raw_module(false, true, "proxy_on_memory_allocate", ""));
    assert!(e.contains("proxy_abi_version_"), "{e}");

    // An import the host does not provide is named in the message.
    let e = compile_err(
        &engine,
        &raw_module(true, true, "proxy_on_memory_allocate", r#"(import "env" "proxy_nope" (func (param i32) (result i32)))"#),
    );
    assert!(e.contains("env.proxy_nope"), "{e}");
    assert!(e.contains("does not provide"), "{e}");

    // So is an import from a namespace the host does not serve.
    let e = compile_err(
        &engine,
        &raw_module(true, true, "proxy_on_memory_allocate", r#"(import "foo" "proxy_log" (func (param i32 i32 i32) (result i32)))"#),
    );
    assert!(e.contains("foo.proxy_log"), "{e}");

    // A known hostcall imported with another signature.
    let e = compile_err(
        &engine,
        &raw_module(true, true, "proxy_on_memory_allocate", r#"(import "env" "proxy_log" (func (param i32 i32) (result i32)))"#),
    );
    assert!(e.contains("env.proxy_log") && e.contains("signature"), "{e}");
    let e = compile_err(
        &engine,
        &raw_module(true, true, "proxy_on_memory_allocate", r#"(import "env" "proxy_increment_metric" (func (param i32 i32) (result i32)))"#),
    );
    assert!(e.contains("env.proxy_increment_metric") && e.contains("signature"), "{e}");
    let e = compile_err(
        &engine,
        &raw_module(true, true, "proxy_on_memory_allocate", r#"(import "wasi_snapshot_preview1" "proc_exit" (func (param i32) (result i32)))"#),
    );
    assert!(e.contains("wasi_snapshot_preview1.proc_exit") && e.contains("signature"), "{e}");

    // A non-function import.
    let e = compile_err(&engine, &raw_module(true, true, "proxy_on_memory_allocate", r#"(import "env" "table" (table 1 funcref))"#));
    assert!(e.contains("env.table") && e.contains("not a function"), "{e}");

    // No exported memory.
    let e = compile_err(&engine, &raw_module(true, false, "proxy_on_memory_allocate", ""));
    assert!(e.contains("memory"), "{e}");

    // No allocator.
    let e = compile_err(&engine, &raw_module(true, true, "", ""));
    assert!(e.contains("proxy_on_memory_allocate") && e.contains("malloc"), "{e}");

    // `malloc` is an acceptable allocator, and valid imports (both WASI namespaces) pass.
    let ok = raw_module(
        true,
        true,
        "malloc",
        r#"(import "env" "proxy_log" (func (param i32 i32 i32) (result i32)))
           (import "env" "proxy_increment_metric" (func (param i32 i64) (result i32)))
           (import "wasi_unstable" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))"#,
    );
    let m = compile(&engine, ok.as_bytes()).expect("valid module");
    assert_eq!(m.abi, AbiVersion::V0_2_1);
    assert!(m.exports("malloc"));
    assert!(!m.exports("proxy_on_memory_allocate"));
    // ...and it instantiates with malloc as the allocator.
    let (log, _) = logger(LogLevel::Trace);
    assert!(PluginInstance::new(&m, "test", Vec::new(), log, &proxy_wasm_host::DEFAULT_LIMITS).is_ok());
}

#[test]
fn compile_detects_the_abi_version() {
    let engine = engine();
    for (marker, abi) in [
        ("proxy_abi_version_0_1_0", AbiVersion::V0_1_0),
        ("proxy_abi_version_0_2_0", AbiVersion::V0_2_0),
        ("proxy_abi_version_0_2_1", AbiVersion::V0_2_1),
        ("proxy_abi_version_0_x_x", AbiVersion::V0_2_1),
    ] {
        let m = Wat::with_abi(marker).compile(&engine);
        assert_eq!(m.abi, abi, "{marker}");
        let (inst, _) = instantiate(&engine, &m, b"", LogLevel::Trace);
        assert_eq!(inst.abi(), abi, "{marker}");
    }
    // An unknown marker is no marker.
    let e = compile_err(&engine, &Wat::with_abi("proxy_abi_version_9_9_9").text());
    assert!(e.contains("proxy_abi_version_"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// 2. lifecycle
// ---------------------------------------------------------------------------------------------

/// Every callback logs its name (and its arguments through $st).
fn lifecycle_plugin(vm_start_ret: i32, configure_ret: i32, done_ret: i32) -> Wat {
    let mut w = Wat::new();
    let init = w.say("initialize");
    let root = w.say("create root");
    let http = w.say("create http");
    let vm = w.say("vm_start");
    let conf = w.say("configure");
    let req = w.say("request_headers");
    let resp = w.say("response_headers");
    let done = w.say("done");
    let log = w.say("log");
    let del = w.say("delete");
    w.func(format!(
        r#"
  (func (export "_initialize") {init})
  (func (export "proxy_on_context_create") (param $id i32) (param $parent i32)
    (if (i32.eqz (local.get $parent))
      (then {root} (call $st (local.get $id)))
      (else {http} (call $st (local.get $id)) (call $st (local.get $parent)))))
  (func (export "proxy_on_vm_start") (param $id i32) (param $len i32) (result i32)
    {vm} (call $st (local.get $id)) (call $st (local.get $len)) (i32.const {vm_start_ret}))
  (func (export "proxy_on_configure") (param $id i32) (param $len i32) (result i32)
    {conf} (call $st (local.get $id)) (call $st (local.get $len)) (i32.const {configure_ret}))
  (func (export "proxy_on_request_headers") (param $id i32) (param $n i32) (param $eos i32) (result i32)
    {req} (call $st (local.get $id)) (call $st (local.get $n)) (call $st (local.get $eos)) (i32.const 0))
  (func (export "proxy_on_response_headers") (param $id i32) (param $n i32) (param $eos i32) (result i32)
    {resp} (call $st (local.get $id)) (call $st (local.get $n)) (call $st (local.get $eos)) (i32.const 1))
  (func (export "proxy_on_done") (param $id i32) (result i32) {done} (call $st (local.get $id)) (i32.const {done_ret}))
  (func (export "proxy_on_log") (param $id i32) {log} (call $st (local.get $id)))
  (func (export "proxy_on_delete") (param $id i32) {del} (call $st (local.get $id)))
"#
    ));
    w
}

#[test]
fn lifecycle_runs_callbacks_in_order() {
    let engine = engine();
    let m = lifecycle_plugin(1, 1, 1).compile(&engine);
    let (mut inst, records) = instantiate(&engine, &m, b"vmcfg", LogLevel::Trace);
    let ex = inst.exports();
    assert!(ex.request_headers && ex.response_headers && ex.log);

    let root = inst.create_root_context(Some(b"plugin-config".to_vec())).expect("root");
    assert_eq!(root, 1);
    let ctx = inst.create_http_context(root).expect("http context");
    assert_eq!(ctx, 2);
    let mut stream = SharedStream { inner: stream_with(&[("a", "1"), ("b", "2"), ("c", "3")]), records: records.clone() };
    let o = inst.on_request_headers(ctx, &mut stream, 3, false).expect("request headers");
    assert_eq!(o, proxy_wasm_host::Outcome::CONTINUE);
    let o = inst.on_response_headers(ctx, &mut stream, 2, true).expect("response headers");
    assert_eq!(o.action, Action::Pause);
    assert!(o.local_response.is_none());
    inst.on_done_and_log(ctx, &mut stream).expect("done and log");
    inst.on_delete(ctx).expect("delete");

    let expected = [
        "initialize".to_string(),
        "create root".into(),
        st(1),
        "vm_start".into(),
        st(1),
        st(5), // vm config length
        "configure".into(),
        st(1),
        st(13), // plugin config length
        "create http".into(),
        st(2),
        st(1), // parent = root
        "request_headers".into(),
        st(2),
        st(3),
        st(0), // end_of_stream = false
        "response_headers".into(),
        st(2),
        st(2),
        st(1),
        "done".into(),
        st(2),
        "log".into(),
        st(2),
        "delete".into(),
        st(2),
    ];
    assert_eq!(messages(&records), expected);
    // Callback names are logged at Info; their arguments through $st at Critical.
    assert_eq!(records.lock().unwrap()[0].0, LogLevel::Info);

    // Context ids keep increasing and a second request under the same root works the same.
    let ctx2 = inst.create_http_context(root).expect("second context");
    assert_eq!(ctx2, 3);
}

#[test]
fn lifecycle_reports_vm_start_and_configure_failures() {
    let engine = engine();

    let m = lifecycle_plugin(0, 1, 1).compile(&engine);
    let (mut inst, records) = instantiate(&engine, &m, b"", LogLevel::Trace);
    assert_eq!(inst.create_root_context(Some(b"x".to_vec())), Err(HostError::VmStartFailed));
    let msgs = messages(&records);
    assert!(msgs.contains(&"vm_start".to_string()));
    assert!(!msgs.contains(&"configure".to_string()), "configure must not run after a failed vm_start: {msgs:?}");

    let m = lifecycle_plugin(1, 0, 1).compile(&engine);
    let (mut inst, records) = instantiate(&engine, &m, b"", LogLevel::Trace);
    assert_eq!(inst.create_root_context(Some(b"x".to_vec())), Err(HostError::ConfigureFailed));
    assert!(messages(&records).contains(&"configure".to_string()));
    // A configure failure does not poison the instance: a root without configuration works.
    assert!(inst.create_root_context(None).is_ok());
}

#[test]
fn lifecycle_root_without_config_skips_configure() {
    let engine = engine();
    let m = lifecycle_plugin(1, 0, 1).compile(&engine);
    let (mut inst, records) = instantiate(&engine, &m, b"", LogLevel::Trace);
    // configure would fail (returns 0), but it is not called at all.
    let root = inst.create_root_context(None).expect("root without config");
    let msgs = messages(&records);
    assert_eq!(msgs, strs(&["initialize", "create root", "st=0001", "vm_start", "st=0001", "st=0000"]));
    assert!(inst.create_http_context(root).is_ok());
}

#[test]
fn lifecycle_on_done_false_skips_on_log() {
    let engine = engine();
    let m = lifecycle_plugin(1, 1, 0).compile(&engine);
    let (mut inst, records) = instantiate(&engine, &m, b"", LogLevel::Trace);
    let root = inst.create_root_context(Some(Vec::new())).unwrap();
    let ctx = inst.create_http_context(root).unwrap();
    records.lock().unwrap().clear();
    let mut stream = SharedStream { inner: stream_with(&[]), records: records.clone() };
    inst.on_done_and_log(ctx, &mut stream).unwrap();
    assert_eq!(messages(&records), strs(&["done", "st=0002"]));
}

#[test]
fn lifecycle_missing_callbacks_are_skipped() {
    let engine = engine();
    let m = Wat::new().compile(&engine);
    let (mut inst, records) = instantiate(&engine, &m, b"", LogLevel::Trace);
    let ex = inst.exports();
    assert!(!ex.request_headers && !ex.response_headers && !ex.log);
    let root = inst.create_root_context(Some(b"cfg".to_vec())).unwrap();
    let ctx = inst.create_http_context(root).unwrap();
    let mut s = stream_with(&[]);
    let o = inst.on_request_headers(ctx, &mut s, 0, true).unwrap();
    assert_eq!(o.action, Action::Continue);
    assert_eq!(inst.on_response_headers(ctx, &mut s, 0, true).unwrap().action, Action::Continue);
    inst.on_done_and_log(ctx, &mut s).unwrap();
    inst.on_delete(ctx).unwrap();
    assert!(messages(&records).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 3. configuration buffers
// ---------------------------------------------------------------------------------------------

#[test]
fn get_buffer_bytes_serves_configuration() {
    let engine = engine();
    let mut w = Wat::new();
    w.env("proxy_get_buffer_bytes").env("proxy_get_buffer_status");
    let gb = |ty: i32, start: i64, max: i64| {
        format!(
            "(call $st_ret (call $proxy_get_buffer_bytes (i32.const {ty}) (i32.const {start}) (i32.const {max}) (i32.const 100) (i32.const 104)))"
        )
    };
    let calls = [
        gb(6, 0, 0xFFFF_FFFF),  // whole VM configuration
        gb(7, 0, 0xFFFF_FFFF),  // whole plugin configuration
        gb(7, 2, 3),            // a slice
        gb(7, 6, 0xFFFF_FFFF),  // from 6 to the end
        gb(7, 6, 100),          // max_size past the end is clamped
        gb(7, 11, 0xFFFF_FFFF), // start == len: empty
        gb(7, 0, 0),            // max_size 0: empty
        gb(7, 12, 1),           // start beyond the end: BAD_ARGUMENT
        gb(7, 0xFFFF_FFFF, 1),  // start is unsigned: BAD_ARGUMENT
        gb(0, 0, 0xFFFF_FFFF),  // request body: NOT_FOUND outside a body callback
        gb(1, 0, 0xFFFF_FFFF),  // response body: NOT_FOUND outside a body callback
        gb(99, 0, 0xFFFF_FFFF), // no such buffer: BAD_ARGUMENT
    ]
    .join("\n    ");
    w.func(format!(
        r#"
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    {vm}
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    {calls}
    ;; a return slot outside memory
    (call $st (call $proxy_get_buffer_bytes (i32.const 7) (i32.const 0) (i32.const -1) (i32.const 0x7fffffff) (i32.const 104)))
    (call $st (call $proxy_get_buffer_bytes (i32.const 7) (i32.const 0) (i32.const -1) (i32.const 100) (i32.const 131070)))
    ;; buffer status: length of the plugin configuration
    (call $st (call $proxy_get_buffer_status (i32.const 7) (i32.const 108) (i32.const 112)))
    (call $st (i32.load (i32.const 108)))
    (call $st (call $proxy_get_buffer_status (i32.const 0) (i32.const 108) (i32.const 112)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    {plugin}
    (i32.const 0))
"#,
        vm = gb(6, 0, 0xFFFF_FFFF),
        plugin = gb(7, 0, 0xFFFF_FFFF),
    ));
    let m = w.compile(&engine);
    let (mut inst, records) = instantiate(&engine, &m, b"vm-conf", LogLevel::Trace);
    let root = inst.create_root_context(Some(b"hello world".to_vec())).expect("root");
    assert_eq!(
        messages(&records),
        strs(&[
            // on_vm_start
            "st=0000", "vm-conf",
            // on_configure
            "st=0000", "vm-conf",
            "st=0000", "hello world",
            "st=0000", "llo",
            "st=0000", "world",
            "st=0000", "world",
            "st=0000", "",
            "st=0000", "",
            "st=0002",
            "st=0002",
            // body buffers exist only inside body callbacks
            "st=0001",
            "st=0001",
            "st=0002",
            "st=0006",
            "st=0006",
            "st=0000", "st=0011",
            "st=0001",
        ])
    );

    // An HTTP context reads the plugin configuration of its own root.
    let root2 = inst.create_root_context(None).expect("second root");
    for (r, expected) in [(root, "hello world"), (root2, "")] {
        let ctx = inst.create_http_context(r).unwrap();
        let mut s = stream_with(&[]);
        inst.on_request_headers(ctx, &mut s, 0, true).unwrap();
        let logs: Vec<&str> = s.logs.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(logs, ["st=0000", expected], "root {r}");
    }
}

/// A stream that hands its response body out in pieces of `piece` bytes, as nginx does from
/// its buffers; `lie` makes it hand out one byte more (1) or one fewer (-1) than asked.
struct PieceStream {
    inner: MemoryStream,
    piece: usize,
    lie: i32,
}

impl HttpStream for PieceStream {
    fn log(&mut self, level: LogLevel, msg: &[u8]) {
        self.inner.log(level, msg)
    }
    forward_maps!();
    fn body(&mut self, _which: proxy_wasm_host::abi::BufferType) -> Option<&mut Vec<u8>> {
        panic!("the body is read piece by piece, never taken whole")
    }
    fn body_size(&mut self, which: proxy_wasm_host::abi::BufferType) -> Option<usize> {
        self.inner.body(which).map(|b| b.len())
    }
    fn body_read(
        &mut self,
        which: proxy_wasm_host::abi::BufferType,
        start: usize,
        end: usize,
        put: &mut dyn FnMut(&[u8]) -> Result<(), Status>,
    ) -> Option<Result<(), Status>> {
        let (piece, lie) = (self.piece, self.lie);
        let b = self.inner.body(which)?;
        let end = if lie < 0 { (end - 1).max(start) } else { end };
        for p in b[start..end].chunks(piece) {
            if let Err(e) = put(p) {
                return Some(Err(e));
            }
        }
        Some(if lie > 0 { put(b"!") } else { Ok(()) })
    }
}

#[test]
fn get_buffer_bytes_reads_a_body_in_pieces() {
    let engine = engine();
    let mut w = Wat::new();
    w.env("proxy_get_buffer_bytes");
    let gb = |start: i64, max: i64| {
        format!(
            "(call $st_ret (call $proxy_get_buffer_bytes (i32.const 1) (i32.const {start}) (i32.const {max}) (i32.const 100) (i32.const 104)))"
        )
    };
    let calls = [gb(0, 0xFFFF_FFFF), gb(2, 5), gb(10, 0xFFFF_FFFF), gb(11, 1)].join("\n    ");
    w.func(format!(
        r#"
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
    {calls}
    (i32.const 0))
"#
    ));
    let m = w.compile(&engine);
    let (mut inst, _records) = instantiate(&engine, &m, b"", LogLevel::Trace);
    let root = inst.create_root_context(None).expect("root");
    let mut run = |piece: usize, lie: i32| {
        let ctx = inst.create_http_context(root).unwrap();
        let inner = MemoryStream { response_body: Some(b"hello world".to_vec()), ..stream_with(&[]) };
        let mut s = PieceStream { inner, piece, lie };
        inst.on_body(true, ctx, &mut s, 11, true).unwrap();
        s.inner.logs.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>()
    };
    let whole = strs(&["st=0000", "hello world", "st=0000", "llo w", "st=0000", "d", "st=0000", ""]);
    assert_eq!(run(3, 0), whole, "pieces of 3 bytes");
    assert_eq!(run(1, 0), whole, "pieces of 1 byte");
    assert_eq!(run(64, 0), whole, "one piece");
    // An embedder that hands out more or fewer bytes than the range fails the hostcall; no
    // byte lands past the room the plugin allocated.
    let failed = strs(&["st=0010", "st=0010", "st=0010"]);
    assert_eq!(run(3, 1)[..3], failed[..], "one byte too many");
    assert_eq!(run(3, -1)[..3], failed[..], "one byte too few");
}

// ---------------------------------------------------------------------------------------------
// 4. header maps
// ---------------------------------------------------------------------------------------------

#[test]
fn header_map_hostcalls_against_memory_stream() {
    let engine = engine();
    let mut w = Wat::new();
    for h in [
        "proxy_get_header_map_value",
        "proxy_add_header_map_value",
        "proxy_replace_header_map_value",
        "proxy_remove_header_map_value",
        "proxy_get_header_map_pairs",
        "proxy_set_header_map_pairs",
        "proxy_get_header_map_size",
    ] {
        w.env(h);
    }
    const WILD: &str = "(i32.const 0x7fffffff)";
    let get = |w: &mut Wat, map: i32, key: &str| {
        format!(
            "(call $st_ret (call $proxy_get_header_map_value (i32.const {map}) {} (i32.const 100) (i32.const 104)))",
            w.s(key)
        )
    };
    let kv = |w: &mut Wat, op: &str, map: i32, k: &str, v: &str| {
        format!("(call $st (call $proxy_{op}_header_map_value (i32.const {map}) {} {}))", w.s(k), w.s(v))
    };
    let remove = |w: &mut Wat, key: &str| {
        format!("(call $st (call $proxy_remove_header_map_value (i32.const 0) {}))", w.s(key))
    };
    let good_pairs = maps::serialize([(&b"x-a"[..], &b"1"[..]), (&b"X-B"[..], &b"22"[..])]);
    let bad_value_pairs = maps::serialize([(&b"x-a"[..], &b"1\r\nx-evil: 1"[..])]);
    let bad_name_pairs = maps::serialize([(&b"x a"[..], &b"1"[..])]);
    let malformed_pairs = 5u32.to_le_bytes();

    let req = [
        // 0..3: get
        get(&mut w, 0, "host"),
        get(&mut w, 0, "HOST"),
        get(&mut w, 0, "missing"),
        get(&mut w, 2, "anything"), // response headers do not exist yet
        get(&mut w, 1, "trailer"),  // the memory stream has no trailers
        get(&mut w, 99, "host"),    // no such map
        // add, replace, remove
        kv(&mut w, "add", 0, "x-added", "1"),
        kv(&mut w, "replace", 0, "x-rep", "new"),
        kv(&mut w, "replace", 0, "x-new", "v"),
        remove(&mut w, "X-DEL"),
        remove(&mut w, "absent"),
        // values and names that could split a header line
        kv(&mut w, "add", 0, "x-bad", "v\r\nx-injected: 1"),
        kv(&mut w, "add", 0, "a\r\nb", "v"),
        kv(&mut w, "replace", 0, "x-bad", "v\0"),
        kv(&mut w, "replace", 0, "", "v"),
        kv(&mut w, "add", 0, "x y", "v"),
        // wild pointers: a status, never a trap
        format!("(call $st (call $proxy_get_header_map_value (i32.const 0) {WILD} (i32.const 4) (i32.const 100) (i32.const 104)))"),
        format!("(call $st (call $proxy_get_header_map_value (i32.const 0) {} {WILD} (i32.const 104)))", w.s("host")),
        format!("(call $st (call $proxy_get_header_map_value (i32.const 0) {} (i32.const 100) (i32.const 131070)))", w.s("host")),
        format!("(call $st (call $proxy_add_header_map_value (i32.const 0) {} {WILD} (i32.const 3)))", w.s("x-w")),
        format!("(call $st (call $proxy_replace_header_map_value (i32.const 0) {WILD} (i32.const 3) {}))", w.s("v")),
        "(call $st (call $proxy_remove_header_map_value (i32.const 0) (i32.const 0) (i32.const -1)))".to_string(),
        format!("(call $st (call $proxy_get_header_map_pairs (i32.const 0) {WILD} (i32.const 104)))"),
        format!("(call $st (call $proxy_set_header_map_pairs (i32.const 0) {WILD} (i32.const 8)))"),
        format!("(call $st (call $proxy_get_header_map_size (i32.const 0) {WILD}))"),
        // the whole map, and its size
        "(call $st_ret (call $proxy_get_header_map_pairs (i32.const 0) (i32.const 100) (i32.const 104)))".to_string(),
        "(call $st (call $proxy_get_header_map_size (i32.const 0) (i32.const 108)))".to_string(),
        "(call $st (i32.load (i32.const 108)))".to_string(),
    ]
    .join("\n    ");
    let resp = [
        format!("(call $st (call $proxy_set_header_map_pairs (i32.const 2) {}))", w.s(&good_pairs)),
        format!("(call $st (call $proxy_set_header_map_pairs (i32.const 2) {}))", w.s(&bad_value_pairs)),
        format!("(call $st (call $proxy_set_header_map_pairs (i32.const 2) {}))", w.s(&bad_name_pairs)),
        format!("(call $st (call $proxy_set_header_map_pairs (i32.const 2) {}))", w.s(&malformed_pairs)),
        "(call $st_ret (call $proxy_get_header_map_pairs (i32.const 2) (i32.const 100) (i32.const 104)))".to_string(),
        "(call $st (call $proxy_get_header_map_size (i32.const 2) (i32.const 108)))".to_string(),
        "(call $st (i32.load (i32.const 108)))".to_string(),
    ]
    .join("\n    ");
    let conf = get(&mut w, 0, "host");
    w.func(format!(
        r#"
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    {conf}
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    {req}
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    {resp}
    (i32.const 0))
"#
    ));
    let m = w.compile(&engine);
    let (mut inst, records) = instantiate(&engine, &m, b"", LogLevel::Trace);
    let root = inst.create_root_context(Some(Vec::new())).unwrap();
    // A root context has no stream: NOT_FOUND.
    assert_eq!(messages(&records), strs(&["st=0001"]));

    let ctx = inst.create_http_context(root).unwrap();
    let mut s = MemoryStream {
        request_headers: headers(&[(":path", "/x"), ("Host", "example.com"), ("X-Rep", "a"), ("x-rep", "b"), ("X-Del", "1")]),
        response_headers: None,
        ..Default::default()
    };
    let o = inst.on_request_headers(ctx, &mut s, 5, false).expect("no trap");
    assert_eq!(o.action, Action::Continue);

    let final_request = [(":path", "/x"), ("Host", "example.com"), ("x-added", "1"), ("x-rep", "new"), ("x-new", "v")];
    assert_eq!(s.request_headers, headers(&final_request));
    let lowered: Vec<(Vec<u8>, &[u8])> =
        final_request.iter().map(|(k, v)| (k.as_bytes().to_ascii_lowercase(), v.as_bytes())).collect();
    let expected_map = maps::serialize(lowered.iter().map(|(k, v)| (&k[..], *v)));

    let logs: Vec<String> = s.logs.iter().map(|(_, m)| m.clone()).collect();
    // Request-callback messages go to the stream, not to the instance logger.
    assert_eq!(messages(&records), strs(&["st=0001"]));
    let mut expected = strs(&[
        "st=0000", "example.com",
        "st=0000", "example.com",
        "st=0001", // missing
        "st=0001", // response map absent
        "st=0001", // trailers absent
        "st=0002", // bad map type
        "st=0000", // add
        "st=0000", // replace
        "st=0000", // replace-as-add
        "st=0000", // remove
        "st=0000", // remove absent
        "st=0002", "st=0002", "st=0002", "st=0002", "st=0002", // CR/LF/NUL/empty/space
        "st=0006", "st=0006", "st=0006", "st=0006", "st=0006", "st=0006", "st=0006", "st=0006", "st=0006",
        "st=0000",
    ]);
    assert_eq!(&logs[..expected.len()], &expected[..], "all: {logs:?}");
    // The serialized map round-trips through the codec.
    let got_map = &logs[expected.len()];
    assert_eq!(got_map.as_bytes(), &expected_map[..]);
    let pairs = maps::deserialize(got_map.as_bytes()).unwrap();
    assert_eq!(pairs.len(), 5);
    assert_eq!(pairs[1], (&b"host"[..], &b"example.com"[..]));
    expected.push(got_map.clone());
    expected.push(st(0));
    expected.push(st(expected_map.len() as u32));
    assert_eq!(logs, expected);

    // Response headers: set pairs replaces the map; invalid maps are refused whole.
    s.response_headers = Some(headers(&[("server", "nginx")]));
    s.logs.clear();
    inst.on_response_headers(ctx, &mut s, 1, false).expect("no trap");
    assert_eq!(s.response_headers, Some(headers(&[("x-a", "1"), ("X-B", "22")])));
    let logs: Vec<String> = s.logs.iter().map(|(_, m)| m.clone()).collect();
    let expected_resp = maps::serialize([(&b"x-a"[..], &b"1"[..]), (&b"x-b"[..], &b"22"[..])]);
    assert_eq!(
        logs,
        vec![
            st(0),
            st(2),
            st(2),
            st(2),
            st(0),
            String::from_utf8(expected_resp.clone()).unwrap(),
            st(0),
            st(expected_resp.len() as u32),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// 5. local responses
// ---------------------------------------------------------------------------------------------

#[test]
fn send_local_response_is_recorded_once_and_only_from_stream_callbacks() {
    let engine = engine();
    let mut w = Wat::new();
    w.env("proxy_send_local_response");
    let hdrs = maps::serialize([(&b"x-why"[..], &b"policy"[..])]);
    let crlf_hdrs = maps::serialize([(&b"x-why"[..], &b"a\r\nb"[..])]);
    let send = |w: &mut Wat, code: i32, details: &str, body: &str, h: &[u8]| {
        format!(
            "(call $st (call $proxy_send_local_response (i32.const {code}) {} {} {} (i32.const -1)))",
            w.s(details),
            w.s(body),
            w.s(h)
        )
    };
    let first = send(&mut w, 403, "denied", "blocked", &hdrs);
    let second = send(&mut w, 500, "", "again", b"");
    let from_root = send(&mut w, 403, "root", "root", b"");
    let bad_code = send(&mut w, 99, "", "", b"");
    let big_code = send(&mut w, 600, "", "", b"");
    let bad_hdrs = send(&mut w, 200, "", "", &crlf_hdrs);
    let malformed = send(&mut w, 200, "", "", &7u32.to_le_bytes());
    let from_done = send(&mut w, 200, "", "", b"");
    let d = w.s("d");
    w.func(format!(
        r#"
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    {from_root}
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    {first}
    {second}
    (i32.const 1))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    {bad_code}
    {big_code}
    {bad_hdrs}
    {malformed}
    ;; a body pointer outside memory
    (call $st (call $proxy_send_local_response (i32.const 200) {d} (i32.const 0x7fffffff) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32)
    {from_done}
    (i32.const 1))
"#
    ));
    let m = w.compile(&engine);
    let (mut inst, records) = instantiate(&engine, &m, b"", LogLevel::Trace);
    let root = inst.create_root_context(Some(Vec::new())).expect("root");
    assert_eq!(messages(&records), strs(&["st=0002"]), "refused from on_configure");

    let ctx = inst.create_http_context(root).unwrap();
    let mut s = stream_with(&[]);
    let o = inst.on_request_headers(ctx, &mut s, 0, true).unwrap();
    assert_eq!(o.action, Action::Pause);
    assert_eq!(
        o.local_response,
        Some(LocalResponse {
            status: 403,
            details: b"denied".to_vec(),
            body: b"blocked".to_vec(),
            headers: headers(&[("x-why", "policy")]),
            grpc_status: -1,
        })
    );
    let logs: Vec<&str> = s.logs.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(logs, ["st=0000", "st=0002"], "the second answer is refused");

    // Nothing carries over into the next callback; invalid responses produce nothing.
    s.logs.clear();
    let o = inst.on_response_headers(ctx, &mut s, 0, true).unwrap();
    assert_eq!(o.action, Action::Continue);
    assert_eq!(o.local_response, None);
    let logs: Vec<&str> = s.logs.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(logs, ["st=0002", "st=0002", "st=0002", "st=0002", "st=0006"]);

    s.logs.clear();
    inst.on_done_and_log(ctx, &mut s).unwrap();
    let logs: Vec<&str> = s.logs.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(logs, ["st=0002"], "refused from on_done");
}

// ---------------------------------------------------------------------------------------------
// 6. traps
// ---------------------------------------------------------------------------------------------

#[test]
fn trap_is_reported_and_instance_survives() {
    let engine = engine();
    let mut w = Wat::new();
    w.env("proxy_send_local_response").env("proxy_get_header_map_value");
    let body = w.s("x");
    let host = w.s("host");
    w.func(format!(
        r#"
  (func (export "proxy_on_request_headers") (param $id i32) (param $n i32) (param i32) (result i32)
    (if (i32.eq (local.get $n) (i32.const 1))
      (then
        (drop (call $proxy_send_local_response (i32.const 403) (i32.const 0) (i32.const 0) {body} (i32.const 0) (i32.const 0) (i32.const -1)))
        unreachable))
    (if (i32.eq (local.get $n) (i32.const 2))
      (then (drop (i32.load (i32.const 0x7ffffff0)))))
    (call $st_ret (call $proxy_get_header_map_value (i32.const 0) {host} (i32.const 100) (i32.const 104)))
    (i32.const 0))
"#
    ));
    let m = w.compile(&engine);
    let (mut inst, _) = instantiate(&engine, &m, b"", LogLevel::Trace);
    let root = inst.create_root_context(Some(Vec::new())).unwrap();

    let ctx = inst.create_http_context(root).unwrap();
    let mut s = stream_with(&[("host", "a.example")]);
    match inst.on_request_headers(ctx, &mut s, 1, false) {
        Err(HostError::Trap { callback, message }) => {
            assert_eq!(callback, "proxy_on_request_headers");
            assert!(message.contains("unreachable"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    inst.on_delete(ctx).unwrap();

    // An out-of-bounds load is a trap too.
    let ctx = inst.create_http_context(root).unwrap();
    assert!(matches!(
        inst.on_request_headers(ctx, &mut s, 2, false),
        Err(HostError::Trap { callback: "proxy_on_request_headers", .. })
    ));

    // The instance still runs another context, and the trapped call's local response is gone.
    let ctx = inst.create_http_context(root).unwrap();
    let mut s2 = stream_with(&[("host", "b.example")]);
    let o = inst.on_request_headers(ctx, &mut s2, 0, false).expect("runs after a trap");
    assert_eq!(o.local_response, None);
    let logs: Vec<&str> = s2.logs.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(logs, ["st=0000", "b.example"]);
}

#[test]
fn trap_in_root_callbacks_names_the_callback() {
    let engine = engine();
    let mut w = Wat::new();
    w.func(r#"(func (export "proxy_on_vm_start") (param i32 i32) (result i32) unreachable)"#);
    let m = w.compile(&engine);
    let (mut inst, _) = instantiate(&engine, &m, b"", LogLevel::Trace);
    assert!(matches!(
        inst.create_root_context(None),
        Err(HostError::Trap { callback: "proxy_on_vm_start", .. })
    ));

    // A trap in _initialize fails the instantiation itself.
    let mut w = Wat::new();
    w.func(r#"(func (export "_initialize") unreachable)"#);
    let m = w.compile(&engine);
    let (log, _) = logger(LogLevel::Trace);
    match PluginInstance::new(&m, "test", Vec::new(), log, &proxy_wasm_host::DEFAULT_LIMITS) {
        Err(HostError::Trap { callback, .. }) => assert_eq!(callback, "_initialize"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("expected a trap"),
    }
}

// ---------------------------------------------------------------------------------------------
// 7. ABI 0.1.0
// ---------------------------------------------------------------------------------------------

#[test]
fn abi_0_1_0_two_argument_headers_and_empty_missing_value() {
    let engine = engine();
    let mut w = Wat::with_abi("proxy_abi_version_0_1_0");
    w.env("proxy_get_header_map_value").env("proxy_get_configuration");
    let missing = w.s("missing");
    let host = w.s("host");
    w.func(format!(
        r#"
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (call $st_ret (call $proxy_get_configuration (i32.const 100) (i32.const 104)))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (call $st_ret (call $proxy_get_configuration (i32.const 100) (i32.const 104)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param $id i32) (param $n i32) (result i32)
    (call $st (local.get $n))
    (call $st_ret (call $proxy_get_header_map_value (i32.const 0) {missing} (i32.const 100) (i32.const 104)))
    (call $st (i32.load (i32.const 104)))
    (call $st_ret (call $proxy_get_header_map_value (i32.const 0) {host} (i32.const 100) (i32.const 104)))
    (i32.const 1))
"#
    ));
    let m = w.compile(&engine);
    assert_eq!(m.abi, AbiVersion::V0_1_0);
    let (mut inst, records) = instantiate(&engine, &m, b"vm", LogLevel::Trace);
    assert!(inst.exports().request_headers);
    let root = inst.create_root_context(Some(b"plugin".to_vec())).unwrap();
    // proxy_get_configuration: VM configuration in on_vm_start, plugin configuration after.
    assert_eq!(messages(&records), strs(&["st=0000", "vm", "st=0000", "plugin"]));

    let ctx = inst.create_http_context(root).unwrap();
    let mut s = stream_with(&[("Host", "example.com"), ("a", "b")]);
    let o = inst.on_request_headers(ctx, &mut s, 2, true).expect("0.1.0 callback");
    assert_eq!(o.action, Action::Pause);
    let logs: Vec<&str> = s.logs.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(logs, ["st=0002", "st=0000", "", "st=0000", "st=0000", "example.com"]);
}

#[test]
fn abi_0_1_0_rejects_a_three_argument_header_callback() {
    let engine = engine();
    let mut w = Wat::with_abi("proxy_abi_version_0_1_0");
    w.func(r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))"#);
    let m = w.compile(&engine);
    let (log, _) = logger(LogLevel::Trace);
    match PluginInstance::new(&m, "test", Vec::new(), log, &proxy_wasm_host::DEFAULT_LIMITS) {
        Err(HostError::Instantiate(msg)) => assert!(msg.contains("proxy_on_request_headers"), "{msg}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a 0.1.0 module with a 3-argument on_request_headers must be refused"),
    }
}

// ---------------------------------------------------------------------------------------------
// 8. WASI
// ---------------------------------------------------------------------------------------------

#[test]
fn wasi_stdio_random_environ_and_proc_exit() {
    let engine = engine();
    let mut w = Wat::new();
    for f in ["fd_write", "random_get", "environ_sizes_get", "args_sizes_get", "proc_exit", "clock_time_get"] {
        w.wasi(f);
    }
    let hello = w.ptr(b"hello\n");
    let oops = w.ptr(b"oops\n");
    let ab = w.ptr(b"ab");
    let c = w.ptr(b"c\n");
    let two = w.ptr(b"two\n\n");
    w.func(format!(
        r#"
  (func $iov (param $at i32) (param $ptr i32) (param $len i32)
    (i32.store (local.get $at) (local.get $ptr))
    (i32.store (i32.add (local.get $at) (i32.const 4)) (local.get $len)))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (i32.store (i32.const 320) (i32.const -1))
    (call $iov (i32.const 300) (i32.const {hello}) (i32.const 6))
    (call $st (call $fd_write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 320)))
    (call $st (i32.load (i32.const 320)))
    (call $iov (i32.const 300) (i32.const {oops}) (i32.const 5))
    (call $st (call $fd_write (i32.const 2) (i32.const 300) (i32.const 1) (i32.const 320)))
    (call $iov (i32.const 300) (i32.const {ab}) (i32.const 2))
    (call $iov (i32.const 308) (i32.const {c}) (i32.const 2))
    (call $st (call $fd_write (i32.const 1) (i32.const 300) (i32.const 2) (i32.const 320)))
    (call $st (i32.load (i32.const 320)))
    (call $iov (i32.const 300) (i32.const {two}) (i32.const 5))
    (call $st (call $fd_write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 320)))
    ;; no such fd, iovecs outside memory, too many iovecs
    (call $st (call $fd_write (i32.const 3) (i32.const 300) (i32.const 1) (i32.const 320)))
    (call $st (call $fd_write (i32.const 1) (i32.const 0x7fffffff) (i32.const 1) (i32.const 320)))
    (call $st (call $fd_write (i32.const 1) (i32.const 300) (i32.const 100000) (i32.const 320)))
    ;; random_get
    ;; (the 64 KiB buffer is the second page, ending exactly at the end of memory)
    (call $st (call $random_get (i32.const 65536) (i32.const 65537)))
    (call $st (call $random_get (i32.const 65536) (i32.const 65536)))
    (call $st (call $random_get (i32.const 0x7fffffff) (i32.const 16)))
    ;; environ / args sizes: zeros are written over the 0xffffffff sentinels
    (i32.store (i32.const 600) (i32.const -1))
    (i32.store (i32.const 604) (i32.const -1))
    (call $st (call $environ_sizes_get (i32.const 600) (i32.const 604)))
    (call $st (i32.load (i32.const 600)))
    (call $st (i32.load (i32.const 604)))
    (i32.store (i32.const 600) (i32.const -1))
    (i32.store (i32.const 604) (i32.const -1))
    (call $st (call $args_sizes_get (i32.const 600) (i32.const 604)))
    (call $st (i32.load (i32.const 600)))
    (call $st (i32.load (i32.const 604)))
    ;; clocks: realtime and monotonic are offered, CPU clocks are not
    (call $st (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 700)))
    (call $st (i64.eqz (i64.load (i32.const 700))))
    (call $st (call $clock_time_get (i32.const 2) (i64.const 1) (i32.const 700)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $proc_exit (i32.const 3))
    (i32.const 0))
"#
    ));
    let m = w.compile(&engine);
    let (mut inst, records) = instantiate(&engine, &m, b"", LogLevel::Trace);
    let root = inst.create_root_context(Some(Vec::new())).unwrap();
    let recs = records.lock().unwrap().clone();
    let l = |lv: LogLevel, m: &str| (lv, m.to_string());
    let c = LogLevel::Critical;
    assert_eq!(
        recs,
        vec![
            l(LogLevel::Info, "hello"), // trailing newline stripped
            l(c, "st=0000"),
            l(c, "st=0006"), // nwritten counts the newline
            l(LogLevel::Error, "oops"),
            l(c, "st=0000"),
            l(LogLevel::Info, "abc"),
            l(c, "st=0000"),
            l(c, "st=0004"),
            l(LogLevel::Info, "two\n"), // only one newline is stripped
            l(c, "st=0000"),
            l(c, "st=0008"), // BADF
            l(c, "st=0021"), // FAULT
            l(c, "st=0028"), // INVAL
            l(c, "st=0028"), // random_get above 64 KiB
            l(c, "st=0000"),
            l(c, "st=0021"),
            l(c, "st=0000"),
            l(c, "st=0000"),
            l(c, "st=0000"),
            l(c, "st=0000"),
            l(c, "st=0000"),
            l(c, "st=0000"),
            l(c, "st=0000"),
            l(c, "st=0000"), // time is not zero
            l(c, "st=0028"),
        ]
    );
    drop(recs);

    let ctx = inst.create_http_context(root).unwrap();
    let mut s = stream_with(&[]);
    match inst.on_request_headers(ctx, &mut s, 0, false) {
        Err(HostError::Trap { callback, message }) => {
            assert_eq!(callback, "proxy_on_request_headers");
            assert!(message.contains("proc_exit(3)"), "{message}");
        }
        other => panic!("expected proc_exit to trap, got {other:?}"),
    }
    // ...and the instance keeps working.
    assert!(inst.create_http_context(root).is_ok());
}

#[test]
fn wasi_fd_write_respects_the_logger_level() {
    let engine = engine();
    let mut w = Wat::new();
    w.wasi("fd_write");
    let hello = w.ptr(b"hello\n");
    let oops = w.ptr(b"oops\n");
    w.func(format!(
        r#"
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (i32.store (i32.const 300) (i32.const {hello}))
    (i32.store (i32.const 304) (i32.const 6))
    (call $st (call $fd_write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 320)))
    (call $st (i32.load (i32.const 320)))
    (i32.store (i32.const 300) (i32.const {oops}))
    (i32.store (i32.const 304) (i32.const 5))
    (call $st (call $fd_write (i32.const 2) (i32.const 300) (i32.const 1) (i32.const 320)))
    (i32.const 1))
"#
    ));
    let m = w.compile(&engine);
    let (mut inst, records) = instantiate(&engine, &m, b"", LogLevel::Warn);
    inst.create_root_context(None).unwrap();
    // stdout (Info) is below Warn: not logged, but still reported as written.
    assert_eq!(messages(&records), strs(&["st=0000", "st=0006", "oops", "st=0000"]));
}

// ---------------------------------------------------------------------------------------------
// 9. proxy_log levels
// ---------------------------------------------------------------------------------------------

#[test]
fn proxy_log_checks_the_level_before_reading_memory() {
    let engine = engine();
    let mut w = Wat::new();
    w.env("proxy_get_log_level");
    let x = w.s("x");
    let info = w.s("info msg");
    let warn = w.s("warn msg");
    w.func(format!(
        r#"
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    ;; disabled levels: memory is not read, so a wild pointer is fine
    (call $st (call $proxy_log (i32.const 1) (i32.const 0x7fffffff) (i32.const 10)))
    (call $st (call $proxy_log (i32.const 0) (i32.const -1) (i32.const -1)))
    ;; enabled levels with a wild pointer or length
    (call $st (call $proxy_log (i32.const 4) (i32.const 0x7fffffff) (i32.const 10)))
    (call $st (call $proxy_log (i32.const 3) (i32.const 0) (i32.const 0x7fffffff)))
    (call $st (call $proxy_log (i32.const 3) (i32.const -4) (i32.const 8)))
    ;; no such level
    (call $st (call $proxy_log (i32.const 9) {x}))
    (call $st (call $proxy_log (i32.const -1) {x}))
    (call $st (call $proxy_log (i32.const 2) {info}))
    (call $st (call $proxy_log (i32.const 3) {warn}))
    (call $st (call $proxy_get_log_level (i32.const 108)))
    (call $st (i32.load (i32.const 108)))
    (call $st (call $proxy_get_log_level (i32.const 0x7fffffff)))
    (i32.const 1))
"#
    ));
    let m = w.compile(&engine);
    let (mut inst, records) = instantiate(&engine, &m, b"", LogLevel::Warn);
    inst.create_root_context(Some(Vec::new())).unwrap();
    let c = LogLevel::Critical;
    let l = |lv: LogLevel, m: &str| (lv, m.to_string());
    assert_eq!(
        records.lock().unwrap().clone(),
        vec![
            l(c, "st=0000"),
            l(c, "st=0000"),
            l(c, "st=0006"),
            l(c, "st=0006"),
            l(c, "st=0006"),
            l(c, "st=0002"),
            l(c, "st=0002"),
            l(c, "st=0000"), // info: OK, not recorded
            l(LogLevel::Warn, "warn msg"),
            l(c, "st=0000"),
            l(c, "st=0000"),
            l(c, "st=0003"), // Warn
            l(c, "st=0006"),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// 10. unimplemented hostcalls
// ---------------------------------------------------------------------------------------------

#[test]
fn unimplemented_hostcalls_return_a_status_and_never_trap() {
    let engine = engine();
    let mut w = Wat::new();
    let unimplemented: &[(&str, &str)] = &[
        ("proxy_set_shared_data", "(i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 0)"),
        ("proxy_get_shared_data", "(i32.const 0) (i32.const 1) (i32.const 100) (i32.const 104) (i32.const 108)"),
        ("proxy_define_metric", "(i32.const 0) (i32.const 0) (i32.const 4) (i32.const 108)"),
        ("proxy_increment_metric", "(i32.const 1) (i64.const -5)"),
        ("proxy_record_metric", "(i32.const 1) (i64.const 0x7fffffffffffffff)"),
        ("proxy_enqueue_shared_queue", "(i32.const 1) (i32.const 0) (i32.const 0)"),
        ("proxy_register_shared_queue", "(i32.const 0) (i32.const 4) (i32.const 108)"),
        ("proxy_get_metric", "(i32.const 1) (i32.const 108)"),
    ];
    let mut body = String::new();
    for (name, args) in unimplemented {
        w.env(name);
        body.push_str(&format!("(call $st (call ${name} {args}))\n    "));
    }
    // Implemented, but with nothing to act on.
    w.env("proxy_done").env("proxy_call_foreign_function");
    let fname = w.s("compress");
    body.push_str("(call $st (call $proxy_done))\n    ");
    body.push_str(&format!(
        "(call $st (call $proxy_call_foreign_function {fname} (i32.const 0) (i32.const 0) (i32.const 100) (i32.const 104)))\n    "
    ));
    body.push_str(
        "(call $st (call $proxy_call_foreign_function (i32.const 0x7fffffff) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 100) (i32.const 104)))\n    ",
    );
    // A WASI call this host does not implement: ENOSYS.
    w.wasi("path_open");
    body.push_str(
        "(call $st (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 0)))\n    ",
    );
    w.func(format!(
        r#"
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    {body}
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $st (call $proxy_get_metric (i32.const 7) (i32.const 108)))
    (i32.const 0))
"#
    ));
    let m = w.compile(&engine);
    let (mut inst, records) = instantiate(&engine, &m, b"", LogLevel::Trace);
    let root = inst.create_root_context(Some(Vec::new())).expect("no trap");

    let recs = records.lock().unwrap().clone();
    let statuses: Vec<&str> = recs.iter().filter(|(_, m)| m.starts_with("st=")).map(|(_, m)| m.as_str()).collect();
    let mut expected = vec!["st=0012"; unimplemented.len()];
    expected.extend(["st=0001", "st=0001", "st=0006", "st=0052"]);
    assert_eq!(statuses, expected);
    // Each unimplemented call says so at Warn, naming itself.
    let warns: Vec<&str> = recs.iter().filter(|(l, _)| *l == LogLevel::Warn).map(|(_, m)| m.as_str()).collect();
    assert_eq!(warns.len(), unimplemented.len() + 1);
    assert!(warns[0].contains("proxy_set_shared_data") && warns[0].contains("UNIMPLEMENTED"), "{}", warns[0]);
    assert!(warns[3].contains("proxy_increment_metric"), "{}", warns[3]);
    assert!(warns.last().unwrap().contains("wasi_snapshot_preview1.path_open") && warns.last().unwrap().contains("ENOSYS"));

    // In a request callback the stub warns through the stream.
    let ctx = inst.create_http_context(root).unwrap();
    let mut s = stream_with(&[]);
    inst.on_request_headers(ctx, &mut s, 0, false).expect("no trap");
    assert_eq!(s.logs.len(), 2);
    assert_eq!(s.logs[0].0, LogLevel::Warn);
    assert!(s.logs[0].1.contains("proxy_get_metric"), "{}", s.logs[0].1);
    assert_eq!(s.logs[1].1, "st=0012");
}

// ---------------------------------------------------------------------------------------------
// effective context
// ---------------------------------------------------------------------------------------------

#[test]
fn set_effective_context_limits_stream_access() {
    let engine = engine();
    let mut w = Wat::new();
    w.env("proxy_set_effective_context").env("proxy_get_header_map_value").env("proxy_send_local_response");
    let host = w.s("host");
    let get = format!("(call $st_ret (call $proxy_get_header_map_value (i32.const 0) {host} (i32.const 100) (i32.const 104)))");
    let send = "(call $st (call $proxy_send_local_response (i32.const 403) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))";
    w.func(format!(
        r#"
  (func (export "proxy_on_request_headers") (param $id i32) (param i32) (param i32) (result i32)
    (call $st (call $proxy_set_effective_context (i32.const 999)))
    (call $st (call $proxy_set_effective_context (i32.const 1)))
    {get}
    {send}
    (call $st (call $proxy_set_effective_context (local.get $id)))
    {get}
    (i32.const 0))
"#
    ));
    let m = w.compile(&engine);
    let (mut inst, records) = instantiate(&engine, &m, b"", LogLevel::Trace);
    let root = inst.create_root_context(None).unwrap();
    assert_eq!(root, 1);
    let ctx = inst.create_http_context(root).unwrap();
    let mut s = stream_with(&[("host", "h")]);
    let o = inst.on_request_headers(ctx, &mut s, 1, false).unwrap();
    assert_eq!(o.local_response, None);
    // While the root is effective, messages go to the instance logger and the stream is out of
    // reach; once the request context is effective again, they go to the stream.
    assert_eq!(messages(&records), strs(&["st=0000", "st=0001", "st=0002"]));
    let logs: Vec<&str> = s.logs.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(logs, ["st=0002", "st=0000", "st=0000", "h"]);
}

// ---------------------------------------------------------------------------------------------
// HTTP calls
// ---------------------------------------------------------------------------------------------

#[test]
fn http_call_is_recorded_and_its_response_delivered() {
    let engine = engine();
    let mut w = Wat::new();
    w.env("proxy_http_call").env("proxy_get_header_map_value").env("proxy_get_buffer_bytes");
    w.env("proxy_add_header_map_value").env("proxy_send_local_response").env("proxy_continue_stream");
    let hdrs = maps::serialize([(&b":method"[..], &b"POST"[..]), (b":path", b"/auth"), (b":authority", b"auth")]);
    let no_path = maps::serialize([(&b":method"[..], &b"GET"[..])]);
    let crlf = maps::serialize([(&b":method"[..], &b"GET"[..]), (b":path", b"/"), (b"x", b"a\r\nb")]);
    let split = maps::serialize([(&b":method"[..], &b"GET"[..]), (b":path", b"/a HTTP/1.0\tx")]);
    let call = |w: &mut Wat, up: &str, h: &[u8], body: &str, timeout: i32| {
        format!(
            "(call $st (call $proxy_http_call {} {} {} (i32.const 0) (i32.const 0) (i32.const {timeout}) (i32.const 200)))",
            w.s(up),
            w.s(h),
            w.s(body)
        )
    };
    let ok1 = call(&mut w, "auth_backend", &hdrs, "payload", 1500);
    let ok2 = call(&mut w, "127.0.0.1:9", &hdrs, "", 0);
    let bad_up = call(&mut w, "", &hdrs, "", 0);
    let bad_path = call(&mut w, "up", &no_path, "", 0);
    let bad_hdr = call(&mut w, "up", &crlf, "", 0);
    let bad_path_sp = call(&mut w, "up", &split, "", 0);
    let from_response = call(&mut w, "up", &hdrs, "", 0);
    let status = w.s(":status");
    let x_add = w.s("x-auth");
    let v_add = w.s("ok");
    w.func(format!(
        r#"
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    {ok1}
    {ok2}
    {bad_up}
    {bad_path}
    {bad_hdr}
    {bad_path_sp}
    (i32.const 1))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    {from_response}
    (i32.const 0))
  (func (export "proxy_on_http_call_response") (param $ctx i32) (param $token i32) (param $h i32) (param $b i32) (param $t i32)
    (call $st (local.get $token))
    (call $st (local.get $h))
    (call $st (local.get $b))
    (call $st_ret (call $proxy_get_header_map_value (i32.const 6) {status} (i32.const 100) (i32.const 104)))
    (call $st_ret (call $proxy_get_buffer_bytes (i32.const 4) (i32.const 0) (i32.const -1) (i32.const 100) (i32.const 104)))
    ;; the call-response map is read-only; the request's is not
    (call $st (call $proxy_add_header_map_value (i32.const 6) {x_add} {v_add}))
    (call $st (call $proxy_add_header_map_value (i32.const 0) {x_add} {v_add}))
    (call $st (call $proxy_continue_stream (i32.const 0))))
"#
    ));
    let m = w.compile(&engine);
    let (mut inst, _records) = instantiate(&engine, &m, b"", LogLevel::Trace);
    let root = inst.create_root_context(Some(Vec::new())).expect("root");
    let ctx = inst.create_http_context(root).unwrap();
    let mut s = stream_with(&[]);
    let o = inst.on_request_headers(ctx, &mut s, 0, true).unwrap();
    assert_eq!(o.action, Action::Pause);
    let sts: Vec<&str> = s.logs.iter().filter(|(_, m)| m.starts_with("st=")).map(|(_, m)| m.as_str()).collect();
    assert_eq!(sts, ["st=0000", "st=0000", "st=0002", "st=0002", "st=0002", "st=0002"]);
    assert!(inst.has_http_calls());
    let calls = inst.take_http_calls();
    assert!(!inst.has_http_calls());
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].upstream, b"auth_backend");
    assert_eq!(calls[0].context_id, ctx);
    assert_eq!(calls[0].timeout_ms, 1500);
    assert_eq!(calls[0].body, b"payload");
    assert_eq!(calls[0].header(b":PATH"), Some(&b"/auth"[..]));
    assert_ne!(calls[0].token, calls[1].token);

    // From a response phase too (the embedder holds the response for it), but not on the
    // Lua path (api7's contract: OpenResty's filters cannot wait).
    s.logs.clear();
    s.response_headers = Some(Vec::new());
    inst.on_response_headers(ctx, &mut s, 0, true).unwrap();
    assert!(s.logs.iter().any(|(_, m)| m == "st=0000"), "{:?}", s.logs);
    let late = inst.take_http_calls();
    assert_eq!(late.len(), 1);
    inst.forget_http_calls(&[late[0].token]);

    // The response is readable; the callback may resume the request.
    s.logs.clear();
    let resp = HttpCallResponse {
        headers: headers(&[(":status", "201"), ("content-type", "text/plain")]),
        body: b"granted".to_vec(),
        trailers: Vec::new(),
    };
    let o = inst.on_http_call_response(ctx, calls[0].token, &resp, Some(&mut s)).unwrap();
    assert!(o.ops.continue_request);
    let logs: Vec<String> = s.logs.iter().map(|(_, m)| m.clone()).collect();
    let expect_token = st(calls[0].token);
    assert_eq!(logs[0], expect_token);
    assert_eq!(&logs[1..], ["st=0002", "st=0007", "st=0000", "201", "st=0000", "granted", "st=0002", "st=0000", "st=0000"]);
    assert_eq!(s.header(MapType::RequestHeaders, "x-auth").as_deref(), Some("ok"));

    // A failed call: no headers, no body, NOT_FOUND for :status.
    s.logs.clear();
    inst.on_http_call_response(ctx, calls[1].token, &HttpCallResponse::failed(), Some(&mut s)).unwrap();
    let logs: Vec<&str> = s.logs.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(&logs[1..5], ["st=0000", "st=0000", "st=0001", "st=0000"]);

    // The Lua path (api7's contract) refuses calls from the response phases.
    inst.set_api7_contract();
    s.logs.clear();
    inst.on_response_headers(ctx, &mut s, 0, true).unwrap();
    assert!(s.logs.iter().any(|(_, m)| m == "st=0002"), "{:?}", s.logs);
    assert!(inst.take_http_calls().is_empty());
}

#[test]
fn http_calls_in_flight_are_bounded() {
    let engine = engine();
    let mut w = Wat::new();
    w.env("proxy_http_call");
    let hdrs = maps::serialize([(&b":method"[..], &b"GET"[..]), (b":path", b"/")]);
    let up = w.s("up");
    let h = w.s(&hdrs);
    let cap = proxy_wasm_host::http_call::MAX_PENDING_CALLS;
    w.func(format!(
        r#"
  (global $ok (mut i32) (i32.const 0))
  (global $refused (mut i32) (i32.const 0))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32)
    (loop $again
      (if (i32.eqz (call $proxy_http_call {up} {h} (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 200)))
        (then (global.set $ok (i32.add (global.get $ok) (i32.const 1))))
        (else (global.set $refused (i32.add (global.get $refused) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const {n}))))
    (call $st (i32.div_u (global.get $ok) (i32.const 10)))
    (call $st (global.get $refused))
    (i32.const 1))
"#,
        n = cap + 100
    ));
    let m = w.compile(&engine);
    let (mut inst, _records) = instantiate(&engine, &m, b"", LogLevel::Error);
    let root = inst.create_root_context(Some(Vec::new())).expect("root");
    let ctx = inst.create_http_context(root).unwrap();
    let mut s = stream_with(&[]);
    inst.on_request_headers(ctx, &mut s, 0, true).unwrap();
    let sts: Vec<&str> = s.logs.iter().filter(|(_, m)| m.starts_with("st=")).map(|(_, m)| m.as_str()).collect();
    assert_eq!(sts, [st((cap / 10) as u32), st(100)]);
    let calls = inst.take_http_calls();
    assert_eq!(calls.len(), cap);
    let tokens: Vec<u32> = calls.iter().map(|c| c.token).collect();
    // Taken calls still count until answered (or forgotten); the counters are cumulative.
    s.logs.clear();
    inst.on_request_headers(ctx, &mut s, 0, true).unwrap();
    let sts: Vec<&str> = s.logs.iter().filter(|(_, m)| m.starts_with("st=")).map(|(_, m)| m.as_str()).collect();
    assert_eq!(sts, [st((cap / 10) as u32), st((100 + cap + 100) as u32)]);
    inst.forget_http_calls(&tokens);
}

// ---------------------------------------------------------------------------------------------
// shared data, shared queues, metrics (over a heap-backed SharedStore)
// ---------------------------------------------------------------------------------------------

#[test]
fn shared_data_queues_and_metrics_hostcalls() {
    let engine = engine();
    let mut w = Wat::new();
    for c in [
        "proxy_set_shared_data",
        "proxy_get_shared_data",
        "proxy_register_shared_queue",
        "proxy_resolve_shared_queue",
        "proxy_enqueue_shared_queue",
        "proxy_dequeue_shared_queue",
        "proxy_define_metric",
        "proxy_increment_metric",
        "proxy_get_metric",
    ] {
        w.env(c);
    }
    let (k, v1, v2, nope, q, empty, hello, c) = (w.s("k"), w.s("v1"), w.s("v2"), w.s("nope"), w.s("q"), w.s(""), w.s("hello"), w.s("c"));
    w.func(format!(
        r#"
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (call $st (call $proxy_set_shared_data {k} {v1} (i32.const 0)))
    (call $st_ret (call $proxy_get_shared_data {k} (i32.const 100) (i32.const 104) (i32.const 108)))
    (call $st (call $proxy_set_shared_data {k} {v2} (i32.const 999)))
    (call $st (call $proxy_set_shared_data {k} {v2} (i32.load (i32.const 108))))
    (call $st (call $proxy_get_shared_data {nope} (i32.const 100) (i32.const 104) (i32.const 108)))
    (call $st (call $proxy_register_shared_queue {q} (i32.const 112)))
    (call $st (call $proxy_resolve_shared_queue {empty} {q} (i32.const 116)))
    (call $st (i32.sub (i32.load (i32.const 112)) (i32.load (i32.const 116))))
    (call $st (call $proxy_dequeue_shared_queue (i32.load (i32.const 112)) (i32.const 100) (i32.const 104)))
    (call $st (call $proxy_dequeue_shared_queue (i32.const 12345) (i32.const 100) (i32.const 104)))
    (call $st (call $proxy_enqueue_shared_queue (i32.load (i32.const 112)) {hello}))
    (call $st (call $proxy_define_metric (i32.const 0) {c} (i32.const 120)))
    (call $st (call $proxy_increment_metric (i32.load (i32.const 120)) (i64.const 3)))
    (call $st (call $proxy_increment_metric (i32.load (i32.const 120)) (i64.const -1)))
    (call $st (call $proxy_get_metric (i32.load (i32.const 120)) (i32.const 128)))
    (call $st (i32.wrap_i64 (i64.load (i32.const 128))))
    (i32.const 1))
  (func (export "proxy_on_queue_ready") (param $root i32) (param $q i32)
    (call $st_ret (call $proxy_dequeue_shared_queue (local.get $q) (i32.const 100) (i32.const 104)))
    (call $st (call $proxy_dequeue_shared_queue (local.get $q) (i32.const 100) (i32.const 104))))
"#
    ));
    let m = w.compile(&engine);
    let (mut inst, records) = instantiate(&engine, &m, b"", LogLevel::Trace);
    let store = Arc::new(proxy_wasm_host::SharedStore::new_private(proxy_wasm_host::shared_store::MIN_SIZE));
    inst.set_shared_store(Some(store.clone()));
    inst.create_root_context(Some(Vec::new())).expect("no trap");
    let got = |records: &Records| messages(records);
    assert_eq!(
        got(&records),
        strs(&[
            "st=0000", "st=0000", "v1", "st=0008", "st=0000", "st=0001", "st=0000", "st=0000", "st=0000", "st=0007",
            "st=0001", "st=0000", "st=0000", "st=0000", "st=0002", "st=0000", "st=0003",
        ])
    );
    // Keys are namespaced by vm_id (the module's name, "test").
    assert_eq!(store.get(b"test\0k").unwrap().0, b"v2");
    assert!(inst.has_queues());
    records.lock().unwrap().clear();
    inst.poll_queues().expect("no trap");
    assert_eq!(got(&records), strs(&["st=0000", "hello", "st=0007"]));
    // Nothing new: no callback.
    records.lock().unwrap().clear();
    inst.poll_queues().expect("no trap");
    assert!(got(&records).is_empty());
}

/// Queue ids are shared numbers: a module that neither registered nor resolved a queue cannot
/// use its id; another VM's queue found by name may be enqueued to, never dequeued from; shared
/// data of another VM is out of reach.
#[test]
fn queues_and_shared_data_are_scoped_to_their_vm() {
    let engine = engine();
    let store = Arc::new(proxy_wasm_host::SharedStore::new_private(proxy_wasm_host::shared_store::MIN_SIZE));
    let calls = [
        "proxy_set_shared_data",
        "proxy_get_shared_data",
        "proxy_register_shared_queue",
        "proxy_resolve_shared_queue",
        "proxy_enqueue_shared_queue",
        "proxy_dequeue_shared_queue",
    ];
    // The owner ("test"): registers q (id at 112), enqueues "secret", stores k.
    let mut w = Wat::new();
    for c in calls {
        w.env(c);
    }
    let (k, v, q, secret) = (w.s("k"), w.s("v"), w.s("q"), w.s("secret"));
    w.func(format!(
        r#"
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (call $st (call $proxy_set_shared_data {k} {v} (i32.const 0)))
    (call $st (call $proxy_register_shared_queue {q} (i32.const 112)))
    (call $st (call $proxy_enqueue_shared_queue (i32.load (i32.const 112)) {secret}))
    (i32.const 1))
"#
    ));
    let m = w.compile(&engine);
    let (mut owner, records) = instantiate(&engine, &m, b"", LogLevel::Trace);
    owner.set_shared_store(Some(store.clone()));
    owner.create_root_context(Some(Vec::new())).expect("no trap");
    assert_eq!(messages(&records), strs(&["st=0000", "st=0000", "st=0000"]));
    assert_eq!(store.resolve_queue(b"test\0q"), Some(1));

    // Another module ("other") guesses id 1, then finds the queue by name.
    let mut w = Wat::new();
    for c in calls {
        w.env(c);
    }
    let (k, q, empty, test, hello) = (w.s("k"), w.s("q"), w.s(""), w.s("test"), w.s("hello"));
    w.func(format!(
        r#"
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (call $st (call $proxy_dequeue_shared_queue (i32.const 1) (i32.const 100) (i32.const 104)))
    (call $st (call $proxy_enqueue_shared_queue (i32.const 1) {hello}))
    (call $st (call $proxy_get_shared_data {k} (i32.const 100) (i32.const 104) (i32.const 108)))
    (call $st (call $proxy_resolve_shared_queue {empty} {q} (i32.const 116)))
    (call $st (call $proxy_resolve_shared_queue {test} {q} (i32.const 116)))
    (call $st (call $proxy_enqueue_shared_queue (i32.load (i32.const 116)) {hello}))
    (call $st (call $proxy_dequeue_shared_queue (i32.load (i32.const 116)) (i32.const 100) (i32.const 104)))
    (i32.const 1))
"#
    ));
    let m = w.compile(&engine);
    let (log, records) = logger(LogLevel::Trace);
    let mut other = PluginInstance::new(&m, "other", Vec::new(), log, &proxy_wasm_host::DEFAULT_LIMITS).expect("instantiates");
    other.set_shared_store(Some(store.clone()));
    other.create_root_context(Some(Vec::new())).expect("no trap");
    assert_eq!(
        messages(&records),
        strs(&["st=0001", "st=0001", "st=0001", "st=0001", "st=0000", "st=0000", "st=0001"])
    );
    // The owner's item is still there, followed by the one enqueued through the cross-VM path.
    assert_eq!(store.dequeue(1).unwrap(), b"secret");
    assert_eq!(store.dequeue(1).unwrap(), b"hello");
}

/// A call's timeout is capped, its header map bounded before it is copied, and the embedder's
/// policy refuses targets at dispatch with BAD_ARGUMENT, logging once per target.
#[test]
fn http_call_bounds_and_policy() {
    use proxy_wasm_host::http_call::{MAX_CALL_HEADER_BYTES, MAX_CALL_TIMEOUT_MS};
    let engine = engine();
    let mut w = Wat::new();
    w.env("proxy_http_call");
    let hdrs = maps::serialize([(&b":method"[..], &b"GET"[..]), (b":path", b"/")]);
    let (up, bad) = (w.s("up"), w.s("bad"));
    let h = w.s(&hdrs);
    let hp = w.ptr(&hdrs);
    w.func(format!(
        r#"
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (call $st (call $proxy_http_call {up} {h} (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1) (i32.const 200)))
    (call $st (call $proxy_http_call {up} (i32.const {hp}) (i32.const {too_long}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 5) (i32.const 200)))
    (call $st (call $proxy_http_call {bad} {h} (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 5) (i32.const 200)))
    (call $st (call $proxy_http_call {bad} {h} (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 5) (i32.const 200)))
    (i32.const 1))
"#,
        too_long = MAX_CALL_HEADER_BYTES + 1
    ));
    let m = w.compile(&engine);
    let (mut inst, records) = instantiate(&engine, &m, b"", LogLevel::Warn);
    inst.set_call_policy(Box::new(|up: &[u8]| if up == b"bad" { Err("not on the list".into()) } else { Ok(()) }));
    inst.create_root_context(Some(Vec::new())).expect("no trap");
    let logs = messages(&records);
    let sts: Vec<&str> = logs.iter().filter(|m| m.starts_with("st=")).map(|m| m.as_str()).collect();
    assert_eq!(sts, ["st=0000", "st=0002", "st=0002", "st=0002"]);
    let refusals: Vec<&String> = logs.iter().filter(|m| m.contains("\"bad\" refused (BAD_ARGUMENT): not on the list")).collect();
    assert_eq!(refusals.len(), 1, "{logs:?}");
    let calls = inst.take_http_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].timeout_ms, MAX_CALL_TIMEOUT_MS);
}

// ---------------------------------------------------------------------------------------------
// L4 (network filter) callbacks
// ---------------------------------------------------------------------------------------------

#[test]
fn l4_callbacks_data_buffers_and_stream_control() {
    let engine = engine();
    let mut w = Wat::new();
    for h in ["proxy_get_buffer_bytes", "proxy_set_buffer_bytes", "proxy_close_stream", "proxy_continue_stream", "proxy_http_call"] {
        w.env(h);
    }
    let gb = |ty: i32| format!("(call $st_ret (call $proxy_get_buffer_bytes (i32.const {ty}) (i32.const 0) (i32.const -1) (i32.const 100) (i32.const 104)))");
    let new_conn = w.say("new");
    let prepend = w.s(">>");
    let append = w.s("<<");
    let upstream = w.s("127.0.0.1:1");
    let (gb2, gb3) = (gb(2), gb(3));
    w.func(format!(
        r#"
  (func (export "proxy_on_new_connection") (param i32) (result i32)
    {new_conn}
    ;; no data yet
    {gb2}
    ;; an HTTP stream's names are refused on an L4 stream
    (call $st (call $proxy_continue_stream (i32.const 0)))
    (i32.const 0))
  (func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32)
    (call $st (local.get 1))
    {gb2}
    ;; the other direction's buffer is not there
    {gb3}
    (call $st (call $proxy_set_buffer_bytes (i32.const 2) (i32.const 0) (i32.const 0) {prepend}))
    {gb2}
    ;; Pause until the end of the stream
    (i32.eqz (local.get 2)))
  (func (export "proxy_on_upstream_data") (param i32 i32 i32) (result i32)
    (call $st (call $proxy_set_buffer_bytes (i32.const 3) (i32.const -1) (i32.const 0) {append}))
    {gb3}
    (call $st (call $proxy_http_call {upstream} (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 108)))
    (call $st (call $proxy_continue_stream (i32.const 2)))
    (call $st (call $proxy_close_stream (i32.const 3)))
    (i32.const 0))
  (func (export "proxy_on_downstream_connection_close") (param i32 i32)
    (call $st (i32.add (i32.const 100) (local.get 1))))
  (func (export "proxy_on_upstream_connection_close") (param i32 i32)
    (call $st (i32.add (i32.const 200) (local.get 1))))
"#
    ));
    let m = w.compile(&engine);
    let (mut inst, _records) = instantiate(&engine, &m, b"", LogLevel::Info);
    let take = |s: &mut MemoryStream| std::mem::take(&mut s.logs).into_iter().map(|(_, m)| m).collect::<Vec<_>>();
    inst.refuse_http_calls();
    let root = inst.create_root_context(None).expect("root");
    let ctx = inst.create_stream_context(root).unwrap();
    let exports = inst.exports();
    assert!(exports.downstream_data && exports.upstream_data);
    let mut s = MemoryStream::default();
    let o = inst.on_new_connection(ctx, &mut s).unwrap();
    assert_eq!(o.action, Action::Continue);
    assert_eq!(take(&mut s), strs(&["new", "st=0001", "st=0002"]));

    s.downstream_data = Some(b"ping".to_vec());
    let o = inst.on_stream_data(false, ctx, &mut s, 4, false).unwrap();
    assert_eq!(o.action, Action::Pause);
    assert_eq!(take(&mut s), strs(&["st=0004", "st=0000", "ping", "st=0001", "st=0000", "st=0000", ">>ping"]));
    assert_eq!(s.downstream_data.as_deref(), Some(&b">>ping"[..]));
    let o = inst.on_stream_data(false, ctx, &mut s, 6, true).unwrap();
    assert_eq!(o.action, Action::Continue);
    take(&mut s);

    s.downstream_data = None;
    s.upstream_data = Some(b"pong".to_vec());
    let o = inst.on_stream_data(true, ctx, &mut s, 4, true).unwrap();
    assert_eq!(s.upstream_data.as_deref(), Some(&b"pong<<"[..]));
    // HTTP calls: BAD_ARGUMENT where the embedder sends none.
    let msgs = take(&mut s);
    assert_eq!(msgs[..3], strs(&["st=0000", "st=0000", "pong<<"])[..]);
    assert!(msgs.contains(&"st=0002".to_string()) && msgs.iter().any(|m| m.contains("sends no HTTP calls")), "{msgs:?}");
    assert!(o.ops.continue_downstream && o.ops.close_upstream && !o.ops.close_downstream);
    assert!(o.ops.closes());

    inst.on_connection_close(false, ctx, &mut s, proxy_wasm_host::abi::PeerType::Remote).unwrap();
    inst.on_connection_close(true, ctx, &mut s, proxy_wasm_host::abi::PeerType::Local).unwrap();
    let msgs = take(&mut s);
    assert_eq!(msgs.iter().filter(|m| m.starts_with("st=")).cloned().collect::<Vec<_>>(), strs(&["st=0102", "st=0201"]));
    inst.on_done_and_log(ctx, &mut s).unwrap();
    inst.on_delete(ctx).unwrap();
}

#[test]
fn l4_callbacks_a_module_does_not_export_are_skipped() {
    let engine = engine();
    let w = Wat::new();
    let m = w.compile(&engine);
    let (mut inst, records) = instantiate(&engine, &m, b"", LogLevel::Info);
    let root = inst.create_root_context(None).expect("root");
    let ctx = inst.create_stream_context(root).unwrap();
    let e = inst.exports();
    assert!(!e.downstream_data && !e.upstream_data);
    let mut s = MemoryStream { downstream_data: Some(b"x".to_vec()), ..Default::default() };
    assert_eq!(inst.on_new_connection(ctx, &mut s).unwrap().action, Action::Continue);
    assert_eq!(inst.on_stream_data(false, ctx, &mut s, 1, false).unwrap().action, Action::Continue);
    inst.on_connection_close(false, ctx, &mut s, proxy_wasm_host::abi::PeerType::Local).unwrap();
    assert!(messages(&records).is_empty() && s.logs.is_empty());
}

// ---------------------------------------------------------------------------------------------
// gRPC calls
// ---------------------------------------------------------------------------------------------

#[test]
fn grpc_calls_are_framed_and_answered_as_envoy_does() {
    use proxy_wasm_host::grpc_call::{code, GrpcKind};
    use proxy_wasm_host::GrpcEvent;
    let engine = engine();
    let mut w = Wat::new();
    w.env("proxy_grpc_call").env("proxy_grpc_stream").env("proxy_grpc_send").env("proxy_grpc_cancel");
    w.env("proxy_get_header_map_value").env("proxy_get_buffer_bytes").env("proxy_get_status");
    let md = maps::serialize([(&b"x-echo"[..], &b"hi"[..]), (b"x-data-bin", b"\x00\xff")]);
    let bad_md = maps::serialize([(&b":path"[..], &b"/x"[..])]);
    let (up, svc, method, mdp, msg) = (w.s("grpcs://auth:443"), w.s("test.Echo"), w.s("Unary"), w.s(&md), w.s("ping"));
    let (bad_up, bad_svc, bad) = (w.s("a b"), w.s("no/slash"), w.s(&bad_md));
    let (echo, trailer, one, two) = (w.s("x-echo"), w.s("x-trailer"), w.s("one"), w.s("two"));
    w.func(format!(
        r#"
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $st (call $proxy_grpc_call {up} {svc} {method} {mdp} {msg} (i32.const 1500) (i32.const 200)))
    (call $st (call $proxy_grpc_call {bad_up} {svc} {method} {mdp} {msg} (i32.const 0) (i32.const 200)))
    (call $st (call $proxy_grpc_call {up} {bad_svc} {method} {mdp} {msg} (i32.const 0) (i32.const 200)))
    (call $st (call $proxy_grpc_call {up} {svc} {method} {bad} {msg} (i32.const 0) (i32.const 200)))
    ;; a stream: two messages, the second ends it; a send after the end is refused
    (call $st (call $proxy_grpc_stream {up} {svc} {method} {mdp} (i32.const 204)))
    (call $st (call $proxy_grpc_send (i32.load (i32.const 204)) {one} (i32.const 0)))
    (call $st (call $proxy_grpc_send (i32.load (i32.const 204)) {two} (i32.const 1)))
    (call $st (call $proxy_grpc_send (i32.load (i32.const 204)) {one} (i32.const 1)))
    (call $st (call $proxy_grpc_send (i32.const 9999) {one} (i32.const 1)))
    (i32.const 1))
  (func (export "proxy_on_grpc_receive_initial_metadata") (param $ctx i32) (param $token i32) (param $n i32)
    (call $st (local.get $n))
    (call $st_ret (call $proxy_get_header_map_value (i32.const 4) {echo} (i32.const 100) (i32.const 104))))
  (func (export "proxy_on_grpc_receive") (param $ctx i32) (param $token i32) (param $n i32)
    (call $st (local.get $n))
    (call $st_ret (call $proxy_get_buffer_bytes (i32.const 5) (i32.const 0) (i32.const -1) (i32.const 100) (i32.const 104)))
    (call $st (call $proxy_get_header_map_value (i32.const 6) {echo} (i32.const 100) (i32.const 104))))
  (func (export "proxy_on_grpc_receive_trailing_metadata") (param $ctx i32) (param $token i32) (param $n i32)
    (call $st_ret (call $proxy_get_header_map_value (i32.const 5) {trailer} (i32.const 100) (i32.const 104))))
  (func (export "proxy_on_grpc_close") (param $ctx i32) (param $token i32) (param $status i32)
    (call $st (local.get $status))
    (call $st (call $proxy_get_status (i32.const 108) (i32.const 100) (i32.const 104)))
    (call $st (i32.load (i32.const 108)))
    (if (i32.load (i32.const 100)) (then (call $ret)))
    ;; the stream is gone: cancel says NOT_FOUND
    (call $st (call $proxy_grpc_cancel (local.get $token))))
"#
    ));
    let m = w.compile(&engine);
    let (mut inst, _records) = instantiate(&engine, &m, b"", LogLevel::Trace);
    let root = inst.create_root_context(Some(Vec::new())).expect("root");
    let ctx = inst.create_http_context(root).unwrap();
    let mut s = stream_with(&[]);
    inst.on_request_headers(ctx, &mut s, 0, true).unwrap();
    let sts: Vec<&str> = s.logs.iter().filter(|(_, m)| m.starts_with("st=")).map(|(_, m)| m.as_str()).collect();
    // OK; three PARSE_FAILUREs; the stream OK, two sends OK, a late send BAD_ARGUMENT, an
    // unknown token NOT_FOUND.
    assert_eq!(sts, ["st=0000", "st=0004", "st=0004", "st=0004", "st=0000", "st=0000", "st=0000", "st=0002", "st=0001"]);
    let calls = inst.take_http_calls();
    assert_eq!(calls.len(), 2);
    let (unary, stream) = (&calls[0], &calls[1]);
    assert_eq!(unary.grpc, Some(GrpcKind::Unary));
    assert_eq!(unary.upstream, b"auth:443");
    assert_eq!(unary.header(b":path"), Some(&b"/test.Echo/Unary"[..]));
    assert_eq!(unary.header(b":scheme"), Some(&b"https"[..]));
    assert_eq!(unary.header(b"content-type"), Some(&b"application/grpc"[..]));
    assert_eq!(unary.header(b"te"), Some(&b"trailers"[..]));
    assert_eq!(unary.header(b"grpc-timeout"), Some(&b"1500m"[..]));
    assert_eq!(unary.header(b"x-data-bin"), Some(&b"AP8"[..]), "binary metadata goes base64");
    assert_eq!(unary.body, b"\x00\x00\x00\x00\x04ping");
    assert_eq!(stream.grpc, Some(GrpcKind::Stream));
    assert_eq!(stream.body, b"\x00\x00\x00\x00\x03one\x00\x00\x00\x00\x03two");

    // Unary: nothing until the close, then one proxy_on_grpc_receive with the message and
    // the metadata readable (the HTTP-call maps are not).
    let logs = |s: &mut MemoryStream| -> Vec<String> { s.logs.drain(..).map(|(_, m)| m).collect() };
    logs(&mut s);
    let md = |pairs: &[(&str, &str)]| headers(pairs);
    for ev in [GrpcEvent::InitialMetadata(md(&[("x-echo", "back")])), GrpcEvent::Message(b"pong".to_vec())] {
        inst.on_grpc_event(ctx, unary.token, ev, Some(&mut s)).unwrap();
    }
    assert!(logs(&mut s).is_empty());
    inst.on_grpc_event(ctx, unary.token, GrpcEvent::Close { status: 0, message: Vec::new() }, Some(&mut s)).unwrap();
    assert_eq!(logs(&mut s), ["st=0004", "st=0000", "pong", "st=0001"]);
    // Events of an answered call are dropped.
    inst.on_grpc_event(ctx, unary.token, GrpcEvent::Close { status: 0, message: Vec::new() }, Some(&mut s)).unwrap();
    assert!(logs(&mut s).is_empty());

    // Stream: each event as its callback; the close carries the status and grpc-message.
    let t = stream.token;
    inst.on_grpc_event(ctx, t, GrpcEvent::InitialMetadata(md(&[("x-echo", "s")])), Some(&mut s)).unwrap();
    assert_eq!(logs(&mut s), ["st=0001", "st=0000", "s"]);
    inst.on_grpc_event(ctx, t, GrpcEvent::Message(b"m1".to_vec()), Some(&mut s)).unwrap();
    assert_eq!(logs(&mut s), ["st=0002", "st=0000", "m1", "st=0001"]);
    inst.on_grpc_event(ctx, t, GrpcEvent::TrailingMetadata(md(&[("x-trailer", "done")])), Some(&mut s)).unwrap();
    assert_eq!(logs(&mut s), ["st=0000", "done"]);
    let close = GrpcEvent::Close { status: code::PERMISSION_DENIED, message: b"denied".to_vec() };
    inst.on_grpc_event(ctx, t, close, Some(&mut s)).unwrap();
    assert_eq!(logs(&mut s), ["st=0007", "st=0000", "st=0007", "denied", "st=0001"]);
}

#[test]
fn grpc_calls_refused_where_the_embedder_cannot_carry_them() {
    let engine = engine();
    let mut w = Wat::new();
    w.env("proxy_grpc_call").env("proxy_grpc_stream").env("proxy_get_status");
    let (up, svc, method) = (w.s("up"), w.s("s.S"), w.s("M"));
    w.func(format!(
        r#"
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $st (call $proxy_grpc_call {up} {svc} {method} (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 200)))
    (call $st (call $proxy_grpc_stream {up} {svc} {method} (i32.const 0) (i32.const 0) (i32.const 200)))
    ;; outside proxy_on_grpc_close: OK, code 0, no message
    (call $st (call $proxy_get_status (i32.const 108) (i32.const 100) (i32.const 104)))
    (call $st (i32.load (i32.const 100)))
    (i32.const 0))
  (func (export "proxy_on_log") (param i32)
    (call $st (call $proxy_grpc_call {up} {svc} {method} (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 200))))
"#
    ));
    let m = w.compile(&engine);
    let (mut inst, _records) = instantiate(&engine, &m, b"", LogLevel::Trace);
    let root = inst.create_root_context(Some(Vec::new())).expect("root");
    let ctx = inst.create_http_context(root).unwrap();
    let mut s = stream_with(&[]);
    // Not from proxy_on_log: INTERNAL_FAILURE (the Rust SDK panics on BAD_ARGUMENT here).
    inst.on_done_and_log(ctx, &mut s).unwrap();
    assert!(s.logs.iter().any(|(_, m)| m == "st=0010"), "{:?}", s.logs);
    let ctx = inst.create_http_context(root).unwrap();
    inst.refuse_grpc_calls();
    let mut s = stream_with(&[]);
    inst.on_request_headers(ctx, &mut s, 0, true).unwrap();
    let sts: Vec<&str> = s.logs.iter().filter(|(_, m)| m.starts_with("st=")).map(|(_, m)| m.as_str()).collect();
    assert_eq!(sts, ["st=0010", "st=0010", "st=0000", "st=0000"]);
    assert!(s.logs.iter().any(|(_, m)| m.contains("sends no gRPC calls")));
    assert!(inst.take_http_calls().is_empty());
}
