//! Load time, in the master (or the single process, or `nginx -t`) before fork: compile
//! every module once per configuration load and check that each plugin starts.

use proxy_wasm_host::{Compiler, HostError, PluginInstance};

use crate::conf::MainConf;
use crate::util::log::CycleLogger;

/// Compiles every module, then runs each plugin once (a canary instance, dropped at the end)
/// so that a module that does not start or a configuration it rejects fails `nginx -t` with
/// the file and line of the directive at fault.
fn load(mcf: &mut MainConf) -> Result<(), String> {
    let compiler = mcf.compiler.unwrap_or(Compiler::Cranelift);
    let limits = mcf.limits();
    let engine = proxy_wasm_host::new_engine(compiler, &limits)?;
    let mut policies: Vec<_> = (0..mcf.modules.len()).map(|mi| crate::conf::call_policy::policy(mcf, mi)).collect();
    let filters = &mcf.filters;
    let mcf_cache = mcf.cache_dir.clone();
    let policy = crate::conf::cache_policy::cache_policy();
    for (mi, m) in mcf.modules.iter_mut().enumerate() {
        let (compiled, cached) = proxy_wasm_host::compile_cached_in_child(&engine, &m.bytes, mcf_cache.as_deref(), policy)
            .map_err(|e| format!("wasm_module \"{}\": \"{}\" {} {}", m.name, m.path, e, m.origin))?;
        if let proxy_wasm_host::CacheOutcome::Miss(why) = cached {
            crate::util::log::cycle_warn(&format!("wasm_compile_cache: {why}; \"{}\" compiled without the cache", m.path));
        }
        let logger = Box::new(CycleLogger { label: m.name.clone() });
        let mut inst = PluginInstance::new(&compiled, &m.name, m.vm_config.clone(), logger, &limits)
            .map_err(|e| format!("wasm_module \"{}\": {} {}", m.name, e, m.origin))?;
        crate::conf::call_policy::install(&mut inst, policies.remove(0));
        let mut used = false;
        for f in filters.iter().filter(|f| f.module == mi) {
            used = true;
            inst.create_root_context(Some(f.config.clone())).map_err(|e| match e {
                HostError::VmStartFailed => format!("wasm_module \"{}\": {} {}", m.name, e, m.origin),
                _ => format!(
                    "proxy_wasm \"{}\": {} (plugin configuration: \"{}\") {}",
                    m.name,
                    e,
                    String::from_utf8_lossy(&f.config),
                    f.origin
                ),
            })?;
        }
        if !used {
            inst.create_root_context(None)
                .map_err(|e| format!("wasm_module \"{}\": {} {}", m.name, e, m.origin))?;
        }
        m.compiled = Some(compiled);
        // Workers instantiate the compiled module: the bytes are no longer needed.
        m.bytes = Vec::new();
    }
    mcf.loaded = true;
    Ok(())
}


/// The load-time work of postconfiguration once the phase handlers are in: declare the
/// shared zone, then compile and check every module (with a scratch shared store, so that
/// a plugin using shared data at start works in `nginx -t` too).
///
/// # Safety
/// `cf` is the configuration being loaded (postconfiguration's argument).
pub(crate) unsafe fn compile_and_check(cf: *mut ngx::ffi::ngx_conf_t, mcf: &mut MainConf) -> Result<(), String> {
    super::shm::add_zone(cf, mcf)?;
    super::shm::install_check_store(mcf);
    let loaded = load(mcf);
    proxy_wasm_host::shared_store::set_process_store(None);
    loaded
}
