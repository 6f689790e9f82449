//! Plugins and their root contexts: load, unload, configure, delete (four of api7's nine
//! functions). One instance slot per plugin, as on the native path.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void};
use std::rc::Rc;

use proxy_wasm_host::{CompiledModule, HostError, PluginInstance};

use super::registry::*;
use super::streams::*;
use crate::util::log::CycleLogger;
use crate::vm::slot::InstanceSlot;

/// One loaded plugin: its compiled module and its instance in this process.
pub(crate) struct Plugin {
    pub(super) name: String,
    pub(super) compiled: CompiledModule,
    /// The limits it was compiled with (the CPU budget is compiled in).
    pub(super) limits: proxy_wasm_host::Limits,
    /// Its instance in this process: generation, failure mark and restart back-off, as on
    /// the native path (a failed instance runs nothing more; the next request restarts it).
    pub(super) slot: InstanceSlot,
    /// The process whose shared store (shared data, queues, metrics) the instance uses: a
    /// plugin loaded in the master (init_by_lua) gets its worker's store at first use there.
    pub(super) store_pid: Option<u32>,
}

pub(super) type PluginRef = Rc<RefCell<Plugin>>;

impl Plugin {
    /// Starts a fresh instance (plugin_root_id = the plugin's name): `_initialize`/`_start`,
    /// then one root context that runs proxy_on_vm_start (the VM start), kept for its life.
    pub(super) fn start(&mut self) -> Result<(), String> {
        self.slot.reset();
        let logger = Box::new(CycleLogger { label: self.name.clone() });
        let mut inst = PluginInstance::new(&self.compiled, &self.name, Vec::new(), logger, &self.limits).map_err(|e| e.to_string())?;
        // api7's module reports the name given to load() as plugin_root_id; SDKs that look up
        // their root context by it (AssemblyScript) rely on that.
        inst.set_root_id(&self.name);
        inst.set_call_policy(crate::conf::call_policy::for_lua(&self.name));
        inst.set_api7_contract();
        // The Lua path sends calls with Lua's HTTP client, which speaks no gRPC.
        inst.refuse_grpc_calls();
        let started = inst.create_root_context(None);
        drop_root_calls(&mut inst, &self.name);
        started.map_err(|e| e.to_string())?;
        self.slot.set(inst);
        self.store_pid = None;
        Ok(())
    }

    /// The running instance, restarting a failed one.
    pub(super) fn instance(&mut self) -> Result<&mut PluginInstance, String> {
        if self.slot.poisoned() || self.slot.any().is_none() {
            if !self.slot.wants_restart(true) {
                return Err("the plugin keeps failing: waiting before the next restart".into());
            }
            crate::util::log::cycle_error(&format!("[proxy_wasm] {}: starting a fresh instance after a failure", self.name));
            self.start()?;
        }
        let inst = self.slot.any().ok_or_else(|| "no instance".to_string())?;
        let pid = std::process::id();
        if self.store_pid != Some(pid) {
            inst.set_shared_store(proxy_wasm_host::shared_store::process_store());
            self.store_pid = Some(pid);
        }
        Ok(inst)
    }
}

/// HTTP calls made outside a request (on_vm_start, on_configure): api7's contract runs calls
/// from Lua for requests only, so they are dropped (and never answered), with a log line.
pub(super) fn drop_root_calls(inst: &mut PluginInstance, name: &str) {
    let tokens: Vec<u32> = inst.take_http_calls().iter().map(|c| c.token).collect();
    let n = tokens.len();
    if n > 0 {
        inst.forget_http_calls(&tokens);
        crate::util::log::cycle_error(&format!(
            "[proxy_wasm] {name}: {n} http call(s) from on_vm_start/on_configure dropped: on the Lua path calls run for requests only"
        ));
    }
}

/// What `ngx_http_wasm_load_plugin` returns to Lua.
pub(super) struct PluginHandle {
    pub(super) plugin: PluginRef,
}

