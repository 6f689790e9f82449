//! The OpenResty / APISIX drop-in: the nine `ngx_http_wasm_*` C functions of
//! api7/wasm-nginx-module, with the same signatures, layouts and return codes, so that
//! `require("resty.proxy-wasm")` (api7's library, APISIX's `apisix/wasm.lua`, or ours in
//! lib/resty/proxy-wasm.lua) drives plugins through LuaJIT FFI.
//!
//! Unlike api7's module this needs nothing from lua-nginx-module: requests are reached through
//! the same `NgxStream` as the native path. Lua calls these functions on the worker's thread,
//! so all state is thread-local; handles given to Lua are checked against a registry before
//! use, so a stale or foreign pointer is refused instead of dereferenced.
//!
//! Return codes of `ngx_http_wasm_on_http` / `_on_http_call_resp`: 1 = an HTTP call is
//! pending (Lua fetches it with `ngx_http_wasm_call_get`), >= 100 = a local response with that
//! status (body from `ngx_http_wasm_fetch_local_body`), 0 = go on, < 0 = the plugin failed.
//! Unlike api7: an action other than Continue/Pause, and Pause with nothing pending, give 0
//! (never a code Lua would loop on or a call to fetch that does not exist).

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::ffi::{c_char, c_int, c_void};
use std::rc::Rc;

use ngx::ffi::*;
use proxy_wasm_host::abi::BufferType;
use proxy_wasm_host::maps::MapBuilder;
use proxy_wasm_host::{CompiledModule, HostError, HttpStream, LocalResponse, LogLevel, MapType, Outcome, PluginInstance, Status};

use crate::lua::calls::{CallSlot, PendingCall};
use crate::vm::slot::InstanceSlot;
use crate::util::log::CycleLogger;
use crate::http::properties::VarWrite;
use crate::http::stream::{NgxStream, Phase, Properties};

const NGX_ERR: ngx_int_t = NGX_ERROR as ngx_int_t;
/// api7's "no VM configured / no HTTP context" code.
const NGX_DECL: ngx_int_t = NGX_DECLINED as ngx_int_t;

/// The phases of `ngx_http_wasm_on_http` (api7's constants).
const HTTP_REQUEST_HEADERS: c_int = 1;
const HTTP_REQUEST_BODY: c_int = 2;
const HTTP_RESPONSE_HEADERS: c_int = 4;
const HTTP_RESPONSE_BODY: c_int = 8;

/// One loaded plugin: its compiled module and its instance in this process.
pub(crate) struct Plugin {
    name: String,
    compiled: CompiledModule,
    /// The limits it was compiled with (the CPU budget is compiled in).
    limits: proxy_wasm_host::Limits,
    /// Its instance in this process: generation, failure mark and restart back-off, as on
    /// the native path (a failed instance runs nothing more; the next request restarts it).
    slot: InstanceSlot,
    /// The process whose shared store (shared data, queues, metrics) the instance uses: a
    /// plugin loaded in the master (init_by_lua) gets its worker's store at first use there.
    store_pid: Option<u32>,
}

type PluginRef = Rc<RefCell<Plugin>>;

impl Plugin {
    /// Starts a fresh instance (plugin_root_id = the plugin's name): `_initialize`/`_start`,
    /// then one root context that runs proxy_on_vm_start (the VM start), kept for its life.
    fn start(&mut self) -> Result<(), String> {
        self.slot.reset();
        let logger = Box::new(CycleLogger { label: self.name.clone() });
        let mut inst = PluginInstance::new(&self.compiled, &self.name, Vec::new(), logger, &self.limits).map_err(|e| e.to_string())?;
        // api7's module reports the name given to load() as plugin_root_id; SDKs that look up
        // their root context by it (AssemblyScript) rely on that.
        inst.set_root_id(&self.name);
        inst.set_call_policy(crate::conf::call_policy::for_lua(&self.name));
        inst.set_api7_contract();
        let started = inst.create_root_context(None);
        drop_root_calls(&mut inst, &self.name);
        started.map_err(|e| e.to_string())?;
        self.slot.set(inst);
        self.store_pid = None;
        Ok(())
    }

