//! This worker's share of the per-filter and per-module metrics (proxy_wasm_filter_metrics).

use std::sync::Arc;

use proxy_wasm_host::shared_store::{self, MetricKind, SharedStore};
use proxy_wasm_host::{CallStats, FailureKind};

use super::worker::{with_worker, Worker};
use crate::conf::MainConf;

/// This worker's share of the per-filter and per-module metrics. Callbacks add to plain
/// integers in their instance (`PluginInstance::take_stats`); `flush_stats` adds them to the
/// shared zone's host metrics every queue-poll period (100 ms), before a scrape this worker
/// serves, before an instance is replaced, and at exit. No shared-memory write per callback.
pub(super) struct Stats {
    store: Arc<SharedStore>,
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

impl Stats {
    /// The figures of this worker, when proxy_wasm_filter_metrics is on and there is a zone.
    pub(super) fn new(conf: &MainConf) -> Option<Stats> {
        shared_store::process_store().filter(|_| conf.filter_metrics.get(false)).map(|store| Stats {
            store,
            filters: conf.filters.iter().map(|_| None).collect(),
            modules: vec![None; conf.modules.len()],
            restarts: vec![0; conf.modules.len()],
            memory: vec![0; conf.modules.len()],
        })
    }
}

impl Worker {
    /// Adds module `mi`'s figures gathered since the last flush to the shared zone.
    pub(super) fn flush_module(&mut self, mi: usize) {
        let conf = self.conf;
        if self.stats.is_none() {
            return;
        }
        let (figures, memory) = match self.slots[mi].any() {
            Some(inst) => (inst.take_stats(), inst.memory_bytes()),
            None => (Vec::new(), 0),
        };
        let figures: Vec<_> = figures.into_iter().filter_map(|(root, cs)| Some((self.filter_of_root(mi, root)?, cs))).collect();
        let Some(st) = self.stats.as_mut() else { return };
        for (fi, cs) in figures.iter().filter(|(_, cs)| !cs.is_empty()) {
            st.add_filter(conf, *fi, cs);
        }
        st.set_module(conf, mi, memory);
    }

    /// Adds every figure gathered since the last flush to the shared zone.
    pub fn flush_stats(&mut self) {
        if self.stats.is_some() {
            for mi in 0..self.slots.len() {
                self.flush_module(mi);
            }
        }
    }

    /// At exit: flushes, and takes this worker's instances out of the memory gauge.
    pub(super) fn retire_stats(&mut self) {
        self.flush_stats();
        let conf = self.conf;
        if let Some(st) = self.stats.as_mut() {
            for mi in 0..conf.modules.len() {
                st.set_module(conf, mi, 0);
            }
        }
    }

    /// (Re)creates module `mi`'s instance and the root contexts of its filters.

    /// Counts a restart of module `mi`'s instance.
    pub(super) fn count_restart(&mut self, mi: usize) {
        if let Some(st) = self.stats.as_mut() {
            st.restarts[mi] += 1;
        }
    }
}

/// Flushes this worker's per-filter figures (before a scrape it serves).
pub(crate) fn flush_stats() {
    with_worker(|w| w.flush_stats());
}
