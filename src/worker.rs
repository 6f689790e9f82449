//! Load time and worker life: compile and validate every module once per configuration load
//! (in the master, before fork), then instantiate each used module once per worker.

use std::cell::RefCell;

use ngx::ffi::*;
use ngx::http::{HttpModuleMainConf, NgxHttpCoreModule};
use proxy_wasm_host::{Compiler, HostError, PluginInstance};

use crate::conf::MainConf;
use crate::ngx_log::CycleLogger;
use crate::Module;

/// Per-worker state: one instance per module, one root context per `proxy_wasm`.
pub(crate) struct Worker {
    /// Indexed like MainConf::modules; None if the module is unused or failed to start.
    pub instances: Vec<Option<PluginInstance>>,
    /// Indexed like MainConf::filters: the root context id in its module's instance.
    pub roots: Vec<Option<u32>>,
    /// Indexed like MainConf::filters: the module index.
    pub filter_module: Vec<usize>,
    /// Indexed like MainConf::modules: the module name, for log lines.
    pub labels: Vec<String>,
}

thread_local! {
    // nginx runs all request handling of a worker on one thread.
    pub(crate) static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

fn emerg(cf: *mut ngx_conf_t, msg: &str) {
    // SAFETY: cf is the live configuration being loaded; its log is valid.
    unsafe { ngx::log::log_error(NGX_LOG_EMERG as ngx_uint_t, (*cf).log, 0, msg.as_bytes()) };
}

unsafe fn push_phase_handler(cf: *mut ngx_conf_t, phase: u32, h: ngx_http_handler_pt) -> bool {
    let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(&*cf) else { return false };
    let slot = ngx_array_push(&mut cmcf.phases[phase as usize].handlers) as *mut ngx_http_handler_pt;
    if slot.is_null() {
        return false;
    }
    *slot = h;
    true
}

pub(crate) unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    crate::guard("postconfiguration", NGX_ERROR as ngx_int_t, || {
        let Some(mcf) = Module::main_conf_mut(&*cf) else { return NGX_ERROR as ngx_int_t };
        if mcf.filters.is_empty() && mcf.modules.is_empty() {
            return NGX_OK as ngx_int_t;
        }
        if !push_phase_handler(cf, ngx_http_phases_NGX_HTTP_ACCESS_PHASE, Some(crate::access::access_handler))
            || !push_phase_handler(cf, ngx_http_phases_NGX_HTTP_LOG_PHASE, Some(crate::log_phase::log_handler))
        {
            return NGX_ERROR as ngx_int_t;
        }
        crate::filters::install();
        // The `nginx -s` signaller parses the configuration too: it must not compile or run
        // anything. `nginx -t`, start and reload do.
        if ngx_process == NGX_PROCESS_SIGNALLER as ngx_uint_t {
            return NGX_OK as ngx_int_t;
        }
        match load(mcf) {
            Ok(()) => NGX_OK as ngx_int_t,
            Err(msg) => {
                emerg(cf, &msg);
                NGX_ERROR as ngx_int_t
            }
        }
    })
}

/// Compiles every module, then runs each plugin once (a canary instance, dropped at the end)
/// so that a module that does not start or a configuration it rejects fails `nginx -t` with
/// the file and line of the directive at fault.
fn load(mcf: &mut MainConf) -> Result<(), String> {
    let compiler = mcf.compiler.unwrap_or(Compiler::Cranelift);
    let engine = proxy_wasm_host::new_engine(compiler)?;
    for m in mcf.modules.iter_mut() {
        let compiled = proxy_wasm_host::compile(&engine, &m.bytes)
            .map_err(|e| format!("wasm_module \"{}\": \"{}\" {} {}", m.name, m.path, e, m.origin))?;
        m.compiled = Some(compiled);
        // The bytes are no longer needed: workers instantiate the compiled module.
        m.bytes = Vec::new();
    }
    for (mi, m) in mcf.modules.iter().enumerate() {
        let compiled = m.compiled.as_ref().expect("compiled above");
        let logger = Box::new(CycleLogger { label: m.name.clone() });
        let mut inst = PluginInstance::new(&engine, compiled, m.vm_config.clone(), logger)
            .map_err(|e| format!("wasm_module \"{}\": {} {}", m.name, e, m.origin))?;
        let mut used = false;
        for f in mcf.filters.iter().filter(|f| f.module == mi) {
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
    }
    mcf.engine = Some(engine);
    Ok(())
}

pub(crate) unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    crate::guard("init_process", NGX_OK as ngx_int_t, || {
        let Some(mcf) = Module::main_conf(&*cycle) else { return NGX_OK as ngx_int_t };
        let Some(engine) = mcf.engine.as_ref() else { return NGX_OK as ngx_int_t };
        let mut w = Worker {
            instances: Vec::new(),
            roots: vec![None; mcf.filters.len()],
            filter_module: mcf.filters.iter().map(|f| f.module).collect(),
            labels: mcf.modules.iter().map(|m| m.name.clone()).collect(),
        };
        for (mi, m) in mcf.modules.iter().enumerate() {
            let used = mcf.filters.iter().any(|f| f.module == mi);
            let inst = match (&m.compiled, used) {
                (Some(c), true) => {
                    let logger = Box::new(CycleLogger { label: m.name.clone() });
                    match PluginInstance::new(engine, c, m.vm_config.clone(), logger) {
                        Ok(i) => Some(i),
                        Err(e) => {
                            crate::ngx_log::cycle_error(&format!(
                                "[proxy_wasm] {}: cannot start in this worker: {e}; its filters fail requests with 500",
                                m.name
                            ));
                            None
                        }
                    }
                }
                _ => None,
            };
            w.instances.push(inst);
        }
        for (fi, f) in mcf.filters.iter().enumerate() {
            let Some(inst) = w.instances[f.module].as_mut() else { continue };
            match inst.create_root_context(Some(f.config.clone())) {
                Ok(id) => w.roots[fi] = Some(id),
                Err(e) => crate::ngx_log::cycle_error(&format!(
                    "[proxy_wasm] {}: filter {} failed to start in this worker: {e}; it fails requests with 500",
                    w.labels[f.module], f.origin
                )),
            }
        }
        WORKER.with(|s| *s.borrow_mut() = Some(w));
        NGX_OK as ngx_int_t
    })
}

pub(crate) unsafe extern "C" fn exit_process(_cycle: *mut ngx_cycle_t) {
    crate::guard("exit_process", (), || {
        let _ = WORKER.try_with(|s| s.borrow_mut().take());
    })
}
