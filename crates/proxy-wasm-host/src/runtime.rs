//! The wasm runtime layer: wasmer engines and module compilation with load-time validation.
//!
//! Compiling in a process that later forks (the nginx master) must not touch rayon's global
//! pool: its threads do not survive fork() and every later compile in a child would block on
//! them forever. Every compile therefore runs inside a private, short-lived pool.

use wasmer::sys::Features;
use wasmer::{ExternType, Module};

use crate::abi::AbiVersion;
use crate::limits::{LimitingTunables, Limits, MAX_TABLES, MAX_TABLE_ELEMENTS};
use crate::hostcalls::provided_signature;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compiler {
    Cranelift,
    Singlepass,
}

impl Compiler {
    pub fn from_name(name: &str) -> Option<Compiler> {
        match name {
            "cranelift" => Some(Compiler::Cranelift),
            "singlepass" => Some(Compiler::Singlepass),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compiler::Cranelift => "cranelift",
            Compiler::Singlepass => "singlepass",
        }
    }
}

/// How to compile modules: the compiler and the limits compiled into them. Each compile
/// builds its own wasmer engine from it, because a metering middleware (the CPU budget)
/// instruments one module only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Engine {
    pub compiler: Compiler,
    pub limits: Limits,
}

/// An engine recipe for `compiler` with `limits`, or why it cannot be had in this build.
pub fn new_engine(compiler: Compiler, limits: &Limits) -> Result<Engine, String> {
    match compiler {
        #[cfg(feature = "cranelift")]
        Compiler::Cranelift => {}
        #[cfg(feature = "singlepass")]
        Compiler::Singlepass => {}
        #[allow(unreachable_patterns)]
        c => return Err(format!(
            "the {} compiler is not built into this module (cargo feature \"{}\"; see README, Building)",
            c.name(),
            c.name()
        )),
    }
    Ok(Engine { compiler, limits: *limits })
}

/// The WebAssembly features a plugin may use, decided one by one (wasmer's defaults enable
/// more). Allowed: what the SDKs' toolchains emit — bulk memory, reference types, SIMD,
/// multi-value, extended constant expressions; sign extension, saturating float-to-int and
/// mutable globals are always on in wasmer. Refused: see `REFUSED_FEATURES`.
pub fn features() -> Features {
    let mut f = Features::none();
    f.bulk_memory = true;
    f.reference_types = true;
    f.simd = true;
    f.multi_value = true;
    f.extended_const = true;
    f
}

/// Features a plugin may not use, with the name an operator reads and why:
/// - threads: a shared memory lets `memory.atomic.wait32` block the worker forever, out of
///   reach of the CPU budget; the ABI is single-threaded.
/// - multi-memory: `wasm_max_memory` bounds each memory, so N memories hold N times as much;
///   the ABI exchanges data through the one exported memory.
/// - memory64: the ABI's pointers are 32-bit.
/// - exceptions, tail calls, relaxed SIMD, wide arithmetic: no SDK emits them; each adds
///   engine code a plugin could reach (relaxed SIMD is also non-deterministic).
pub const REFUSED_FEATURES: &[(&str, fn(&mut Features))] = &[
    ("threads (shared memory, atomics)", |f| f.threads = true),
    ("multi-memory (more than one memory)", |f| f.multi_memory = true),
    ("memory64", |f| f.memory64 = true),
    ("exception handling", |f| f.exceptions = true),
    ("tail calls", |f| f.tail_call = true),
    ("relaxed SIMD", |f| f.relaxed_simd = true),
    ("wide arithmetic", |f| f.wide_arithmetic = true),
];

fn builder_for(compiler: Compiler, f: impl FnOnce(&mut dyn wasmer::sys::CompilerConfig)) -> wasmer::sys::EngineBuilder {
    match compiler {
        #[cfg(feature = "cranelift")]
        Compiler::Cranelift => {
            let mut c = wasmer::sys::Cranelift::default();
            f(&mut c);
            wasmer::sys::EngineBuilder::new(c)
        }
        #[cfg(feature = "singlepass")]
        Compiler::Singlepass => {
            let mut c = wasmer::sys::Singlepass::default();
            f(&mut c);
            wasmer::sys::EngineBuilder::new(c)
        }
        #[allow(unreachable_patterns)]
        _ => unreachable!("new_engine refuses compilers that are not built in"),
    }
}

pub(crate) fn build_engine(e: &Engine) -> wasmer::Engine {
    use wasmer::sys::NativeEngineExt;
    let limits = e.limits;
    let builder = builder_for(e.compiler, |cfg| {
        if limits.max_instructions > 0 {
            // Every operator costs 1; the host resets the budget before each callback.
            cfg.push_middleware(std::sync::Arc::new(wasmer_middlewares::Metering::new(limits.max_instructions, |_| 1)));
        }
    });
    let mut engine: wasmer::Engine = builder.set_features(Some(features())).engine().into();
    engine.set_tunables(LimitingTunables::new(limits.max_memory));
    engine
}

