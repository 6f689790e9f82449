//! The wasm runtime layer: wasmer engines and module compilation with load-time validation.
//!
//! Compiling in a process that later forks (the nginx master) must not touch rayon's global
//! pool: its threads do not survive fork() and every later compile in a child would block on
//! them forever. Every compile therefore runs inside a private, short-lived pool.

use wasmer::{Engine, ExternType, Module};

use crate::abi::AbiVersion;
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

/// An engine for `compiler`, or why it cannot be had in this build.
pub fn new_engine(compiler: Compiler) -> Result<Engine, String> {
    match compiler {
        #[cfg(feature = "cranelift")]
        Compiler::Cranelift => Ok(wasmer::sys::Cranelift::default().into()),
        #[cfg(feature = "singlepass")]
        Compiler::Singlepass => Ok(wasmer::sys::Singlepass::default().into()),
        #[allow(unreachable_patterns)]
        c => Err(format!("the {} compiler is not built into this module (cargo feature \"{}\")", c.name(), c.name())),
    }
}

/// A validated Proxy-Wasm module, ready to be instantiated in any process of this engine.
#[derive(Clone)]
pub struct CompiledModule {
    pub(crate) module: Module,
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
    let module = pool.install(|| Module::new(engine, bytes));
    drop(pool);
    let module = module.map_err(|e| format!("is not a valid wasm module: {}", one_line(&e.to_string())))?;
    validate(module)
}

/// Error logs take one line per message: fold wasmer's multi-line diagnostics.
fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

fn validate(module: Module) -> Result<CompiledModule, String> {
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
    Ok(CompiledModule { module, abi })
}
