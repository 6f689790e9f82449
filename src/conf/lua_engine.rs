//! The engine and compile cache of plugins loaded from Lua (`resty.proxy-wasm`), as the
//! configuration being loaded sets them. Set while the configuration is parsed (init_by_lua
//! runs before our postconfiguration may), again in postconfiguration with the final
//! wasm_max_* limits, and in each worker for its cycle; read when Lua loads a plugin.

use std::path::PathBuf;
use std::sync::Mutex;

use proxy_wasm_host::Engine;

use super::MainConf;

/// None when the http block has no `wasm_vm`.
static VM: Mutex<Option<Engine>> = Mutex::new(None);
static CACHE_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Forgets the previous configuration's engine (a new http block starts).
pub(crate) fn clear() {
    set_vm(None);
    set_cache_dir(None);
}

/// Records the engine and cache of `mcf` (the configuration loaded, or being loaded).
pub(crate) fn set_from(mcf: &MainConf) {
    set_vm(mcf.lua_engine());
    set_cache_dir(mcf.cache_dir.clone());
}

pub(crate) fn set_vm(engine: Option<Engine>) {
    if let Ok(mut vm) = VM.lock() {
        *vm = engine;
    }
}

pub(crate) fn set_cache_dir(dir: Option<PathBuf>) {
    if let Ok(mut d) = CACHE_DIR.lock() {
        *d = dir;
    }
}

pub(crate) fn vm() -> Option<Engine> {
    VM.lock().ok().and_then(|vm| *vm)
}

pub(crate) fn cache_dir() -> Option<PathBuf> {
    CACHE_DIR.lock().ok().and_then(|d| d.clone())
}
