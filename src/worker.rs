//! Load time and worker life: compile and validate every module once per configuration load
//! (in the master, before fork), then instantiate each used module once per worker.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use ngx::ffi::*;
use ngx::http::{HttpModuleMainConf, NgxHttpCoreModule};
use proxy_wasm_host::shared_store::{self, MetricKind, SharedStore};
use proxy_wasm_host::{CallStats, Compiler, FailureKind, HostError, HttpCallRequest, PluginInstance};

use crate::conf::MainConf;
use crate::ngx_log::CycleLogger;
use crate::Module;

/// Per-worker state: one instance per module, one root context per `proxy_wasm`.
pub(crate) struct Worker {
    conf: &'static MainConf,
    /// Indexed like MainConf::modules; None if the module is unused or failed to start.
    pub instances: Vec<Option<PluginInstance>>,
    /// Indexed like MainConf::modules: bumped each time the instance is replaced, so that
    /// contexts created in an older instance are never passed to the new one.
    pub generations: Vec<u64>,
    /// Indexed like MainConf::modules: the instance trapped and must not serve again.
    pub poisoned: Vec<bool>,
    /// Indexed like MainConf::modules: restart back-off.
    backoff: Vec<Backoff>,
    /// Indexed like MainConf::filters: the root context id in its module's instance.
    pub roots: Vec<Option<u32>>,
    /// Indexed like MainConf::filters: the module index.
    pub filter_module: Vec<usize>,
    /// Indexed like MainConf::modules: the module name, for log lines.
    pub labels: Vec<std::rc::Rc<str>>,
    /// Indexed like MainConf::filters: the root context's tick timer, when it set a period.
    ticks: Vec<Option<Box<Tick>>>,
    /// HTTP calls root contexts made while starting, to send once the worker state is free.
    pub root_calls: Vec<(usize, u64, HttpCallRequest)>,
    /// The per-filter figures (proxy_wasm_filter_metrics on, and a shared zone); None when off.
    stats: Option<Stats>,
}

/// This worker's share of the per-filter and per-module metrics. Callbacks add to plain
/// integers in their instance (`PluginInstance::take_stats`); `flush_stats` adds them to the
/// shared zone's host metrics every queue-poll period (100 ms), before a scrape this worker
/// serves, before an instance is replaced, and at exit. No shared-memory write per callback.
struct Stats {
    store: std::sync::Arc<SharedStore>,
    /// Indexed like MainConf::filters: the filter's series ids, once defined.
    filters: Vec<Option<FilterIds>>,
    /// Indexed like MainConf::modules: (restarts, memory) series ids, once defined.
    modules: Vec<Option<(u32, u32)>>,
    /// Indexed like MainConf::modules: restarts not yet added.
    restarts: Vec<u64>,
    /// Indexed like MainConf::modules: the memory this worker added to the gauge.
    memory: Vec<u64>,
}

struct FilterIds {
    callbacks: u32,
    instructions: u32,
    duration: u32,
    /// Indexed like FailureKind::ALL, defined at the first failure of that kind.
    failures: [Option<u32>; 5],
}

/// A label value of at most 64 bytes (series names are at most 255 bytes), escaped.
fn label(v: &str) -> String {
    let mut end = v.len().min(64);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    shared_store::label_value(&v[..end])
}

impl Stats {
    fn filter_ids(&mut self, conf: &MainConf, fi: usize) -> Option<&mut FilterIds> {
        if self.filters[fi].is_none() {
            let f = &conf.filters[fi];
            let labels = format!("module=\"{}\",filter=\"{}\"", label(&conf.modules[f.module].name), label(&f.label));
            let def = |kind, family: &str| self.store.define_host_metric(kind, format!("{family}{{{labels}}}").as_bytes()).ok();
            self.filters[fi] = Some(FilterIds {
                callbacks: def(MetricKind::Counter, "proxy_wasm_filter_callbacks_total")?,
                instructions: def(MetricKind::Counter, "proxy_wasm_filter_instructions_total")?,
                duration: def(MetricKind::Histogram, "proxy_wasm_filter_callback_duration_seconds")?,
                failures: [None; 5],
            });
        }
        self.filters[fi].as_mut()
    }

