//! The on-disk cache of compiled modules (`wasm_compile_cache`). An artifact is native code
//! that this process will run, so the cache is trusted only as far as the nginx binary:
//! - the directory and each file must be owned by the trusted user (the nginx master's) and
//!   be neither group- nor world-writable, else they are ignored (the module is compiled);
//! - files are opened with O_NOFOLLOW, so a planted symlink is not followed;
//! - only a process allowed to (the master, never a worker) stores artifacts: into a fresh
//!   temporary file (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0644), then renamed into place, so a
//!   reader never sees half a file;
//! - a cache hit still runs the feature validation on the module's bytes (runtime.rs), so a
//!   cached artifact cannot bring in what the engine refuses.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use wasmer::Module;

use crate::limits::Limits;
use crate::child_compile::compile_in_child;
use crate::runtime::{build_engine, compile, validate, CompiledModule, Compiler, Engine};

/// How this process may use the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// The only user trusted to own the directory and its files (the nginx master's).
    pub owner: u32,
    /// Whether this process stores artifacts (the master; never a worker).
    pub write: bool,
}

/// This process's effective uid (the owner a cache written by this process has).
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Where a module came from in `compile_cached`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// No cache directory configured.
    Uncached,
    /// Loaded from the cache.
    Hit,
    /// Compiled, and stored in the cache.
    Stored,
    /// Compiled; this process does not store artifacts (a worker), so nothing to report.
    Compiled,
    /// Compiled without the cache, for this reason (the operator should hear about it).
    Miss(String),
}

/// The cache file name of `bytes` for `compiler`: the module's BLAKE3 hash, the wasmer
/// version and the compiler, so that a new wasmer or compiler never loads an old artifact.
pub fn cache_key(bytes: &[u8], compiler: Compiler, limits: &Limits) -> String {
    let mut h = blake3::Hasher::new();
    h.update(bytes);
    // Metering instruments the code and the memory cap decides its bounds checks.
    h.update(&limits.max_instructions.min(1).to_le_bytes());
    h.update(&limits.max_memory.to_le_bytes());
    // The features this host accepts: an artifact is what `compile` made (and validated)
    // under them, so a hit needs no second validation of the module.
    h.update(format!("{:?}", crate::runtime::features()).as_bytes());
    format!(
        "{}-wasmer{}-{}-{}.bin",
        &h.finalize().to_hex()[..32],
        wasmer_types::VERSION,
        compiler.name(),
        std::env::consts::ARCH
    )
}

/// Why `meta` (of `what` at `path`) is not to be trusted, if it is not.
fn distrust(what: &str, path: &Path, meta: &std::fs::Metadata, owner: u32) -> Option<String> {
    if meta.uid() != owner {
        return Some(format!(
            "{what} \"{}\" is owned by uid {}, not by the master's user (uid {owner}): ignored",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!("{what} \"{}\" is group or world writable (mode {:o}): ignored", path.display(), meta.mode() & 0o7777));
    }
    None
}

/// Whether the directory can be trusted (created by a writer when missing). Ok(false): no
/// directory, and this process may not create it.
fn trusted_dir(dir: &Path, policy: &CachePolicy) -> Result<bool, String> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound && policy.write => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|e| format!("cannot create the cache directory \"{}\": {e}", dir.display()))?;
            std::fs::metadata(dir).map_err(|e| format!("cannot stat the cache directory \"{}\": {e}", dir.display()))?
        }
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("cannot stat the cache directory \"{}\": {e}", dir.display())),
    };
    if !meta.is_dir() {
        return Err(format!("the cache directory \"{}\" is not a directory", dir.display()));
    }
    match distrust("the cache directory", dir, &meta, policy.owner) {
        Some(why) => Err(why),
        None => Ok(true),
    }
}

/// Reads a trusted artifact. Ok(None): there is none.
fn read_artifact(path: &Path, owner: u32) -> Result<Option<Vec<u8>>, String> {
    let mut f = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(format!("the cached file \"{}\" is a symbolic link: ignored", path.display()))
        }
        Err(e) => return Err(format!("cannot open the cached file \"{}\": {e}", path.display())),
    };
    // fstat of the open file: what is read is what was checked.
    let meta = f.metadata().map_err(|e| format!("cannot stat the cached file \"{}\": {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("the cached file \"{}\" is not a regular file: ignored", path.display()));
    }
    if let Some(why) = distrust("the cached file", path, &meta, owner) {
        return Err(why);
    }
    let mut artifact = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut artifact).map_err(|e| format!("cannot read the cached file \"{}\": {e}", path.display()))?;
    Ok(Some(artifact))
}