/// A root ("plugin") context: one per `on_configure`. Requests keep it alive while they use it.
pub(crate) struct RootCtx {
    pub(super) plugin: PluginRef,
    pub(super) conf: Vec<u8>,
    /// The root context id in the instance of `generation`.
    pub(super) id: Cell<Option<u32>>,
    pub(super) generation: Cell<u64>,
}

impl RootCtx {
    /// The root context id in the current instance, configuring it again in a fresh one.
    pub(super) fn id_in(&self, p: &mut Plugin) -> Result<u32, String> {
        if let (Some(id), true) = (self.id.get(), self.generation.get() == p.slot.generation()) {
            return Ok(id);
        }
        let conf = self.conf.clone();
        let generation = p.slot.generation();
        let inst = p.slot.any().ok_or("no instance")?;
        let created = inst.create_configured_root(conf);
        drop_root_calls(inst, &p.name);
        let id = match created {
            Ok(id) => id,
            Err(e) => {
                // A trap or an exhausted CPU budget leaves the instance unusable; a refused
                // configuration does not.
                if !matches!(e, HostError::ConfigureFailed) {
                    p.slot.poison();
                }
                return Err(e.to_string());
            }
        };
        self.id.set(Some(id));
        self.generation.set(generation);
        Ok(id)
    }
}

impl Drop for RootCtx {
    fn drop(&mut self) {
        let Some(id) = self.id.get() else { return };
        let Ok(mut p) = self.plugin.try_borrow_mut() else { return };
        if p.slot.generation() != self.generation.get() || p.slot.poisoned() {
            return;
        }
        let label = p.name.clone();
        if let Some(inst) = p.slot.any() {
            let mut detached = Detached { label: &label };
            let r = inst.on_done_and_log(id, &mut detached).and_then(|_| inst.on_delete(id));
            match r {
                Ok(()) => cycle_info(&format!("[proxy_wasm] {label}: free plugin context {id}")),
                Err(e) => {
                    crate::util::log::cycle_error(&format!("[proxy_wasm] {label}: {e}"));
                    p.slot.poison();
                }
            }
        }
    }
}

/// What `ngx_http_wasm_on_configure` returns to Lua.
pub(super) struct CtxHandle {
    pub(super) root: Rc<RootCtx>,
}


/// `void *ngx_http_wasm_load_plugin(const char *name, size_t name_len, const char *code, size_t size);`
#[no_mangle]
pub unsafe extern "C" fn ngx_http_wasm_load_plugin(name: *const c_char, name_len: usize, code: *const c_char, size: usize) -> *mut c_void {
    crate::util::guard("ngx_http_wasm_load_plugin", std::ptr::null_mut(), || {
        clear_error();
        let Some(engine) = crate::conf::lua_engine::vm() else {
            fail("miss wasm_vm configuration: add \"wasm_vm wasmer;\" to the http block".into());
            return std::ptr::null_mut();
        };
        // SAFETY: Lua passes its strings with their lengths.
        let name = String::from_utf8_lossy(slice(name as *const u8, name_len)).into_owned();
        let code = slice(code as *const u8, size);
        if code.is_empty() {
            fail(format!("failed to load wasm plugin \"{name}\": empty code"));
            return std::ptr::null_mut();
        }
        let dir = crate::conf::lua_engine::cache_dir();
        let compiled = match proxy_wasm_host::compile_cached(&engine, code, dir.as_deref(), crate::conf::cache_policy::cache_policy()) {
            Ok((c, proxy_wasm_host::CacheOutcome::Miss(why))) => {
                crate::util::log::cycle_warn(&format!("wasm_compile_cache: {why}; \"{name}\" compiled without the cache"));
                c
            }
            Ok((c, _)) => c,
            Err(e) => {
                fail(format!("failed to load wasm plugin \"{name}\": {e}"));
                return std::ptr::null_mut();
            }
        };
        let mut plugin = Plugin { name: name.clone(), compiled, limits: engine.limits, slot: InstanceSlot::new(&name), store_pid: None };
        if let Err(e) = plugin.start() {
            fail(format!("failed to load wasm plugin \"{name}\": {e}"));
            return std::ptr::null_mut();
        }
        let h = Box::into_raw(Box::new(PluginHandle { plugin: Rc::new(RefCell::new(plugin)) }));
        PLUGINS.with(|s| s.borrow_mut().insert(h as usize));
        cycle_info(&format!("[proxy_wasm] {name}: loaded wasm plugin"));
        h as *mut c_void
    })
}