    fn add_filter(&mut self, conf: &MainConf, fi: usize, cs: &CallStats) {
        let store = self.store.clone();
        let Some(ids) = self.filter_ids(conf, fi) else { return };
        store.host_add(ids.callbacks, cs.callbacks as i64);
        store.host_add(ids.instructions, cs.instructions.min(i64::MAX as u64) as i64);
        store.host_observe(ids.duration, &cs.buckets, cs.nanos);
        for (k, &n) in FailureKind::ALL.iter().zip(cs.failures.iter()) {
            if n == 0 {
                continue;
            }
            let slot = &mut ids.failures[*k as usize];
            if slot.is_none() {
                let f = &conf.filters[fi];
                let series = format!(
                    "proxy_wasm_filter_failures_total{{module=\"{}\",filter=\"{}\",kind=\"{}\"}}",
                    label(&conf.modules[f.module].name),
                    label(&f.label),
                    k.name()
                );
                *slot = store.define_host_metric(MetricKind::Counter, series.as_bytes()).ok();
            }
            if let Some(id) = *slot {
                store.host_add(id, n as i64);
            }
        }
    }

    /// Adds module `mi`'s pending restarts and moves its memory gauge to `memory` bytes.
    fn set_module(&mut self, conf: &MainConf, mi: usize, memory: u64) {
        if self.restarts[mi] == 0 && self.memory[mi] == memory {
            return;
        }
        if self.modules[mi].is_none() {
            let m = label(&conf.modules[mi].name);
            let r = self.store.define_host_metric(MetricKind::Counter, format!("proxy_wasm_module_restarts_total{{module=\"{m}\"}}").as_bytes());
            let g = self.store.define_host_metric(MetricKind::Gauge, format!("proxy_wasm_module_memory_bytes{{module=\"{m}\"}}").as_bytes());
            let (Ok(r), Ok(g)) = (r, g) else { return };
            self.modules[mi] = Some((r, g));
        }
        let Some((r, g)) = self.modules[mi] else { return };
        self.store.host_add(r, std::mem::take(&mut self.restarts[mi]) as i64);
        self.store.host_add(g, memory as i64 - self.memory[mi] as i64);
        self.memory[mi] = memory;
    }
}

/// One root context's proxy_on_tick timer (a boxed nginx event: its address must not move
/// while it is in nginx's timer tree).
struct Tick {
    ev: ngx_event_t,
    period: ngx_msec_t,
    /// The filter definition (index into MainConf::filters) whose root context ticks.
    fi: usize,
}

impl Worker {
    fn new(conf: &'static MainConf) -> Worker {
        Worker {
            conf,
            instances: conf.modules.iter().map(|_| None).collect(),
            generations: vec![0; conf.modules.len()],
            poisoned: vec![false; conf.modules.len()],
            backoff: vec![Backoff::default(); conf.modules.len()],
            roots: vec![None; conf.filters.len()],
            filter_module: conf.filters.iter().map(|f| f.module).collect(),
            labels: conf.modules.iter().map(|m| std::rc::Rc::from(m.name.as_str())).collect(),
            ticks: conf.filters.iter().map(|_| None).collect(),
            root_calls: Vec::new(),
            stats: shared_store::process_store().filter(|_| conf.filter_metrics == Some(true)).map(|store| Stats {
                store,
                filters: conf.filters.iter().map(|_| None).collect(),
                modules: vec![None; conf.modules.len()],
                restarts: vec![0; conf.modules.len()],
                memory: vec![0; conf.modules.len()],
            }),
        }
    }

    /// Adds module `mi`'s figures gathered since the last flush to the shared zone.
    fn flush_module(&mut self, mi: usize) {
        let conf = self.conf;
        let Some(st) = self.stats.as_mut() else { return };
        let memory = match self.instances[mi].as_mut() {
            Some(inst) => {
                for (root, cs) in inst.take_stats() {
                    let fi = (0..self.roots.len()).find(|&fi| self.filter_module[fi] == mi && self.roots[fi] == Some(root));
                    if let (Some(fi), false) = (fi, cs.is_empty()) {
                        st.add_filter(conf, fi, &cs);
                    }
                }
                inst.memory_bytes()
            }
            None => 0,
        };
        st.set_module(conf, mi, memory);
    }

