//! Compiling in a child process (`compile_cached_in_child`, what the nginx master does): the
//! module comes back and runs, errors read as they do in-process, and the cache works the
//! same. Its own test binary with one test: a fork from a process whose other threads may
//! hold the runtime's global locks is what the nginx master, single-threaded, never does.

use std::os::unix::fs::PermissionsExt;

use proxy_wasm_host::cache::effective_uid;
use proxy_wasm_host::{
    compile, compile_cached, compile_cached_in_child, new_engine, CacheOutcome, CachePolicy, Compiler, LogLevel,
    Logger, MemoryStream, PluginInstance, DEFAULT_LIMITS,
};

struct Quiet;
impl Logger for Quiet {
    fn level(&self) -> LogLevel {
        LogLevel::Trace
    }
    fn log(&self, _: LogLevel, _: &[u8]) {}
}

const PLUGIN: &str = r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (data (i32.const 900) "yes")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 900) (i32.const 3)))
    (i32.const 0)))"#;

#[test]
fn a_module_compiled_in_a_child_runs_fails_and_caches_as_in_process() {
    let e = new_engine(Compiler::Cranelift, &DEFAULT_LIMITS).expect("engine");
    let me = effective_uid();
    let master = CachePolicy { owner: me, write: true };
    let worker = CachePolicy { owner: me, write: false };

    // Compiled in a child, loaded and run here.
    let (m, o) = compile_cached_in_child(&e, PLUGIN.as_bytes(), None, master).expect("compiles");
    assert_eq!(o, CacheOutcome::Uncached);
    let mut inst = PluginInstance::new(&m, "t", Vec::new(), Box::new(Quiet), &DEFAULT_LIMITS).expect("instance");
    let root = inst.create_root_context(None).expect("root");
    let ctx = inst.create_http_context(root).expect("context");
    let mut s = MemoryStream { response_headers: Some(Vec::new()), ..Default::default() };
    inst.on_request_headers(ctx, &mut s, 0, true).expect("on_request_headers");
    assert!(s.logs.iter().any(|(_, m)| m == "yes"), "{:?}", s.logs);

    // What does not compile says the same words as in this process.
    let bad = [
        "(module".to_string(),
        "(module (memory (export \"memory\") 1))".to_string(),
        PLUGIN.replace("(memory (export \"memory\") 1)", "(memory (export \"memory\") 1 1 shared)"),
        PLUGIN.replace("proxy_log", "proxy_no_such_call"),
    ];
    for text in &bad {
        let here = compile(&e, text.as_bytes()).err().expect("refused here");
        let there = compile_cached_in_child(&e, text.as_bytes(), None, master).err().expect("refused in a child");
        assert_eq!(here, there);
    }

    // The artifact the child made is what the cache stores: a worker hits it.
    let dir = std::env::temp_dir().join(format!("pwh-child-compile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cache = dir.join("cache");
    let (_, o) = compile_cached_in_child(&e, PLUGIN.as_bytes(), Some(&cache), master).expect("stored");
    assert_eq!(o, CacheOutcome::Stored);
    let (hit, o) = compile_cached(&e, PLUGIN.as_bytes(), Some(&cache), worker).expect("hit");
    assert_eq!(o, CacheOutcome::Hit);
    assert!(hit.exports("proxy_on_request_headers"));
    assert_eq!(compile_cached_in_child(&e, PLUGIN.as_bytes(), Some(&cache), master).unwrap().1, CacheOutcome::Hit);
    let _ = std::fs::remove_dir_all(&dir);
}
