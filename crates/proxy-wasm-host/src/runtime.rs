//! The wasm runtime layer: wasmer engines and module compilation with load-time validation.
//!
//! Compiling in a process that later forks (the nginx master) must not touch rayon's global
//! pool: its threads do not survive fork() and every later compile in a child would block on
//! them forever. Every compile therefore runs inside a private, short-lived pool.

use wasmer::{ExternType, Module};

use crate::abi::AbiVersion;
use crate::limits::{LimitingTunables, Limits};
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
        c => return Err(format!("the {} compiler is not built into this module (cargo feature \"{}\")", c.name(), c.name())),
    }
    Ok(Engine { compiler, limits: *limits })
}

fn build_engine(e: &Engine) -> wasmer::Engine {
    use wasmer::sys::{CompilerConfig, NativeEngineExt};
    fn build(mut cfg: impl CompilerConfig + 'static, limits: &Limits) -> wasmer::Engine {
        if limits.max_instructions > 0 {
            // Every operator costs 1; the host resets the budget before each callback.
            cfg.push_middleware(std::sync::Arc::new(wasmer_middlewares::Metering::new(limits.max_instructions, |_| 1)));
        }
        let mut engine: wasmer::Engine = wasmer::sys::EngineBuilder::new(cfg).engine().into();
        engine.set_tunables(LimitingTunables::new(limits.max_memory));
        engine
    }
    match e.compiler {
        #[cfg(feature = "cranelift")]
        Compiler::Cranelift => build(wasmer::sys::Cranelift::default(), &e.limits),
        #[cfg(feature = "singlepass")]
        Compiler::Singlepass => build(wasmer::sys::Singlepass::default(), &e.limits),
        #[allow(unreachable_patterns)]
        _ => unreachable!("new_engine refuses compilers that are not built in"),
    }
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

/// Where a module came from in `compile_cached`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// No cache directory configured.
    Uncached,
    /// Loaded from the cache.
    Hit,
    /// Compiled, and stored in the cache (or the store failed: see the error).
    Stored,
    Miss(&'static str),
}

/// The cache file name of `bytes` for `compiler`: the module's BLAKE3 hash, the wasmer
/// version and the compiler, so that a new wasmer or compiler never loads an old artifact.
pub fn cache_key(bytes: &[u8], compiler: Compiler, limits: &Limits) -> String {
    let mut h = blake3::Hasher::new();
    h.update(bytes);
    // Metering instruments the code and the memory cap decides its bounds checks.
    h.update(&limits.max_instructions.min(1).to_le_bytes());
    h.update(&limits.max_memory.to_le_bytes());
    format!(
        "{}-wasmer{}-{}-{}.bin",
        &h.finalize().to_hex()[..32],
        wasmer_types::VERSION,
        compiler.name(),
        std::env::consts::ARCH
    )
}

/// Like `compile`, through an on-disk cache of compiled artifacts in `dir` (if any). The
/// cache directory must be writable only by the user nginx's master runs as: an artifact is
/// native code.
pub fn compile_cached(
    engine: &Engine,
    bytes: &[u8],
    dir: Option<&std::path::Path>,
) -> Result<(CompiledModule, CacheOutcome), String> {
    let Some(dir) = dir else { return Ok((compile(engine, bytes)?, CacheOutcome::Uncached)) };
    let key = cache_key(bytes, engine.compiler, &engine.limits);
    let path = dir.join(&key);
    if let Ok(artifact) = std::fs::read(&path) {
        // SAFETY: the artifact is one this host serialized for this wasmer version, compiler
        // and architecture (all in the file name); wasmer checks its header and version
        // again. The directory is trusted like the nginx binary itself (see above).
        let wasmer_engine = build_engine(engine);
        if let Ok(module) = unsafe { Module::deserialize(&wasmer_engine, artifact) } {
            return Ok((validate(&wasmer_engine, module)?, CacheOutcome::Hit));
        }
    }
    let compiled = compile(engine, bytes)?;
    let outcome = match compiled.module.serialize() {
        Ok(artifact) => {
            // Write then rename, so that a concurrent reader never sees half a file.
            let tmp = dir.join(format!(".{}.{}", std::process::id(), key));
            let stored = std::fs::create_dir_all(dir)
                .and_then(|_| std::fs::write(&tmp, &artifact))
                .and_then(|_| std::fs::rename(&tmp, &path));
            match stored {
                Ok(()) => CacheOutcome::Stored,
                Err(_) => {
                    let _ = std::fs::remove_file(&tmp);
                    CacheOutcome::Miss("cannot write to the cache directory")
                }
            }
        }
        Err(_) => CacheOutcome::Miss("cannot serialize the compiled module"),
    };
    Ok((compiled, outcome))
}

/// Compiles and validates `bytes` (binary wasm, or WAT text). The error says what is wrong
/// in words an operator can act on.
pub fn compile(engine: &Engine, bytes: &[u8]) -> Result<CompiledModule, String> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| format!("cannot start a compile thread pool: {e}"))?;
    let wasmer_engine = build_engine(engine);
    let module = pool.install(|| Module::new(&wasmer_engine, bytes));
    drop(pool);
    let module = module.map_err(|e| format!("is not a valid wasm module: {}", one_line(&e.to_string())))?;
    validate(&wasmer_engine, module)
}

/// Error logs take one line per message: fold wasmer's multi-line diagnostics.
fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

fn validate(engine: &wasmer::Engine, module: Module) -> Result<CompiledModule, String> {
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
    Ok(CompiledModule { module, engine: engine.clone(), abi })
}