    /// Adds every figure gathered since the last flush to the shared zone.
    pub fn flush_stats(&mut self) {
        if self.stats.is_some() {
            for mi in 0..self.instances.len() {
                self.flush_module(mi);
            }
        }
    }

    /// At exit: flushes, and takes this worker's instances out of the memory gauge.
    fn retire_stats(&mut self) {
        self.flush_stats();
        let conf = self.conf;
        if let Some(st) = self.stats.as_mut() {
            for mi in 0..conf.modules.len() {
                st.set_module(conf, mi, 0);
            }
        }
    }

    /// (Re)creates module `mi`'s instance and the root contexts of its filters.
    fn start_module(&mut self, mi: usize) {
        let conf = self.conf;
        let m = &conf.modules[mi];
        // What the old instance ran is counted before it goes.
        self.flush_module(mi);
        self.instances[mi] = None;
        self.generations[mi] += 1;
        self.poisoned[mi] = false;
        for (fi, f) in conf.filters.iter().enumerate() {
            if f.module == mi {
                self.roots[fi] = None;
                self.set_tick(fi, 0);
            }
        }
        let Some(compiled) = m.compiled.as_ref() else { return };
        let logger = Box::new(CycleLogger { label: m.name.clone() });
        let mut inst = match PluginInstance::new(compiled, &m.name, m.vm_config.clone(), logger, &conf.limits()) {
            Ok(i) => i,
            Err(e) => {
                crate::ngx_log::cycle_error(&format!(
                    "[proxy_wasm] {}: cannot start in this worker: {e}; its filters fail requests with 500",
                    m.name
                ));
                return;
            }
        };
        inst.set_call_policy(crate::call_policy::for_module(conf, mi));
        inst.set_stats(self.stats.is_some());
        for (fi, f) in conf.filters.iter().enumerate().filter(|(_, f)| f.module == mi) {
            match inst.create_root_context(Some(f.config.clone())) {
                Ok(id) => self.roots[fi] = Some(id),
                Err(e) => crate::ngx_log::cycle_error(&format!(
                    "[proxy_wasm] {}: filter {} failed to start in this worker: {e}; it fails requests with 500",
                    m.name, f.origin
                )),
            }
        }
        self.instances[mi] = Some(inst);
        self.apply_ticks(mi);
        let calls = self.take_root_calls(mi);
        self.root_calls.extend(calls);
    }

    /// HTTP calls module `mi`'s root contexts made in the last callback: (filter
    /// definition, generation, call).
    pub fn take_root_calls(&mut self, mi: usize) -> Vec<(usize, u64, HttpCallRequest)> {
        let generation = self.generations[mi];
        let Some(inst) = self.instances[mi].as_mut() else { return Vec::new() };
        if !inst.has_http_calls() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut orphans = Vec::new();
        for c in inst.take_http_calls() {
            let fi = (0..self.roots.len()).find(|&fi| self.filter_module[fi] == mi && self.roots[fi] == Some(c.context_id));
            match fi {
                Some(fi) => out.push((fi, generation, c)),
                None => orphans.push(c.token),
            }
        }
        inst.forget_http_calls(&orphans);
        out
    }

    /// Applies the tick periods module `mi`'s root contexts set during the last callback.
    pub fn apply_ticks(&mut self, mi: usize) {
        let Some(inst) = self.instances[mi].as_mut() else { return };
        for (root, ms) in inst.take_tick_changes() {
            let fi = (0..self.roots.len()).find(|&fi| self.filter_module[fi] == mi && self.roots[fi] == Some(root));
            if let Some(fi) = fi {
                self.set_tick(fi, ms);
            }
        }
    }