    /// The running instance, restarting a failed one.
    fn instance(&mut self) -> Result<&mut PluginInstance, String> {
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
fn drop_root_calls(inst: &mut PluginInstance, name: &str) {
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
struct PluginHandle {
    plugin: PluginRef,
}

/// A root ("plugin") context: one per `on_configure`. Requests keep it alive while they use it.
pub(crate) struct RootCtx {
    plugin: PluginRef,
    conf: Vec<u8>,
    /// The root context id in the instance of `generation`.
    id: Cell<Option<u32>>,
    generation: Cell<u64>,
}

impl RootCtx {
    /// The root context id in the current instance, configuring it again in a fresh one.
    fn id_in(&self, p: &mut Plugin) -> Result<u32, String> {
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
struct CtxHandle {
    root: Rc<RootCtx>,
}

/// The HTTP context of one request under one root context.
struct HttpCtx {
    root: Rc<RootCtx>,
    generation: u64,
    /// None once it failed.
    id: Option<u32>,
    /// on_done / on_log ran (ngx_proxy_wasm_lua_on_log).
    logged: bool,
}

/// The Lua path's per-request state, owned by a request pool cleanup.
pub(crate) struct LuaRequest {
    /// The request it belongs to: subrequests share their parent's pool, not its state.
    r: *mut ngx_http_request_t,
    ctxs: Vec<HttpCtx>,
    properties: Properties,
    /// The last local response's body, for ngx_http_wasm_fetch_local_body.
    local_body: Vec<u8>,
    local_str: ngx_str_t,
    /// A response-phase local response replaces the body (our Lua library's body filter).
    pub(crate) replace_body: Option<Vec<u8>>,
    /// The body a body callback rewrote, for ngx_proxy_wasm_lua_body.
    body_out: Option<Vec<u8>>,
    body_str: ngx_str_t,
    /// HTTP calls: the one Lua fetches next, the one in flight, and their strings.
    pub(crate) calls: CallSlot,
}

thread_local! {
    static PLUGINS: RefCell<HashSet<usize>> = RefCell::new(HashSet::new());
    static CTXS: RefCell<HashSet<usize>> = RefCell::new(HashSet::new());
    static LAST_ERROR: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn cycle_info(msg: &str) {
    // SAFETY: ngx_cycle is set before any module code runs; its log stays valid.
    unsafe {
        let cycle = ngx_cycle;
        if !cycle.is_null() && !(*cycle).log.is_null() {
            ngx::log::log_error(NGX_LOG_INFO as ngx_uint_t, (*cycle).log, 0, msg.as_bytes());
        }
    }
}

fn fail(msg: String) {
    // One line, as every error log line of the module (wasmer's diagnostics span several).
    let msg = msg.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    crate::util::log::cycle_error(&format!("[proxy_wasm] lua: {msg}"));
    LAST_ERROR.with(|e| *e.borrow_mut() = msg.into_bytes());
}

pub(crate) fn clear_error() {
    LAST_ERROR.with(|e| e.borrow_mut().clear());
}

/// A registered handle of type `T`, or None (and the error recorded) for anything else.
unsafe fn handle<'a, T>(set: &'static std::thread::LocalKey<RefCell<HashSet<usize>>>, p: *mut c_void, what: &str) -> Option<&'a T> {
    if p.is_null() || !set.with(|s| s.borrow().contains(&(p as usize))) {
        fail(format!("{what}: not a live handle (freed, or not from this library)"));
        return None;
    }
    // SAFETY: the address is in the registry, so it is a Box<T> we leaked and have not freed.
    Some(&*(p as *const T))
}

unsafe fn slice<'a>(p: *const u8, len: usize) -> &'a [u8] {
    if p.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the caller (Lua) passes a pointer to `len` readable bytes.
        std::slice::from_raw_parts(p, len)
    }
}

/// Every C function of the Lua path. Only LuaJIT calls them, by name: lib.rs keeps a `#[used]`
/// reference so that a static link (nginx's addon build) cannot leave them out.
#[allow(dead_code)] // read by the linker only
pub(crate) struct Exports(pub [*const (); 13]);
// SAFETY: addresses of functions, never dereferenced as data; sharing them is harmless.
unsafe impl Sync for Exports {}
pub(crate) const EXPORTS: Exports = Exports([
    ngx_http_wasm_load_plugin as *const (),
    ngx_http_wasm_unload_plugin as *const (),
    ngx_http_wasm_on_configure as *const (),
    ngx_http_wasm_delete_plugin_ctx as *const (),
    ngx_http_wasm_on_http as *const (),
    ngx_http_wasm_fetch_local_body as *const (),
    crate::lua::calls::ngx_http_wasm_call_max_headers_count as *const (),
    crate::lua::calls::ngx_http_wasm_call_get as *const (),
    crate::lua::calls::ngx_http_wasm_on_http_call_resp as *const (),
    ngx_proxy_wasm_lua_last_error as *const (),
    ngx_proxy_wasm_lua_on_log as *const (),
    ngx_proxy_wasm_lua_body as *const (),
    ngx_proxy_wasm_lua_replace_body as *const (),
]);

// ---- the nine api7 functions ----

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

/// `ngx_int_t ngx_http_wasm_on_http(void *hwp_ctx, void *r, int type, const u_char *body,
/// size_t size, int end_of_body);`
#[no_mangle]
pub unsafe extern "C" fn ngx_http_wasm_on_http(
    ctx: *mut c_void,
    r: *mut c_void,
    kind: c_int,
    body: *const u8,
    size: usize,
    end_of_body: c_int,
) -> ngx_int_t {
    crate::util::guard("ngx_http_wasm_on_http", NGX_ERR, || {
        clear_error();
        let Some(h) = handle::<CtxHandle>(&CTXS, ctx, "on_http: bad plugin ctx") else { return NGX_ERR };
        let r = r as *mut ngx_http_request_t;
        if r.is_null() {
            fail("on_http: no request".into());
            return NGX_ERR;
        }
        if ![HTTP_REQUEST_HEADERS, HTTP_REQUEST_BODY, HTTP_RESPONSE_HEADERS, HTTP_RESPONSE_BODY].contains(&kind) {
            fail(format!("on_http: unknown phase type {kind} (1, 2, 4 or 8)"));
            return NGX_ERR;
        }
        let Some(lr) = request_state(r) else { return NGX_ERR };
        let body = slice(body, size);
        run(r, lr, &h.root, &mut |inst, id, stream| match kind {
            HTTP_REQUEST_HEADERS => {
                let n = stream.0.count(MapType::RequestHeaders);
                inst.on_request_headers(id, stream, n, !crate::http::chain::request_has_body(r))
            }
            HTTP_RESPONSE_HEADERS => {
                let n = stream.0.count(MapType::ResponseHeaders);
                inst.on_response_headers(id, stream, n, crate::http::chain::response_has_no_body(r))
            }
            _ => unreachable!("body phases go through run_body"),
        }, kind, body, end_of_body != 0)
    })
}

/// `ngx_str_t *ngx_http_wasm_fetch_local_body(void *r);` NULL when the body is empty.
#[no_mangle]
pub unsafe extern "C" fn ngx_http_wasm_fetch_local_body(r: *mut c_void) -> *mut ngx_str_t {
    crate::util::guard("ngx_http_wasm_fetch_local_body", std::ptr::null_mut(), || {
        let Some(lr) = find_request(r as *mut ngx_http_request_t) else { return std::ptr::null_mut() };
        if lr.local_body.is_empty() {
            return std::ptr::null_mut();
        }
        lr.local_str = ngx_str_t { len: lr.local_body.len(), data: lr.local_body.as_mut_ptr() };
        &mut lr.local_str
    })
}

// ---- our extensions (used by lib/resty/proxy-wasm.lua when present) ----

/// `void ngx_proxy_wasm_lua_last_error(ngx_str_t *out);` why the last call failed (empty if
/// it did not). Valid until the next call.
#[no_mangle]
pub unsafe extern "C" fn ngx_proxy_wasm_lua_last_error(out: *mut ngx_str_t) {
    crate::util::guard("ngx_proxy_wasm_lua_last_error", (), || {
        if out.is_null() {
            return;
        }
        LAST_ERROR.with(|e| {
            let mut e = e.borrow_mut();
            // SAFETY: out points to a Lua-owned ngx_str_t; the bytes live in the thread-local.
            *out = ngx_str_t { len: e.len(), data: e.as_mut_ptr() };
        });
    })
}

/// `ngx_int_t ngx_proxy_wasm_lua_on_log(void *hwp_ctx, void *r);` on_done then on_log of the
/// request's HTTP context (from log_by_lua); on_delete follows when the request is freed.
#[no_mangle]
pub unsafe extern "C" fn ngx_proxy_wasm_lua_on_log(ctx: *mut c_void, r: *mut c_void) -> ngx_int_t {
    crate::util::guard("ngx_proxy_wasm_lua_on_log", NGX_ERR, || {
        clear_error();
        let Some(h) = handle::<CtxHandle>(&CTXS, ctx, "on_log: bad plugin ctx") else { return NGX_ERR };
        let r = r as *mut ngx_http_request_t;
        let Some(lr) = find_request(r) else { return NGX_OK as ngx_int_t };
        let Some(i) = lr.ctxs.iter().position(|c| Rc::ptr_eq(&c.root, &h.root)) else { return NGX_OK as ngx_int_t };
        if lr.ctxs[i].logged {
            return NGX_OK as ngx_int_t;
        }
        lr.ctxs[i].logged = true;
        let Some(id) = lr.ctxs[i].id else { return NGX_OK as ngx_int_t };
        let generation = lr.ctxs[i].generation;
        let root = h.root.clone();
        let Ok(mut p) = root.plugin.try_borrow_mut() else { return NGX_ERR };
        if p.slot.generation() != generation || p.slot.poisoned() {
            return NGX_OK as ngx_int_t;
        }
        let label = p.name.clone();
        let Some(inst) = p.slot.any() else { return NGX_ERR };
        let mut stream = NgxStream::new(r, &label, Phase::Response).with_properties(&mut lr.properties);
        match inst.on_done_and_log(id, &mut LuaStream(&mut stream)) {
            Ok(()) => NGX_OK as ngx_int_t,
            Err(e) => {
                p.slot.poison();
                lr.ctxs[i].id = None;
                crate::http::chain::log_failure(r, &label, &e);
                fail(format!("failed to run proxy_on_log: {e}"));
                NGX_ERR
            }
        }
    })
}

/// `int ngx_proxy_wasm_lua_body(void *r, ngx_str_t *out);` 1 and the body when the last body
/// callback changed it (proxy_set_buffer_bytes), else 0.
#[no_mangle]
pub unsafe extern "C" fn ngx_proxy_wasm_lua_body(r: *mut c_void, out: *mut ngx_str_t) -> c_int {
    crate::util::guard("ngx_proxy_wasm_lua_body", 0, || {
        let Some(lr) = find_request(r as *mut ngx_http_request_t) else { return 0 };
        let Some(b) = lr.body_out.as_mut() else { return 0 };
        lr.body_str = ngx_str_t { len: b.len(), data: b.as_mut_ptr() };
        if !out.is_null() {
            // SAFETY: out is a Lua-owned ngx_str_t; the bytes live in the request state.
            *out = lr.body_str;
        }
        1
    })
}

/// `int ngx_proxy_wasm_lua_replace_body(void *r, ngx_str_t *out);` 1 and the body of a local
/// response sent from a response callback (it replaces the upstream body), else 0.
#[no_mangle]
pub unsafe extern "C" fn ngx_proxy_wasm_lua_replace_body(r: *mut c_void, out: *mut ngx_str_t) -> c_int {
    crate::util::guard("ngx_proxy_wasm_lua_replace_body", 0, || {
        let Some(lr) = find_request(r as *mut ngx_http_request_t) else { return 0 };
        let Some(b) = lr.replace_body.as_mut() else { return 0 };
        if !out.is_null() {
            // SAFETY: as above.
            *out = ngx_str_t { len: b.len(), data: b.as_mut_ptr() };
        }
        1
    })
}

// ---- per-request state ----

unsafe extern "C" fn cleanup(data: *mut c_void) {
    crate::util::guard("lua request cleanup", (), || {
        // SAFETY: data is the Box leaked in request_state, freed exactly once here.
        let mut lr = Box::from_raw(data as *mut LuaRequest);
        // r->pool is already gone here: contexts not logged run on_done/on_log detached.
        for c in lr.ctxs.iter_mut() {
            let Some(id) = c.id.take() else { continue };
            let Ok(mut p) = c.root.plugin.try_borrow_mut() else { continue };
            if p.slot.generation() != c.generation || p.slot.poisoned() {
                continue;
            }
            let label = p.name.clone();
            let Some(inst) = p.slot.any() else { continue };
            let mut detached = Detached { label: &label };
            let mut r = Ok(());
            if !c.logged {
                r = inst.on_done_and_log(id, &mut detached);
            }
            if let Err(e) = r.and_then(|_| inst.on_delete(id)) {
                crate::util::log::cycle_error(&format!("[proxy_wasm] {label}: {e}"));
                p.slot.poison();
            }
        }
        crate::lua::calls::forget(lr.calls.drain());
        // Dropping the contexts may free root contexts (their plugin borrows are released).
        drop(lr);
    })
}

/// The request's Lua-path state, if any: found through the pool cleanup that owns it (r->ctx
/// is wiped by internal redirects, the pool is not).
pub(crate) unsafe fn find_request<'a>(r: *mut ngx_http_request_t) -> Option<&'a mut LuaRequest> {
    // SAFETY: `r` is the current request Lua passed (resty.core's get_request) or NULL; its
    // pool's cleanup list is nginx's, and only our own handler's data is read as LuaRequest.
    if r.is_null() || (*r).pool.is_null() {
        return None;
    }
    let data = crate::util::pool::cleanup_data((*r).pool, cleanup, |d| (*(d as *mut LuaRequest)).r == r);
    (data as *mut LuaRequest).as_mut()
}

unsafe fn request_state<'a>(r: *mut ngx_http_request_t) -> Option<&'a mut LuaRequest> {
    if let Some(lr) = find_request(r) {
        return Some(lr);
    }
    if (*r).pool.is_null() {
        fail("on_http: the request is finished".into());
        return None;
    }
    // SAFETY: a live request (checked above); the state is freed by `cleanup` with the pool.
    let cln = ngx_pool_cleanup_add((*r).pool, 0);
    if cln.is_null() {
        fail("on_http: out of memory".into());
        return None;
    }
    let lr = Box::into_raw(Box::new(LuaRequest {
        r,
        ctxs: Vec::new(),
        properties: Properties::default(),
        local_body: Vec::new(),
        local_str: ngx_str_t { len: 0, data: std::ptr::null_mut() },
        replace_body: None,
        body_out: None,
        body_str: ngx_str_t { len: 0, data: std::ptr::null_mut() },
        calls: CallSlot::default(),
    }));
    (*cln).handler = Some(cleanup);
    (*cln).data = lr as *mut c_void;
    Some(&mut *lr)
}

/// The index of the request's HTTP context under `root`, created on first use.
fn http_ctx(lr: &mut LuaRequest, root: &Rc<RootCtx>, p: &mut Plugin) -> Result<usize, String> {
    if let Some(i) = lr.ctxs.iter().position(|c| Rc::ptr_eq(&c.root, root)) {
        let c = &lr.ctxs[i];
        return match c.id {
            Some(_) if c.generation == p.slot.generation() && !p.slot.poisoned() => Ok(i),
            _ => Err("the plugin failed earlier in this request".into()),
        };
    }
    p.instance()?;
    let root_id = root.id_in(p)?;
    let generation = p.slot.generation();
    let inst = p.slot.any().ok_or("no instance")?;
    let id = inst.create_http_context(root_id).map_err(|e| {
        p.slot.poison();
        e.to_string()
    })?;
    lr.ctxs.push(HttpCtx { root: root.clone(), generation, id: Some(id), logged: false });
    Ok(lr.ctxs.len() - 1)
}

type HeadersCall<'x> = dyn FnMut(&mut PluginInstance, u32, &mut LuaStream<'_, '_>) -> Result<Outcome, HostError> + 'x;

/// Runs one callback of the request's HTTP context under `root` and turns its outcome into
/// api7's return code.
unsafe fn run(
    r: *mut ngx_http_request_t,
    lr: &mut LuaRequest,
    root: &Rc<RootCtx>,
    headers: &mut HeadersCall<'_>,
    kind: c_int,
    body: &[u8],
    end_of_body: bool,
) -> ngx_int_t {
    let plugin = root.plugin.clone();
    let Ok(mut p) = plugin.try_borrow_mut() else {
        fail("on_http: the plugin is busy (re-entered)".into());
        return NGX_ERR;
    };
    let label = p.name.clone();
    let i = match http_ctx(lr, root, &mut p) {
        Ok(i) => i,
        Err(e) => {
            crate::http::chain::log_at(r, NGX_LOG_ERR, &label, &format!("cannot run the plugin: {e}"));
            fail(e);
            return NGX_DECL;
        }
    };
    let id = lr.ctxs[i].id.unwrap_or(0);
    let response = kind & (HTTP_RESPONSE_HEADERS | HTTP_RESPONSE_BODY) != 0;
    let phase = if response { Phase::Response } else { Phase::Request };
    let Some(inst) = p.slot.any() else { return NGX_ERR };
    lr.body_out = None;
    let res = {
        let mut stream = NgxStream::new(r, &label, phase).with_properties(&mut lr.properties);
        match kind {
            HTTP_REQUEST_BODY | HTTP_RESPONSE_BODY => {
                let which = if response { BufferType::HttpResponseBody } else { BufferType::HttpRequestBody };
                let mut buf = body.to_vec();
                let res = {
                    let mut stream = stream.with_body(which, &mut buf);
                    inst.on_body(response, id, &mut LuaStream(&mut stream), body.len(), end_of_body)
                };
                if buf != body {
                    lr.body_out = Some(buf);
                }
                res
            }
            _ => headers(inst, id, &mut LuaStream(&mut stream)),
        }
    };
    conclude(r, lr, root, p, i, &label, res, response)
}

/// Turns one callback's result into the return code: a failure poisons the instance and ends
/// this request's HTTP context; otherwise the calls it dispatched and its outcome decide.
#[allow(clippy::too_many_arguments)]
unsafe fn conclude(
    r: *mut ngx_http_request_t,
    lr: &mut LuaRequest,
    root: &Rc<RootCtx>,
    mut p: std::cell::RefMut<'_, Plugin>,
    i: usize,
    label: &str,
    res: Result<Outcome, HostError>,
    response: bool,
) -> ngx_int_t {
    let outcome = match res {
        Ok(o) => o,
        Err(e) => {
            p.slot.poison();
            lr.ctxs[i].id = None;
            crate::http::chain::log_failure(r, label, &e);
            fail(format!("{label}: {e}"));
            return NGX_ERR;
        }
    };
    let calls = match p.slot.any() {
        Some(inst) => {
            // No timers on the Lua path (api7 has none either): tick periods are dropped.
            let _ = inst.take_tick_changes();
            inst.take_http_calls()
        }
        None => Vec::new(),
    };
    drop(p);
    rc_of(r, lr, root, label, outcome, calls, response)
}

/// api7's return-code contract (see the module doc), applied after a callback returned.
pub(crate) unsafe fn rc_of(
    r: *mut ngx_http_request_t,
    lr: &mut LuaRequest,
    root: &Rc<RootCtx>,
    label: &str,
    outcome: Outcome,
    calls: Vec<proxy_wasm_host::HttpCallRequest>,
    response: bool,
) -> ngx_int_t {
    // A dispatched call comes first (api7: it wins over a local response of the same callback).
    if !calls.is_empty() && !response {
        let n = calls.len();
        lr.calls.queue(calls.into_iter().map(|c| PendingCall { req: c, root: root.clone() }));
        if n > 1 {
            crate::http::chain::log_at(r, NGX_LOG_INFO, label, &format!("{n} http calls dispatched: Lua runs them one after the other"));
        }
        return 1;
    }
    if !calls.is_empty() {
        crate::http::chain::log_at(r, NGX_LOG_WARN, label, "http calls from response callbacks are not run on the Lua path (headers are sent)");
        crate::lua::calls::forget(calls.into_iter().map(|c| PendingCall { req: c, root: root.clone() }).collect());
    }
    if let Some(local) = outcome.local_response {
        return local_response(r, lr, label, &local, response);
    }
    if outcome.ops.close_request || outcome.ops.close_response {
        crate::http::chain::log_at(r, NGX_LOG_INFO, label, "closed the stream (proxy_close_stream)");
        return NGX_HTTP_CLOSE as ngx_int_t;
    }
    if outcome.action == proxy_wasm_host::Action::Pause && lr.calls.in_flight().is_none() && !response {
        let resumed = outcome.ops.continue_request || outcome.ops.continue_response;
        if !resumed {
            crate::http::chain::log_at(
                r,
                NGX_LOG_WARN,
                label,
                "returned Pause with no HTTP call pending and no local response: continuing",
            );
        }
    }
    NGX_OK as ngx_int_t
}

unsafe fn local_response(r: *mut ngx_http_request_t, lr: &mut LuaRequest, label: &str, local: &LocalResponse, response: bool) -> ngx_int_t {
    // The host core already refuses other statuses (send_local_response); kept as a guard.
    if !crate::http::stream::FRAMED_STATUS.contains(&(local.status as ngx_uint_t)) {
        crate::http::chain::log_at(r, NGX_LOG_ERR, label, &format!("local response with invalid status {}", local.status));
        return NGX_ERR;
    }
    // SAFETY: `r` is the live request of the running callback.
    if (*r).header_sent() != 0 {
        crate::http::chain::log_at(r, NGX_LOG_WARN, label, "local response after the response headers were sent: ignored");
        return NGX_OK as ngx_int_t;
    }
    lr.properties.code_details = Some(local.details.clone());
    if !crate::http::local_response::set_headers(r, local) {
        return NGX_ERR;
    }
    lr.local_body = local.body.clone();
    if response {
        // The upstream body follows: our Lua library's body filter replaces it (replace_body).
        // Its length is unknown here (api7's library keeps the upstream body): no
        // Content-Length, so the framing is right either way.
        lr.replace_body = Some(local.body.clone());
        (*r).headers_out.content_length_n = -1;
    }
    local.status as ngx_int_t
}

/// Runs `f` on the plugin of `root` for this request's HTTP context; used by lua_call.rs.
pub(crate) unsafe fn with_http_ctx(
    r: *mut ngx_http_request_t,
    lr: &mut LuaRequest,
    root: &Rc<RootCtx>,
    f: &mut dyn FnMut(&mut PluginInstance, &mut LuaStream<'_, '_>) -> Result<Outcome, HostError>,
) -> ngx_int_t {
    let plugin = root.plugin.clone();
    let Ok(mut p) = plugin.try_borrow_mut() else { return NGX_ERR };
    let label = p.name.clone();
    let live = lr.ctxs.iter().position(|c| Rc::ptr_eq(&c.root, root) && c.generation == p.slot.generation() && c.id.is_some());
    let (Some(i), false) = (live, p.slot.poisoned()) else {
        fail(format!("{label}: the plugin failed earlier in this request"));
        return NGX_ERR;
    };
    let Some(inst) = p.slot.any() else { return NGX_ERR };
    let res = {
        let mut stream = NgxStream::new(r, &label, Phase::Request).with_properties(&mut lr.properties);
        f(inst, &mut LuaStream(&mut stream))
    };
    conclude(r, lr, root, p, i, &label, res, false)
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

pub(crate) fn record_error(msg: String) {
    fail(msg);
}

// ---- streams ----

/// The request stream of the Lua path: as the native path's, plus api7's property names: a
/// one-segment path that names an nginx variable reads and writes it (`wasm_process_req_body`
/// and `wasm_process_resp_body` in APISIX).
pub(crate) struct LuaStream<'s, 'a>(pub(crate) &'s mut NgxStream<'a>);

impl HttpStream for LuaStream<'_, '_> {
    fn log(&mut self, level: LogLevel, msg: &[u8]) {
        self.0.log(level, msg)
    }
    fn log_level(&self) -> Option<LogLevel> {
        self.0.log_level()
    }
    fn map_pairs(&mut self, map: MapType, out: &mut MapBuilder) -> Status {
        self.0.map_pairs(map, out)
    }
    fn map_get(&mut self, map: MapType, key: &[u8], out: &mut Vec<u8>) -> Status {
        self.0.map_get(map, key, out)
    }
    fn map_set_pairs(&mut self, map: MapType, pairs: &[(&[u8], &[u8])]) -> Status {
        self.0.map_set_pairs(map, pairs)
    }
    fn map_add(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Status {
        self.0.map_add(map, key, value)
    }
    fn map_replace(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Status {
        self.0.map_replace(map, key, value)
    }
    fn map_remove(&mut self, map: MapType, key: &[u8]) -> Status {
        self.0.map_remove(map, key)
    }
    fn body(&mut self, which: BufferType) -> Option<&mut Vec<u8>> {
        self.0.body(which)
    }
    fn get_property(&mut self, path: &[&[u8]], out: &mut Vec<u8>) -> Status {
        let st = self.0.get_property(path, out);
        if let (Status::NotFound, [name]) = (st, path) {
            return self.0.get_property(&[b"ngx", name], out);
        }
        st
    }
    fn set_property(&mut self, path: &[&[u8]], value: &[u8]) -> Status {
        if let [name] = path {
            // api7's answers (lua-nginx-module's variable setter): a variable that does not
            // exist (prefix ones such as `http_x` included) is NOT_FOUND, one that exists but
            // cannot be written (`host`) INTERNAL_FAILURE; neither is kept as a property.
            // SAFETY: the stream's request is live (NgxStream's contract).
            return match unsafe { crate::http::properties::set_variable(self.0.request(), name, value) } {
                VarWrite::Done => Status::Ok,
                // An nginx variable refuses a value that could split a header or request line.
                VarWrite::Invalid => Status::BadArgument,
                VarWrite::NoMemory => Status::InternalFailure,
                VarWrite::Unknown => Status::NotFound,
                VarWrite::Refused => {
                    let msg = format!("proxy_set_property: nginx variable \"{}\" is not changeable", String::from_utf8_lossy(name));
                    self.0.log(LogLevel::Warn, msg.as_bytes());
                    Status::InternalFailure
                }
            };
        }
        self.0.set_property(path, value)
    }
}

/// A stream for callbacks that run when no request is readable any more (request pool
/// cleanup, root contexts): maps are NOT_FOUND, logs go to the error log.
struct Detached<'a> {
    label: &'a str,
}

impl HttpStream for Detached<'_> {
    fn log(&mut self, level: LogLevel, msg: &[u8]) {
        CycleLogger { label: self.label.to_string() }.log(level, msg)
    }
    fn map_pairs(&mut self, _: MapType, _: &mut MapBuilder) -> Status {
        Status::NotFound
    }
    fn map_get(&mut self, _: MapType, _: &[u8], _: &mut Vec<u8>) -> Status {
        Status::NotFound
    }
    fn map_set_pairs(&mut self, _: MapType, _: &[(&[u8], &[u8])]) -> Status {
        Status::NotFound
    }
    fn map_add(&mut self, _: MapType, _: &[u8], _: &[u8]) -> Status {
        Status::NotFound
    }
    fn map_replace(&mut self, _: MapType, _: &[u8], _: &[u8]) -> Status {
        Status::NotFound
    }
    fn map_remove(&mut self, _: MapType, _: &[u8]) -> Status {
        Status::NotFound
    }
}

use proxy_wasm_host::Logger as _;
