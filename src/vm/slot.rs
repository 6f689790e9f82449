//! One module's instance in this process and its lifecycle, the same for native filters (one
//! slot per module per worker) and plugins loaded from Lua (one per plugin): the generation
//! contexts were created in, the mark of a failed instance, and the restart back-off.

use std::rc::Rc;
use std::time::{Duration, Instant};

use proxy_wasm_host::PluginInstance;

pub(crate) struct InstanceSlot {
    /// The module (or Lua plugin) name, for log lines.
    pub label: Rc<str>,
    instance: Option<PluginInstance>,
    /// Bumped each time the instance is replaced, so that contexts created in an older
    /// instance are never passed to the new one.
    generation: u64,
    /// The instance failed (trap, CPU budget, memory): it may hold broken state (an SDK's
    /// RefCell left borrowed, a half-done allocation) and never serves another callback.
    poisoned: bool,
    backoff: Backoff,
}

impl InstanceSlot {
    pub(crate) fn new(label: &str) -> InstanceSlot {
        InstanceSlot { label: Rc::from(label), instance: None, generation: 0, poisoned: false, backoff: Backoff::default() }
    }

    /// Drops the instance before a (re)start: contexts of the old one are void from now on.
    pub(crate) fn reset(&mut self) {
        self.instance = None;
        self.generation += 1;
        self.poisoned = false;
    }

    /// Installs the instance just started.
    pub(crate) fn set(&mut self, inst: PluginInstance) {
        self.instance = Some(inst);
    }

    pub(crate) fn poison(&mut self) {
        self.poisoned = true;
    }

    pub(crate) fn poisoned(&self) -> bool {
        self.poisoned
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether to start a fresh instance now: the instance failed (or, with `missing`, there
    /// is none) and the back-off allows a restart.
    pub(crate) fn wants_restart(&mut self, missing: bool) -> bool {
        (self.poisoned || (missing && self.instance.is_none())) && self.backoff.may_restart()
    }

    /// The instance for a context created at `generation`, if it is still that instance and
    /// has not failed.
    pub(crate) fn get(&mut self, generation: u64) -> Option<&mut PluginInstance> {
        if self.generation != generation || self.poisoned {
            return None;
        }
        self.instance.as_mut()
    }

    /// The current instance, if it has not failed.
    pub(crate) fn live(&mut self) -> Option<&mut PluginInstance> {
        if self.poisoned {
            return None;
        }
        self.instance.as_mut()
    }

    /// The current instance even if it failed: for its figures, never to run it.
    pub(crate) fn any(&mut self) -> Option<&mut PluginInstance> {
        self.instance.as_mut()
    }
}

/// Restart policy of a failing module: up to 3 immediate restarts per second; past that a
/// delay of 0.1 s doubling up to 10 s, so that a plugin that traps on every request cannot
/// spend the worker's CPU on restarts (its filters fail as configured meanwhile). A quiet
/// second resets it.
#[derive(Clone)]
struct Backoff {
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
    fn may_restart(&mut self) -> bool {
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