    /// Starts, re-periods or (ms = 0) stops filter `fi`'s tick timer.
    fn set_tick(&mut self, fi: usize, ms: u32) {
        if ms == 0 {
            if let Some(mut t) = self.ticks[fi].take() {
                // SAFETY: the event is ours and, if armed, in nginx's timer tree; removing it
                // before the Box is freed keeps the tree free of dangling nodes.
                unsafe {
                    if t.ev.timer_set() != 0 {
                        ngx_del_timer(&mut t.ev);
                    }
                }
            }
            return;
        }
        let t = self.ticks[fi].get_or_insert_with(|| {
            // SAFETY: ngx_cycle is valid in a worker. Cancelable: graceful shutdown does
            // not wait for our ticks.
            let ev = crate::timer_event::new(tick_handler, unsafe { (*ngx_cycle).log });
            Box::new(Tick { ev, period: 0, fi })
        });
        t.period = ms as ngx_msec_t;
        // SAFETY: the event lives in a Box owned by the worker until set_tick(fi, 0).
        unsafe { ngx_add_timer(&mut t.ev, t.period) };
    }

    fn stop_ticks(&mut self) {
        for fi in 0..self.ticks.len() {
            self.set_tick(fi, 0);
        }
    }

    /// A trapped instance may hold broken state (an SDK's RefCell left borrowed, a half-done
    /// allocation): it never serves another callback. New requests get a fresh instance.
    pub fn poison(&mut self, mi: usize) {
        self.poisoned[mi] = true;
    }

    /// Replaces the instance of `mi` if it was poisoned. Called when a request starts.
    pub fn ensure_fresh(&mut self, mi: usize) {
        if !self.poisoned[mi] || !self.backoff[mi].may_restart() {
            return;
        }
        crate::ngx_log::cycle_error(&format!(
            "[proxy_wasm] {}: replacing the instance after a failure (root contexts start again)",
            self.labels[mi]
        ));
        if let Some(st) = self.stats.as_mut() {
            st.restarts[mi] += 1;
        }
        self.start_module(mi);
    }

    /// The instance for a context created at `generation`, if it is still that instance.
    pub fn instance_for(&mut self, mi: usize, generation: u64) -> Option<&mut PluginInstance> {
        if self.generations[mi] != generation || self.poisoned[mi] {
            return None;
        }
        self.instances[mi].as_mut()
    }
}

/// Restart policy of a failing module: up to 3 immediate restarts per second; past that a
/// delay of 0.1 s doubling up to 10 s, so that a plugin that traps on every request cannot
/// spend the worker's CPU on restarts (its filters fail as configured meanwhile). A quiet
/// second resets it.
#[derive(Clone)]
pub(crate) struct Backoff {
    window_start: Instant,
    restarts: u32,
    delay: Duration,
    not_before: Instant,
}

impl Default for Backoff {
    fn default() -> Backoff {
        let now = Instant::now();
        Backoff { window_start: now, restarts: 0, delay: Duration::ZERO, not_before: now }
    }
}

