//! The per-worker state: one instance slot per module, one root context per `proxy_wasm`, and
//! what root-context callbacks leave behind (tick periods, HTTP calls).

use std::cell::RefCell;

use proxy_wasm_host::{HostError, HttpCallRequest, PluginInstance};

use super::slot::InstanceSlot;
use super::stats::Stats;
use super::ticks::Tick;
use crate::conf::MainConf;
use crate::util::log::CycleLogger;

/// Per-worker state: one instance per module, one root context per `proxy_wasm`.
pub(crate) struct Worker {
    pub(super) conf: &'static MainConf,
    /// Indexed like MainConf::modules.
    pub slots: Vec<InstanceSlot>,
    /// Indexed like MainConf::filters: the root context id in its module's instance.
    pub roots: Vec<Option<u32>>,
    /// Indexed like MainConf::filters: the module index.
    pub filter_module: Vec<usize>,
    /// Indexed like MainConf::filters: the root context's tick timer, when it set a period.
    pub(super) ticks: Vec<Option<Box<Tick>>>,
    /// HTTP calls root contexts made, to send once the worker state is free:
    /// (filter definition, generation, call).
    pub root_calls: Vec<(usize, u64, HttpCallRequest)>,
    /// The per-filter figures (proxy_wasm_filter_metrics on, and a shared zone); None when off.
    pub(super) stats: Option<Stats>,
}

thread_local! {
    // nginx runs all request handling of a worker on one thread.
    pub(crate) static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

/// Runs `f` on this worker's state, unless there is none or it is in use (a re-entrant call).
pub(crate) fn with_worker<R>(f: impl FnOnce(&mut Worker) -> R) -> Option<R> {
    WORKER
        .try_with(|s| {
            let Ok(mut w) = s.try_borrow_mut() else { return None };
            w.as_mut().map(f)
        })
        .ok()
        .flatten()
}

impl Worker {
    pub(super) fn new(conf: &'static MainConf) -> Worker {
        Worker {
            conf,
            slots: conf.modules.iter().map(|m| InstanceSlot::new(&m.name)).collect(),
            roots: vec![None; conf.filters.len()],
            filter_module: conf.filters.iter().map(|f| f.module).collect(),
            ticks: conf.filters.iter().map(|_| None).collect(),
            root_calls: Vec::new(),
            stats: Stats::new(conf),
        }
    }

    /// (Re)creates module `mi`'s instance and the root contexts of its filters.
    pub(super) fn start_module(&mut self, mi: usize) {
        let conf = self.conf;
        let m = &conf.modules[mi];
        // What the old instance ran is counted before it goes.
        self.flush_module(mi);
        self.slots[mi].reset();
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
                crate::util::log::cycle_error(&format!(
                    "[proxy_wasm] {}: cannot start in this worker: {e}; its filters fail requests with 500",
                    m.name
                ));
                return;
            }
        };
        crate::conf::call_policy::install(&mut inst, crate::conf::call_policy::policy(conf, mi));
        inst.set_stats(self.stats.is_some());
        for (fi, f) in conf.filters.iter().enumerate().filter(|(_, f)| f.module == mi) {
            match inst.create_root_context(Some(f.config.clone())) {
                Ok(id) => self.roots[fi] = Some(id),
                Err(e) => crate::util::log::cycle_error(&format!(
                    "[proxy_wasm] {}: filter {} failed to start in this worker: {e}; it fails requests with 500",
                    m.name, f.origin
                )),
            }
        }
        self.slots[mi].set(inst);
        self.after_root_callback(mi);
    }

    /// The filter definition whose root context in module `mi` is `root`.
    pub(super) fn filter_of_root(&self, mi: usize, root: u32) -> Option<usize> {
        (0..self.roots.len()).find(|&fi| self.filter_module[fi] == mi && self.roots[fi] == Some(root))
    }

    /// Runs a root-context callback of module `mi` (a tick, a call response, a queue poll)
    /// on its live instance, then the one epilogue every such callback needs: a failure
    /// poisons the instance; otherwise the tick periods it set take effect and the calls it
    /// made are queued (see `flush_root_calls`). None when there is no live instance.
    pub(crate) fn run_root(&mut self, mi: usize, f: impl FnOnce(&mut PluginInstance) -> Result<(), HostError>) -> Option<Result<(), ()>> {
        let slot = &mut self.slots[mi];
        let inst = slot.live()?;
        if let Err(e) = f(inst) {
            crate::util::log::cycle_error(&format!("[proxy_wasm] {}: {e}", slot.label));
            slot.poison();
            return Some(Err(()));
        }
        self.after_root_callback(mi);
        Some(Ok(()))
    }

    /// After any callback of module `mi`: applies the tick periods its root contexts set and
    /// queues the HTTP calls they made.
    pub(crate) fn after_root_callback(&mut self, mi: usize) {
        self.apply_ticks(mi);
        let calls = self.take_root_calls(mi);
        self.root_calls.extend(calls);
        #[cfg(feature = "http")]
        self.cancel_root_grpc(mi);
    }

    /// gRPC calls module `mi`'s root contexts cancelled in the last callback: stopped.
    #[cfg(feature = "http")]
    fn cancel_root_grpc(&mut self, mi: usize) {
        let generation = self.slots[mi].generation();
        if let Some(inst) = self.slots[mi].any() {
            let tokens = inst.take_grpc_cancels();
            if !tokens.is_empty() {
                let fis: Vec<usize> = (0..self.filter_module.len()).filter(|&fi| self.filter_module[fi] == mi).collect();
                crate::vm::root_calls::cancel(&fis, generation, &tokens);
            }
        }
    }

    /// HTTP calls module `mi`'s root contexts made in the last callback.
    fn take_root_calls(&mut self, mi: usize) -> Vec<(usize, u64, HttpCallRequest)> {
        let generation = self.slots[mi].generation();
        let Some(inst) = self.slots[mi].any() else { return Vec::new() };
        if !inst.has_http_calls() {
            return Vec::new();
        }
        let calls = inst.take_http_calls();
        let mut out = Vec::new();
        let mut orphans = Vec::new();
        for c in calls {
            match self.filter_of_root(mi, c.context_id) {
                Some(fi) => out.push((fi, generation, c)),
                None => orphans.push(c.token),
            }
        }
        if let Some(inst) = self.slots[mi].any() {
            inst.forget_http_calls(&orphans);
        }
        out
    }

    /// Applies the tick periods module `mi`'s root contexts set during the last callback.
    fn apply_ticks(&mut self, mi: usize) {
        let Some(inst) = self.slots[mi].any() else { return };
        for (root, ms) in inst.take_tick_changes() {
            if let Some(fi) = self.filter_of_root(mi, root) {
                self.set_tick(fi, ms);
            }
        }
    }

    /// Replaces the instance of `mi` if it failed (and the back-off allows). Called when a
    /// request starts.
    pub fn ensure_fresh(&mut self, mi: usize) {
        if !self.slots[mi].wants_restart(false) {
            return;
        }
        crate::util::log::cycle_error(&format!(
            "[proxy_wasm] {}: replacing the instance after a failure (root contexts start again)",
            self.slots[mi].label
        ));
        self.count_restart(mi);
        self.start_module(mi);
    }
}

/// Sends the HTTP calls root contexts made (outside any borrow of the worker state: a call
/// that fails at once is answered from a timer, but never re-entrantly).
pub(crate) fn flush_root_calls() {
    let calls = with_worker(|w| std::mem::take(&mut w.root_calls)).unwrap_or_default();
    if !calls.is_empty() {
        #[cfg(feature = "http")]
        super::root_calls::send(calls);
    }
}