/// Validates `wasm` (binary) against the allowed features. When it fails only because it
/// uses refused features, the error names them.
pub(crate) fn validate_features(compiler: Compiler, wasm: &[u8]) -> Result<(), String> {
    let valid_with = |f: Features| Module::validate(&wasmer::Engine::from(builder_for(compiler, |_| {}).set_features(Some(f)).engine()), wasm);
    let err = match valid_with(features()) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let invalid = || format!("is not a valid wasm module: {}", one_line(&err.to_string()));
    let mut all = features();
    for (_, enable) in REFUSED_FEATURES {
        enable(&mut all);
    }
    if valid_with(all.clone()).is_err() {
        return Err(invalid());
    }
    // The features it needs: those without which it is invalid again.
    let mut needed = Vec::new();
    for (i, (name, _)) in REFUSED_FEATURES.iter().enumerate() {
        let mut f = features();
        for (j, (_, enable)) in REFUSED_FEATURES.iter().enumerate() {
            if j != i {
                enable(&mut f);
            }
        }
        if valid_with(f).is_err() {
            needed.push(*name);
        }
    }
    if needed.is_empty() {
        return Err(invalid());
    }
    Err(format!(
        "uses the WebAssembly feature{} {}, which this host refuses: {}",
        if needed.len() > 1 { "s" } else { "" },
        needed.join(", "),
        one_line(&err.to_string())
    ))
}

/// A validated Proxy-Wasm module, ready to be instantiated in any process of this engine.
#[derive(Clone)]
pub struct CompiledModule {
    pub(crate) module: Module,
    /// The engine that compiled it: instances must be created in its stores.
    pub(crate) engine: wasmer::Engine,
    pub abi: AbiVersion,
}

impl CompiledModule {
    pub fn exports(&self, name: &str) -> bool {
        self.module.exports().any(|e| e.name() == name)
    }
}

/// Compiles and validates `bytes` (binary wasm, or WAT text). The error says what is wrong
/// in words an operator can act on.
pub fn compile(engine: &Engine, bytes: &[u8]) -> Result<CompiledModule, String> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| format!("cannot start a compile thread pool: {e}"))?;
    let wasm = to_binary(bytes)?;
    validate_features(engine.compiler, &wasm)?;
    let wasmer_engine = build_engine(engine);
    let module = pool.install(|| Module::new(&wasmer_engine, &*wasm));
    drop(pool);
    let module = module.map_err(|e| format!("is not a valid wasm module: {}", one_line(&e.to_string())))?;
    validate(&wasmer_engine, module)
}

/// WAT text to binary (binary passes through).
pub(crate) fn to_binary(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    wasmer::wat2wasm(bytes).map_err(|e| format!("is not a valid wasm module: {}", one_line(&e.to_string())))
}

/// Error logs take one line per message: fold wasmer's multi-line diagnostics.
fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

pub(crate) fn validate(engine: &wasmer::Engine, module: Module) -> Result<CompiledModule, String> {
    let abi = module
        .exports()
        .find_map(|e| AbiVersion::from_marker(e.name()))
        .ok_or_else(|| "exports no proxy_abi_version_* marker: it is not a Proxy-Wasm module (ABI 0.1.0, 0.2.0 or 0.2.1)".to_string())?;
    for imp in module.imports() {
        let (ns, name) = (imp.module(), imp.name());
        let ExternType::Function(ty) = imp.ty() else {
            return Err(format!("imports {ns}.{name}, which is not a function; this host provides only functions"));
        };
        match provided_signature(ns, name) {
            None => return Err(format!("imports function {ns}.{name}, which this host does not provide")),
            Some(sig) if sig != *ty => {
                return Err(format!("imports function {ns}.{name} with signature {ty}, but the host provides {sig}"))
            }
            Some(_) => {}
        }
    }
    if !module.exports().any(|e| e.name() == "memory") {
        return Err("exports no memory named \"memory\"".to_string());
    }
    if !module.exports().any(|e| e.name() == "proxy_on_memory_allocate" || e.name() == "malloc") {
        return Err("exports neither proxy_on_memory_allocate nor malloc".to_string());
    }
    // Also checked for a module loaded from the cache, whatever the artifact says.
    // (`Module::info` is wasmer's doc(hidden) view of the module; Cargo.lock pins wasmer.)
    let info = module.info();
    if info.memories.len() != 1 {
        return Err(format!("has {} memories; a plugin has exactly one", info.memories.len()));
    }
    if info.memories.values().any(|m| m.shared) {
        return Err("has a shared memory (threads), which this host refuses".to_string());
    }
    if info.tables.len() > MAX_TABLES {
        return Err(format!("has {} tables, more than the limit of {MAX_TABLES}", info.tables.len()));
    }
    if let Some(t) = info.tables.values().find(|t| t.minimum > MAX_TABLE_ELEMENTS) {
        return Err(format!(
            "declares a table of {} elements at start, more than the limit of {MAX_TABLE_ELEMENTS}",
            t.minimum
        ));
    }
    Ok(CompiledModule { module, engine: engine.clone(), abi })
}