/// `void ngx_http_wasm_unload_plugin(void *plugin);` The instance lives on while plugin
/// contexts (and their requests) still use it.
#[no_mangle]
pub unsafe extern "C" fn ngx_http_wasm_unload_plugin(plugin: *mut c_void) {
    crate::util::guard("ngx_http_wasm_unload_plugin", (), || {
        if !PLUGINS.with(|s| s.borrow_mut().remove(&(plugin as usize))) {
            return;
        }
        // SAFETY: it was in the registry: a Box we leaked, removed from the registry just now.
        let h = Box::from_raw(plugin as *mut PluginHandle);
        let name = h.plugin.try_borrow().map(|p| p.name.clone()).unwrap_or_default();
        drop(h);
        cycle_info(&format!("[proxy_wasm] {name}: unloaded wasm plugin"));
    })
}

/// `void *ngx_http_wasm_on_configure(void *plugin, const char *conf, size_t size);`
#[no_mangle]
pub unsafe extern "C" fn ngx_http_wasm_on_configure(plugin: *mut c_void, conf: *const c_char, size: usize) -> *mut c_void {
    crate::util::guard("ngx_http_wasm_on_configure", std::ptr::null_mut(), || {
        clear_error();
        let Some(h) = handle::<PluginHandle>(&PLUGINS, plugin, "on_configure: bad plugin") else {
            return std::ptr::null_mut();
        };
        let conf = slice(conf as *const u8, size).to_vec();
        let root = Rc::new(RootCtx { plugin: h.plugin.clone(), conf, id: Cell::new(None), generation: Cell::new(0) });
        let res = {
            let Ok(mut p) = h.plugin.try_borrow_mut() else {
                fail("on_configure: the plugin is busy".into());
                return std::ptr::null_mut();
            };
            let name = p.name.clone();
            match p.instance().map(|_| ()).and_then(|()| root.id_in(&mut p)) {
                Ok(id) => Ok(id),
                // id_in marked the instance failed if it trapped (not if it refused the conf).
                Err(e) => Err(format!("failed to run proxy_on_configure: {name}: {e}")),
            }
        };
        match res {
            Ok(id) => {
                cycle_info(&format!("[proxy_wasm] create plugin context {id}"));
                let c = Box::into_raw(Box::new(CtxHandle { root }));
                CTXS.with(|s| s.borrow_mut().insert(c as usize));
                c as *mut c_void
            }
            Err(e) => {
                // The root context never existed in the instance: nothing to delete.
                root.id.set(None);
                fail(e);
                std::ptr::null_mut()
            }
        }
    })
}

/// `void ngx_http_wasm_delete_plugin_ctx(void *hwp_ctx);` on_done/on_delete run when the last
/// request using it is finished.
#[no_mangle]
pub unsafe extern "C" fn ngx_http_wasm_delete_plugin_ctx(ctx: *mut c_void) {
    crate::util::guard("ngx_http_wasm_delete_plugin_ctx", (), || {
        if !CTXS.with(|s| s.borrow_mut().remove(&(ctx as usize))) {
            return;
        }
        // SAFETY: it was in the registry: a Box we leaked, removed from the registry just now.
        drop(Box::from_raw(ctx as *mut CtxHandle));
    })
}

/// The root context behind a plugin ctx handle from Lua.
pub(crate) unsafe fn root_of(ctx: *mut c_void) -> Option<Rc<RootCtx>> {
    handle::<CtxHandle>(&CTXS, ctx, "bad plugin ctx").map(|h| h.root.clone())
}

/// A call of `root`'s plugin will never be answered.
pub(crate) fn forget_call(root: &RootCtx, token: u32) {
    let Ok(mut p) = root.plugin.try_borrow_mut() else { return };
    if p.slot.generation() != root.generation.get() {
        return;
    }
    if let Some(inst) = p.slot.any() {
        inst.forget_http_calls(&[token]);
    }
}