impl Backoff {
    pub(crate) fn may_restart(&mut self) -> bool {
        let now = Instant::now();
        if now < self.not_before {
            return false;
        }
        if now.duration_since(self.window_start) > Duration::from_secs(1) {
            self.window_start = now;
            self.restarts = 0;
            if now.duration_since(self.not_before) > Duration::from_secs(1) {
                self.delay = Duration::ZERO;
            }
        }
        self.restarts += 1;
        if self.restarts > 3 {
            self.delay = (self.delay * 2).clamp(Duration::from_millis(100), Duration::from_secs(10));
            self.not_before = now + self.delay;
        }
        true
    }
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

/// The effective uid of the process that loads configurations (the master, or the single
/// process): the only owner wasm_compile_cache trusts, also in workers that run as another
/// user. u32::MAX until a configuration is loaded.
static MASTER_UID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

/// Records this process (one that loads configurations) as the master.
pub(crate) fn note_master_uid() {
    MASTER_UID.store(proxy_wasm_host::cache::effective_uid(), std::sync::atomic::Ordering::Relaxed);
}

/// How this process may use wasm_compile_cache: trust what the master's user owns, and
/// write only from the master (or the single process), never from a worker.
pub(crate) fn cache_policy() -> proxy_wasm_host::CachePolicy {
    let uid = match MASTER_UID.load(std::sync::atomic::Ordering::Relaxed) {
        u32::MAX => proxy_wasm_host::cache::effective_uid(),
        uid => uid,
    };
    // SAFETY: ngx_process is a plain global nginx sets before any module code runs.
    let p = unsafe { ngx_process } as u32;
    proxy_wasm_host::CachePolicy { owner: uid, write: p == NGX_PROCESS_SINGLE || p == NGX_PROCESS_MASTER }
}

pub(crate) unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    crate::guard("postconfiguration", NGX_ERROR as ngx_int_t, || {
        // Configurations are loaded by the master (or the single process) only.
        note_master_uid();
        let Some(mcf) = Module::main_conf_mut(&*cf) else { return NGX_ERROR as ngx_int_t };
        if let Err(msg) = crate::call_policy::resolve(mcf) {
            emerg(cf, &msg);
            return NGX_ERROR as ngx_int_t;
        }
        // The Lua path's engine, now with the final wasm_max_* limits.
        crate::lua_ffi::set_vm(mcf.lua_engine());
        crate::lua_ffi::set_cache_dir(mcf.cache_dir.clone());
        if mcf.filters.is_empty() && mcf.modules.is_empty() {
            // `wasm_vm` alone: plugins come from Lua (resty.proxy-wasm); they get the shared
            // zone for shared data, queues and metrics too.
            if mcf.compiler.is_some() && ngx_process != NGX_PROCESS_SIGNALLER as ngx_uint_t {
                if let Err(msg) = crate::shm::add_zone(cf, mcf) {
                    emerg(cf, &msg);
                    return NGX_ERROR as ngx_int_t;
                }
            }
            return NGX_OK as ngx_int_t;
        }
        if !push_phase_handler(cf, ngx_http_phases_NGX_HTTP_ACCESS_PHASE, Some(crate::access::access_handler))
            || !push_phase_handler(cf, ngx_http_phases_NGX_HTTP_LOG_PHASE, Some(crate::log_phase::log_handler))
        {
            return NGX_ERROR as ngx_int_t;
        }
        crate::filters::install();
        crate::body::install();
        // The `nginx -s` signaller parses the configuration too: it must not compile or run
        // anything. `nginx -t`, start and reload do.
        if ngx_process == NGX_PROCESS_SIGNALLER as ngx_uint_t {
            return NGX_OK as ngx_int_t;
        }
        if let Err(msg) = crate::http_call::create_location(cf, mcf) {
            emerg(cf, &format!("proxy_wasm: {msg}"));
            return NGX_ERROR as ngx_int_t;
        }
        if let Err(msg) = crate::shm::add_zone(cf, mcf) {
            emerg(cf, &msg);
            return NGX_ERROR as ngx_int_t;
        }
        crate::shm::install_check_store(mcf);
        let loaded = load(mcf);
        proxy_wasm_host::shared_store::set_process_store(None);
        match loaded {
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
    let limits = mcf.limits();
    let engine = proxy_wasm_host::new_engine(compiler, &limits)?;
    let mut policies: Vec<_> = (0..mcf.modules.len()).map(|mi| crate::call_policy::for_module(mcf, mi)).collect();
    let filters = &mcf.filters;
    let mcf_cache = mcf.cache_dir.clone();
    let policy = cache_policy();
    for (mi, m) in mcf.modules.iter_mut().enumerate() {
        let (compiled, cached) = proxy_wasm_host::compile_cached(&engine, &m.bytes, mcf_cache.as_deref(), policy)
            .map_err(|e| format!("wasm_module \"{}\": \"{}\" {} {}", m.name, m.path, e, m.origin))?;
        if let proxy_wasm_host::CacheOutcome::Miss(why) = cached {
            crate::ngx_log::cycle_warn(&format!("wasm_compile_cache: {why}; \"{}\" compiled without the cache", m.path));
        }
        let logger = Box::new(CycleLogger { label: m.name.clone() });
        let mut inst = PluginInstance::new(&compiled, &m.name, m.vm_config.clone(), logger, &limits)
            .map_err(|e| format!("wasm_module \"{}\": {} {}", m.name, e, m.origin))?;
        inst.set_call_policy(policies.remove(0));
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

pub(crate) unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    crate::guard("init_process", NGX_OK as ngx_int_t, || {
        let Some(mcf) = Module::main_conf(&*cycle) else { return NGX_OK as ngx_int_t };
        // This cycle's Lua engine (a rejected reload may have left the master's another).
        crate::lua_ffi::set_vm(mcf.lua_engine());
        crate::lua_ffi::set_cache_dir(mcf.cache_dir.clone());
        crate::shm::install_worker_store(mcf);
        if !mcf.loaded {
            return NGX_OK as ngx_int_t;
        }
        let t0 = std::time::Instant::now();
        let mut w = Worker::new(mcf);
        let mut started = 0;
        for mi in 0..mcf.modules.len() {
            // Modules no filter uses are not instantiated in workers.
            if mcf.filters.iter().any(|f| f.module == mi) {
                w.start_module(mi);
                started += 1;
            }
        }
        let msg = format!(
            "[proxy_wasm] worker ready: {started} module(s), {} filter(s) started in {} us",
            mcf.filters.len(),
            t0.elapsed().as_micros()
        );
        ngx::log::log_error(NGX_LOG_NOTICE as ngx_uint_t, (*cycle).log, 0, msg.as_bytes());
        WORKER.with(|s| *s.borrow_mut() = Some(w));
        flush_root_calls();
        crate::queue_poll::start();
        NGX_OK as ngx_int_t
    })
}

pub(crate) unsafe extern "C" fn exit_process(_cycle: *mut ngx_cycle_t) {
    crate::guard("exit_process", (), || {
        let _ = WORKER.try_with(|s| {
            if let Some(mut w) = s.borrow_mut().take() {
                w.retire_stats();
                w.stop_ticks();
            }
        });
        crate::root_calls::drop_all();
        crate::queue_poll::stop();
    })
}

/// A root context's tick: proxy_on_tick, then the next tick unless the worker is exiting.
unsafe extern "C" fn tick_handler(ev: *mut ngx_event_t) {
    crate::guard("tick", (), || {
        // SAFETY: nginx hands back the event of a live Tick (set_tick removes it from the
        // timer tree before the Box goes).
        let fi = (*crate::timer_event::owner::<Tick>(ev, std::mem::offset_of!(Tick, ev))).fi;
        let _ = WORKER.try_with(|s| {
            let Ok(mut w) = s.try_borrow_mut() else { return };
            let Some(w) = w.as_mut() else { return };
            tick(w, fi);
        });
        flush_root_calls();
    })
}

/// Flushes this worker's per-filter figures (before a scrape it serves).
pub(crate) fn flush_stats() {
    let _ = WORKER.try_with(|s| {
        if let Ok(mut w) = s.try_borrow_mut() {
            if let Some(w) = w.as_mut() {
                w.flush_stats();
            }
        }
    });
}

/// Sends the HTTP calls root contexts made (outside any borrow of the worker state: a call
/// that fails at once is answered from a timer, but never re-entrantly).
pub(crate) fn flush_root_calls() {
    let calls = WORKER
        .try_with(|s| {
            let Ok(mut w) = s.try_borrow_mut() else { return Vec::new() };
            w.as_mut().map(|w| std::mem::take(&mut w.root_calls)).unwrap_or_default()
        })
        .unwrap_or_default();
    if !calls.is_empty() {
        crate::root_calls::send(calls);
    }
}

unsafe fn tick(w: &mut Worker, fi: usize) {
    let mi = w.filter_module[fi];
    let (Some(root), false) = (w.roots[fi], w.poisoned[mi]) else {
        w.set_tick(fi, 0);
        return;
    };
    let Some(inst) = w.instances[mi].as_mut() else { return };
    if let Err(e) = inst.on_tick(root) {
        crate::ngx_log::cycle_error(&format!("[proxy_wasm] {}: {e}", w.labels[mi]));
        w.poison(mi);
        w.set_tick(fi, 0);
        return;
    }
    w.apply_ticks(mi);
    let calls = w.take_root_calls(mi);
    w.root_calls.extend(calls);
    if ngx_exiting != 0 || ngx_quit != 0 {
        w.set_tick(fi, 0);
        return;
    }
    if let Some(t) = w.ticks[fi].as_mut() {
        if t.ev.timer_set() == 0 {
            ngx_add_timer(&mut t.ev, t.period);
        }
    }
}