/// Writes `artifact` to `path` through a fresh temporary file in the same directory.
fn store_artifact(dir: &Path, key: &str, artifact: &[u8]) -> std::io::Result<()> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.{seq}.{key}", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true) // O_CREAT|O_EXCL
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f: File| f.write_all(artifact).and_then(|_| f.sync_all()));
    let r = written.and_then(|_| std::fs::rename(&tmp, dir.join(key)));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Like `compile`, through the cache in `dir` (if any), as `policy` allows.
pub fn compile_cached(
    engine: &Engine,
    bytes: &[u8],
    dir: Option<&Path>,
    policy: CachePolicy,
) -> Result<(CompiledModule, CacheOutcome), String> {
    cached(engine, bytes, dir, policy, false)
}

/// `compile_cached` for a process that forks workers (the nginx master): what has to be
/// compiled is compiled in a child process (child_compile.rs), so that the compile's
/// garbage stays out of this process and of every process forked from it. Falls back to
/// compiling here if no child can be started.
pub fn compile_cached_in_child(
    engine: &Engine,
    bytes: &[u8],
    dir: Option<&Path>,
    policy: CachePolicy,
) -> Result<(CompiledModule, CacheOutcome), String> {
    cached(engine, bytes, dir, policy, true)
}

/// Compiles here, or in a child (`in_child`); with the artifact when the child made it.
fn build(engine: &Engine, bytes: &[u8], in_child: bool) -> Result<(CompiledModule, Option<Vec<u8>>), String> {
    if in_child {
        match compile_in_child(engine, bytes) {
            Ok((m, artifact)) => return Ok((m, Some(artifact))),
            Err(Some(why)) => return Err(why),
            Err(None) => {}
        }
    }
    compile(engine, bytes).map(|m| (m, None))
}

fn cached(
    engine: &Engine,
    bytes: &[u8],
    dir: Option<&Path>,
    policy: CachePolicy,
    in_child: bool,
) -> Result<(CompiledModule, CacheOutcome), String> {
    let make = || build(engine, bytes, in_child);
    let Some(dir) = dir else { return Ok((make()?.0, CacheOutcome::Uncached)) };
    // A cached artifact skips wasmer's validator: it is found only under a key that names
    // the accepted features (see `cache_key`), and `compile` validated it before storing.
    match trusted_dir(dir, &policy) {
        Ok(true) => {}
        Ok(false) => return Ok((make()?.0, CacheOutcome::Compiled)),
        Err(why) => return Ok((make()?.0, CacheOutcome::Miss(why))),
    }
    let key = cache_key(bytes, engine.compiler, &engine.limits);
    let path = dir.join(&key);
    let mut refused = None;
    match read_artifact(&path, policy.owner) {
        Ok(Some(artifact)) => {
            let wasmer_engine = build_engine(engine);
            // SAFETY: the artifact is one this host serialized for this wasmer version,
            // compiler and architecture (all in the file name), in a directory and a file
            // only the master's user can write (checked above, on the open file); wasmer
            // checks its header and version again.
            if let Ok(module) = unsafe { Module::deserialize(&wasmer_engine, artifact) } {
                return Ok((validate(&wasmer_engine, module)?, CacheOutcome::Hit));
            }
        }
        Ok(None) => {}
        Err(why) => refused = Some(why),
    }
    let (compiled, artifact) = make()?;
    if !policy.write {
        return Ok((compiled, refused.map_or(CacheOutcome::Compiled, CacheOutcome::Miss)));
    }
    let artifact = match artifact {
        Some(a) => Ok(a),
        None => compiled.module.serialize().map(|a| a.to_vec()).map_err(|_| "cannot serialize the compiled module".to_string()),
    };
    let stored = artifact.and_then(|a| {
        store_artifact(dir, &key, &a).map_err(|e| format!("cannot write to the cache directory \"{}\": {e}", dir.display()))
    });
    let outcome = match (refused, stored) {
        (Some(why), Ok(())) => CacheOutcome::Miss(format!("{why} (replaced by a fresh artifact)")),
        (Some(why), Err(_)) | (None, Err(why)) => CacheOutcome::Miss(why),
        (None, Ok(())) => CacheOutcome::Stored,
    };
    Ok((compiled, outcome))
}
