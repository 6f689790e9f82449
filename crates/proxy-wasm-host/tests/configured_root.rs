//! PluginInstance::create_configured_root (the Lua FFI path: `load` starts the VM once, each
//! `on_configure` adds a root context): on_context_create + on_configure, no on_vm_start; a
//! false on_configure deletes the context; a trap leaves no context behind.

use std::sync::{Arc, Mutex};

use proxy_wasm_host::{compile, new_engine, Compiler, HostError, LogLevel, Logger, PluginInstance};

type Records = Arc<Mutex<Vec<String>>>;

struct Rec(Records);

impl Logger for Rec {
    fn level(&self) -> LogLevel {
        LogLevel::Trace
    }
    fn log(&self, _: LogLevel, msg: &[u8]) {
        self.0.lock().unwrap().push(String::from_utf8_lossy(msg).into_owned());
    }
}

/// Logs "create", "vm_start", "configure", "delete"; on_configure returns false for a
/// configuration of length 2 and traps for length 3.
const PLUGIN: &str = r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "createvm_startconfiguredelete")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32)
    (drop (call $log (i32.const 2) (i32.const 0) (i32.const 6))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 6) (i32.const 8))) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 14) (i32.const 9)))
    (if (i32.eq (local.get 1) (i32.const 3)) (then unreachable))
    (i32.ne (local.get 1) (i32.const 2)))
  (func (export "proxy_on_delete") (param i32)
    (drop (call $log (i32.const 2) (i32.const 23) (i32.const 6))))
)"#;

fn instance() -> (PluginInstance, Records) {
    let engine = new_engine(Compiler::Cranelift, &proxy_wasm_host::DEFAULT_LIMITS).unwrap();
    let m = compile(&engine, PLUGIN.as_bytes()).unwrap();
    let records = Records::default();
    let inst = PluginInstance::new(&m, "t", Vec::new(), Box::new(Rec(records.clone())), &proxy_wasm_host::DEFAULT_LIMITS).unwrap();
    (inst, records)
}

fn take(r: &Records) -> Vec<String> {
    std::mem::take(&mut *r.lock().unwrap())
}

#[test]
fn configured_root_skips_vm_start() {
    let (mut inst, rec) = instance();
    let vm = inst.create_root_context(None).unwrap();
    assert_eq!(take(&rec), ["create", "vm_start"]);
    let a = inst.create_configured_root(b"a".to_vec()).unwrap();
    let b = inst.create_configured_root(b"b".to_vec()).unwrap();
    assert_eq!(take(&rec), ["create", "configure", "create", "configure"]);
    assert!(vm != a && a != b);
    let http = inst.create_http_context(b).unwrap();
    assert!(http != b);
}

#[test]
fn configured_root_rejected_or_trapped() {
    let (mut inst, rec) = instance();
    assert_eq!(inst.create_configured_root(b"no".to_vec()), Err(HostError::ConfigureFailed));
    assert_eq!(take(&rec), ["create", "configure", "delete"]);
    match inst.create_configured_root(b"bad".to_vec()) {
        Err(HostError::Trap { callback, .. }) => assert_eq!(callback, "proxy_on_configure"),
        other => panic!("expected a trap, got {other:?}"),
    }
}
