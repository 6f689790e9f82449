//! One plugin instance (a module instantiated in one process), its root and HTTP contexts,
//! and the callback lifecycle:
//! `_initialize`/`main` (or `_start`) → per root: on_context_create(root, 0), on_vm_start,
//! on_configure → per request: on_context_create(ctx, root), on_request_headers,
//! on_response_headers, on_done, on_log, on_delete.
//! Callbacks a module does not export are never called: they resolve to `None` once here.

use std::fmt;
use std::ptr::NonNull;

use wasmer::{FunctionEnv, Instance, RuntimeError, Store, TypedFunction};

use crate::abi::{AbiVersion, Action};
use crate::env::{Callback, CallResponseSlot, CallState, HostEnv, Logger, RootInfo, StreamOps, StreamSlot};
use crate::grpc_call::{GrpcEvent, GrpcKind};
use crate::http_call::{HttpCallRequest, HttpCallResponse};
use crate::hostcalls;
use crate::runtime::CompiledModule;
use crate::stream::{HttpStream, LocalResponse};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    Instantiate(String),
    /// The callback trapped (or proc_exit'ed); the message is wasmer's.
    Trap { callback: &'static str, message: String },
    /// The host panicked during the callback (a bug in a hostcall or in the embedder's
    /// stream): the instance's state is unknown, so it must be dropped like after a trap.
    Panic { callback: &'static str, message: String },
    VmStartFailed,
    ConfigureFailed,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Instantiate(m) => write!(f, "cannot instantiate: {m}"),
            HostError::Trap { callback, message } => write!(f, "{callback} failed: {message}"),
            HostError::Panic { callback, message } => write!(f, "{callback} failed: internal error in the host: {message}"),
            HostError::VmStartFailed => write!(f, "proxy_on_vm_start returned false"),
            HostError::ConfigureFailed => write!(f, "proxy_on_configure returned false"),
        }
    }
}

/// What a stream callback decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub action: Action,
    pub local_response: Option<LocalResponse>,
    /// Stream control the plugin asked for during the callback.
    pub ops: StreamOps,
}

impl Outcome {
    pub const CONTINUE: Outcome = Outcome { action: Action::Continue, local_response: None, ops: StreamOps::NONE };
}

/// What one callback left behind besides its return value.
struct After {
    local_response: Option<LocalResponse>,
    ops: StreamOps,
    done_called: bool,
}

/// 0.1.0 header callbacks have no end_of_stream argument.
enum HeadersFn {
    V1(TypedFunction<(i32, i32), i32>),
    V2(TypedFunction<(i32, i32, i32), i32>),
}

impl HeadersFn {
    fn call(&self, store: &mut Store, ctx: u32, n: u32, eos: bool) -> Result<i32, RuntimeError> {
        match self {
            HeadersFn::V1(f) => f.call(store, ctx as i32, n as i32),
            HeadersFn::V2(f) => f.call(store, ctx as i32, n as i32, eos as i32),
        }
    }
}

struct Callbacks {
    context_create: Option<TypedFunction<(i32, i32), ()>>,
    vm_start: Option<TypedFunction<(i32, i32), i32>>,
    configure: Option<TypedFunction<(i32, i32), i32>>,
    request_headers: Option<HeadersFn>,
    request_body: Option<TypedFunction<(i32, i32, i32), i32>>,
    response_headers: Option<HeadersFn>,
    response_body: Option<TypedFunction<(i32, i32, i32), i32>>,
    response_trailers: Option<TypedFunction<(i32, i32), i32>>,
    done: Option<TypedFunction<i32, i32>>,
    tick: Option<TypedFunction<i32, ()>>,
    http_call_response: Option<TypedFunction<(i32, i32, i32, i32, i32), ()>>,
    queue_ready: Option<TypedFunction<(i32, i32), ()>>,
    log: Option<TypedFunction<i32, ()>>,
    delete: Option<TypedFunction<i32, ()>>,
    new_connection: Option<TypedFunction<i32, i32>>,
    downstream_data: Option<TypedFunction<(i32, i32, i32), i32>>,
    upstream_data: Option<TypedFunction<(i32, i32, i32), i32>>,
    downstream_close: Option<TypedFunction<(i32, i32), ()>>,
    upstream_close: Option<TypedFunction<(i32, i32), ()>>,
    grpc_initial_metadata: Option<TypedFunction<(i32, i32, i32), ()>>,
    grpc_receive: Option<TypedFunction<(i32, i32, i32), ()>>,
    grpc_trailing_metadata: Option<TypedFunction<(i32, i32, i32), ()>>,
    grpc_close: Option<TypedFunction<(i32, i32, i32), ()>>,
}

/// Which stream callbacks the module exports, so an embedder can skip whole phases.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exports {
    pub request_headers: bool,
    pub request_body: bool,
    pub response_headers: bool,
    pub response_body: bool,
    pub response_trailers: bool,
    pub log: bool,
    pub downstream_data: bool,
    pub upstream_data: bool,
}

pub struct PluginInstance {
    store: Store,
    /// The host state of the store's one FunctionEnv (see `host`).
    host: NonNull<HostEnv>,
    cb: Callbacks,
    abi: AbiVersion,
    next_id: u32,
    /// The metering globals and the per-callback budget, when a CPU budget is set.
    budget: Option<Budget>,
    /// What each root context's callbacks cost since the embedder last took it (see
    /// `take_stats`); None (the default) unless the embedder turned the figures on.
    stats: Option<Vec<(u32, CallStats)>>,
    /// wasm_max_memory, to tell a failure at the memory cap.
    max_memory: u64,
}

/// The callback clock: two `Instant::now()` per callback cost about 70 ns in a VM (the
/// vDSO's clock read), more than the rest of the accounting; the CPU's invariant time-stamp
/// counter costs about 10. Calibrated against `Instant` once per process (2 ms), when the
/// figures are first turned on; `Instant` where there is no invariant TSC.
mod clock {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    /// Nanoseconds per tick, or None: use Instant.
    static NS_PER_TICK: OnceLock<Option<f64>> = OnceLock::new();

    #[cfg(target_arch = "x86_64")]
    fn tsc() -> Option<u64> {
        // SAFETY: cpuid and rdtsc exist on every x86_64 CPU and have no side effects.
        unsafe {
            use std::arch::x86_64::{__cpuid, _rdtsc};
            if __cpuid(0x8000_0000).eax < 0x8000_0007 || __cpuid(0x8000_0007).edx & (1 << 8) == 0 {
                return None; // no invariant TSC: its rate may change with the CPU's
            }
            Some(_rdtsc())
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn tsc() -> Option<u64> {
        None
    }

    fn calibrate() -> Option<f64> {
        let (t0, c0) = (Instant::now(), tsc()?);
        while t0.elapsed() < Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        let (ns, c1) = (t0.elapsed().as_nanos() as f64, tsc()?);
        (c1 > c0).then(|| ns / (c1 - c0) as f64)
    }

    /// Calibrates now (outside any callback).
    pub fn init() {
        NS_PER_TICK.get_or_init(calibrate);
    }

    /// A point in time for `since`.
    #[derive(Clone, Copy)]
    pub enum Start {
        #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
        Tsc(u64, f64),
        Std(Instant),
    }

    #[inline]
    pub fn start() -> Start {
        #[cfg(target_arch = "x86_64")]
        if let Some(Some(r)) = NS_PER_TICK.get() {
            // SAFETY: as in tsc(); calibrate() checked that the TSC is invariant.
            return Start::Tsc(unsafe { std::arch::x86_64::_rdtsc() }, *r);
        }
        Start::Std(Instant::now())
    }

    /// Nanoseconds since `s`.
    #[inline]
    pub fn since(s: Start) -> u64 {
        match s {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as in start().
            Start::Tsc(c0, r) => (unsafe { std::arch::x86_64::_rdtsc() }.saturating_sub(c0) as f64 * r) as u64,
            #[cfg(not(target_arch = "x86_64"))]
            Start::Tsc(..) => 0,
            Start::Std(t) => t.elapsed().as_nanos() as u64,
        }
    }
}

/// Why a callback failed, for the per-filter failure counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Any other wasm trap (unreachable, stack exhaustion, division by zero...).
    Trap = 0,
    /// The callback ran out of its CPU budget (wasm_max_instructions).
    CpuBudget = 1,
    /// An out-of-bounds linear-memory access, or a trap with the memory at wasm_max_memory
    /// (an allocator that cannot grow past the cap aborts).
    Memory = 2,
    /// The plugin called WASI proc_exit.
    ProcExit = 3,
    /// The host panicked during the callback (a host bug; the instance is dropped).
    Panic = 4,
}

impl FailureKind {
    pub const ALL: [FailureKind; 5] =
        [FailureKind::Trap, FailureKind::CpuBudget, FailureKind::Memory, FailureKind::ProcExit, FailureKind::Panic];

    /// The `kind` label value.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::CpuBudget => "cpu_budget",
            FailureKind::Memory => "memory",
            FailureKind::ProcExit => "proc_exit",
            FailureKind::Panic => "panic",
        }
    }
}

/// Upper bounds (microseconds) of the callback wall-time histogram buckets; one more bucket
/// counts the rest (+Inf). The shared store's metric histogram bounds, read as microseconds.
pub const DURATION_BOUNDS_US: [u64; 19] = crate::shared_store::HISTOGRAM_BOUNDS;

/// What the callbacks of one root context (its own and its HTTP contexts') cost. Only
/// callbacks the module exports count (the host skips the others).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallStats {
    pub callbacks: u64,
    /// Indexed by `FailureKind as usize`.
    pub failures: [u64; 5],
    /// Wasm operators executed (from the metering middleware: 0 without a CPU budget).
    pub instructions: u64,
    /// Wall time of the callbacks, nanoseconds, and the histogram of it (per bucket, not
    /// cumulative; bounds DURATION_BOUNDS_US, the last one +Inf).
    pub nanos: u64,
    pub buckets: [u64; 20],
}

impl CallStats {
    pub fn is_empty(&self) -> bool {
        self.callbacks == 0 && self.failures.iter().all(|&f| f == 0)
    }
}

struct Budget {
    remaining: wasmer::Global,
    exhausted: wasmer::Global,
    points: u64,
    /// `exhausted` may be set: only a failed callback can have set it (the middleware sets it
    /// right before it traps), so it is cleared before the next callback only then. A global
    /// write is a measurable part of an empty callback.
    exhausted_dirty: bool,
}

fn typed<A, R>(instance: &Instance, store: &Store, name: &str) -> Result<Option<TypedFunction<A, R>>, HostError>
where
    A: wasmer::WasmTypeList,
    R: wasmer::WasmTypeList,
{
    if instance.exports.get_function(name).is_err() {
        return Ok(None);
    }
    instance
        .exports
        .get_typed_function(store, name)
        .map(Some)
        .map_err(|e| HostError::Instantiate(format!("export {name} has the wrong signature: {e}")))
}

fn trap(callback: Callback, e: RuntimeError) -> HostError {
    HostError::Trap { callback: callback.export_name(), message: e.message() }
}

impl PluginInstance {
    /// Instantiates `module` (named `name`: plugin_name and plugin_vm_id) and runs its start
    /// functions.
    pub fn new(
        module: &CompiledModule,
        name: &str,
        vm_config: Vec<u8>,
        logger: Box<dyn Logger>,
        limits: &crate::Limits,
    ) -> Result<PluginInstance, HostError> {
        let mut store = Store::new(module.engine.clone());
        let env = FunctionEnv::new(&mut store, HostEnv::new(module.abi, name.to_string(), logger, vm_config));
        let imports = hostcalls::imports(&mut store, &env, &module.module).map_err(HostError::Instantiate)?;
        let instance = Instance::new(&mut store, &module.module, &imports)
            .map_err(|e| HostError::Instantiate(e.to_string()))?;
        let memory = instance
            .exports
            .get_memory("memory")
            .map_err(|e| HostError::Instantiate(format!("memory: {e}")))?
            .clone();
        let alloc = match typed::<i32, i32>(&instance, &store, "proxy_on_memory_allocate")? {
            Some(f) => f,
            None => typed::<i32, i32>(&instance, &store, "malloc")?
                .ok_or_else(|| HostError::Instantiate("exports no allocator".into()))?,
        };
        let headers = |name: &str| -> Result<Option<HeadersFn>, HostError> {
            Ok(if module.abi.headers_have_end_of_stream() {
                typed(&instance, &store, name)?.map(HeadersFn::V2)
            } else {
                typed(&instance, &store, name)?.map(HeadersFn::V1)
            })
        };
        let cb = Callbacks {
            context_create: typed(&instance, &store, "proxy_on_context_create")?,
            vm_start: typed(&instance, &store, "proxy_on_vm_start")?,
            configure: typed(&instance, &store, "proxy_on_configure")?,
            request_headers: headers("proxy_on_request_headers")?,
            request_body: typed(&instance, &store, "proxy_on_request_body")?,
            response_headers: headers("proxy_on_response_headers")?,
            response_body: typed(&instance, &store, "proxy_on_response_body")?,
            response_trailers: typed(&instance, &store, "proxy_on_response_trailers")?,
            done: typed(&instance, &store, "proxy_on_done")?,
            tick: typed(&instance, &store, "proxy_on_tick")?,
            http_call_response: typed(&instance, &store, "proxy_on_http_call_response")?,
            queue_ready: typed(&instance, &store, "proxy_on_queue_ready")?,
            log: typed(&instance, &store, "proxy_on_log")?,
            delete: typed(&instance, &store, "proxy_on_delete")?,
            new_connection: typed(&instance, &store, "proxy_on_new_connection")?,
            downstream_data: typed(&instance, &store, "proxy_on_downstream_data")?,
            upstream_data: typed(&instance, &store, "proxy_on_upstream_data")?,
            downstream_close: typed(&instance, &store, "proxy_on_downstream_connection_close")?,
            upstream_close: typed(&instance, &store, "proxy_on_upstream_connection_close")?,
            grpc_initial_metadata: typed(&instance, &store, "proxy_on_grpc_receive_initial_metadata")?,
            grpc_receive: typed(&instance, &store, "proxy_on_grpc_receive")?,
            grpc_trailing_metadata: typed(&instance, &store, "proxy_on_grpc_receive_trailing_metadata")?,
            grpc_close: typed(&instance, &store, "proxy_on_grpc_close")?,
        };
        let initialize = typed::<(), ()>(&instance, &store, "_initialize")?;
        let main = typed::<(i32, i32), i32>(&instance, &store, "main")?;
        let start = typed::<(), ()>(&instance, &store, "_start")?;
        {
            let data = env.as_mut(&mut store);
            data.memory = Some(memory);
            data.alloc = Some(alloc);
        }
        // The metering middleware exports these two globals from every module it instruments.
        let budget = if limits.max_instructions > 0 {
            match (
                instance.exports.get_global("wasmer_metering_remaining_points"),
                instance.exports.get_global("wasmer_metering_points_exhausted"),
            ) {
                (Ok(r), Ok(e)) => Some(Budget { remaining: r.clone(), exhausted: e.clone(), points: limits.max_instructions, exhausted_dirty: false }),
                _ => return Err(HostError::Instantiate("the CPU budget is not compiled into this module".into())),
            }
        } else {
            None
        };
        let host = NonNull::from(env.as_mut(&mut store));
        let mut inst = PluginInstance {
            store,
            host,
            cb,
            abi: module.abi,
            next_id: 1,
            budget,
            stats: None,
            max_memory: limits.max_memory,
        };
        // A WASI reactor has _initialize (then main, if any); a command has _start.
        if let Some(init) = initialize {
            inst.invoke(Callback::Start, 0, None, |_, st| init.call(st))?;
            if let Some(main) = main {
                inst.invoke(Callback::Start, 0, None, |_, st| main.call(st, 0, 0))?;
            }
        } else if let Some(start) = start {
            inst.invoke(Callback::Start, 0, None, |_, st| start.call(st))?;
        }
        Ok(inst)
    }

    /// Sets what `plugin_root_id` reads (default empty); call it before creating root contexts.
    pub fn set_root_id(&mut self, root_id: &str) {
        self.host_mut().root_id = root_id.to_string();
    }

    /// Installs the embedder's check of HTTP call targets (see `http_call::CallPolicy`).
    pub fn set_call_policy(&mut self, policy: crate::http_call::CallPolicy) {
        self.host_mut().call_policy = Some(policy);
    }

    /// Answers as api7/wasm-nginx-module does where its contract differs from Envoy's (the
    /// OpenResty/APISIX path, whose plugins were written against it): an HTTP call may omit
    /// `:method` and `:path` (the Lua side sends GET and `/`), and `proxy_get_buffer_bytes` on
    /// a body or call-response body is NOT_FOUND when it is empty and BAD_ARGUMENT for a
    /// `start` at or past its end or a `max_size` of 0.
    pub fn set_api7_contract(&mut self) {
        self.host_mut().api7 = true;
    }

    pub fn abi(&self) -> AbiVersion {
        self.abi
    }

    /// Turns the per-root cost figures on or off (off by default: an embedder that never
    /// takes them must not pay for them).
    pub fn set_stats(&mut self, on: bool) {
        if on {
            clock::init();
        }
        if on != self.stats.is_some() {
            self.stats = on.then(Vec::new);
        }
    }

    /// The cost figures gathered since the last take, by root context id.
    pub fn take_stats(&mut self) -> Vec<(u32, CallStats)> {
        match self.stats.as_mut() {
            Some(v) => std::mem::take(v),
            None => Vec::new(),
        }
    }

    /// The size of the instance's linear memory, in bytes.
    pub fn memory_bytes(&self) -> u64 {
        match &self.host().memory {
            Some(m) => m.view(&self.store).data_size(),
            None => 0,
        }
    }

    /// Whether the module exports `callback` (the host runs only those).
    fn exported(&self, callback: Callback) -> bool {
        let cb = &self.cb;
        match callback {
            Callback::ContextCreate => cb.context_create.is_some(),
            Callback::VmStart => cb.vm_start.is_some(),
            Callback::Configure => cb.configure.is_some(),
            Callback::RequestHeaders => cb.request_headers.is_some(),
            Callback::ResponseHeaders => cb.response_headers.is_some(),
            Callback::RequestBody => cb.request_body.is_some(),
            Callback::ResponseBody => cb.response_body.is_some(),
            Callback::ResponseTrailers => cb.response_trailers.is_some(),
            Callback::Tick => cb.tick.is_some(),
            Callback::HttpCallResponse => cb.http_call_response.is_some(),
            Callback::QueueReady => cb.queue_ready.is_some(),
            Callback::Log => cb.log.is_some(),
            Callback::Done => cb.done.is_some(),
            Callback::Delete => cb.delete.is_some(),
            Callback::NewConnection => cb.new_connection.is_some(),
            Callback::DownstreamData => cb.downstream_data.is_some(),
            Callback::UpstreamData => cb.upstream_data.is_some(),
            Callback::DownstreamClose => cb.downstream_close.is_some(),
            Callback::UpstreamClose => cb.upstream_close.is_some(),
            Callback::GrpcReceiveInitialMetadata => cb.grpc_initial_metadata.is_some(),
            Callback::GrpcReceive => cb.grpc_receive.is_some(),
            Callback::GrpcReceiveTrailingMetadata => cb.grpc_trailing_metadata.is_some(),
            Callback::GrpcClose => cb.grpc_close.is_some(),
            Callback::Start | Callback::None => false,
        }
    }

    /// Adds one callback's cost to its root's figures.
    fn record(&mut self, root: u32, nanos: u64, instructions: u64, failure: Option<FailureKind>) {
        let Some(stats) = self.stats.as_mut() else { return };
        // Few roots per instance (one per proxy_wasm of the module): a short scan.
        let i = match stats.iter().position(|(r, _)| *r == root) {
            Some(i) => i,
            None => {
                stats.push((root, CallStats::default()));
                stats.len() - 1
            }
        };
        let s = &mut stats[i].1;
        s.callbacks += 1;
        s.instructions = s.instructions.saturating_add(instructions);
        s.nanos = s.nanos.saturating_add(nanos);
        let b = DURATION_BOUNDS_US.iter().position(|&ub| nanos <= ub * 1000).unwrap_or(DURATION_BOUNDS_US.len());
        s.buckets[b] += 1;
        if let Some(k) = failure {
            s.failures[k as usize] += 1;
        }
    }

    /// Classifies a callback's error (failure path only).
    fn failure_kind(&self, e: &RuntimeError, exhausted: bool) -> FailureKind {
        if exhausted {
            return FailureKind::CpuBudget;
        }
        if e.message().starts_with(crate::hostcalls::PROC_EXIT_MESSAGE) {
            return FailureKind::ProcExit;
        }
        let at_cap = self.max_memory > 0
            && self.memory_bytes() + wasmer::WASM_PAGE_SIZE as u64 > self.max_memory;
        if at_cap || e.clone().to_trap() == Some(wasmer::sys::vm::TrapCode::HeapAccessOutOfBounds) {
            return FailureKind::Memory;
        }
        FailureKind::Trap
    }

    pub fn exports(&self) -> Exports {
        Exports {
            request_headers: self.cb.request_headers.is_some(),
            request_body: self.cb.request_body.is_some(),
            response_headers: self.cb.response_headers.is_some(),
            response_body: self.cb.response_body.is_some(),
            response_trailers: self.cb.response_trailers.is_some(),
            log: self.cb.log.is_some(),
            downstream_data: self.cb.downstream_data.is_some(),
            upstream_data: self.cb.upstream_data.is_some(),
        }
    }

    /// The host state, reached without wasmer's store lookup and type check per access (two
    /// to four per callback).
    fn host(&self) -> &HostEnv {
        // SAFETY: `host` points into the Box that holds the env's data in the store's object
        // list: it lives as long as `self.store`, which `self` owns, and never moves (the Box
        // is never replaced or dropped before the store). Hostcalls reach the same data
        // through wasmer only while a callback runs, inside `invoke_with`'s call of `f`, which
        // borrows `self.store` mutably: no reference made here can be alive then.
        unsafe { self.host.as_ref() }
    }

    fn host_mut(&mut self) -> &mut HostEnv {
        // SAFETY: as `host`; `&mut self` makes this the only reference made here.
        unsafe { self.host.as_mut() }
    }

    fn next_context_id(&mut self) -> u32 {
        let id = self.next_id;
        // Ids are never 0 (0 is "no parent"); wrapping after 4 billion contexts skips live ones.
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.host().contexts.contains_key(&self.next_id) {
                break;
            }
        }
        id
    }

    /// Runs one callback with the call state set, and always clears it afterwards, so the
    /// stream pointer never outlives the borrow it came from.
    fn invoke<R>(
        &mut self,
        callback: Callback,
        context_id: u32,
        stream: Option<&mut dyn HttpStream>,
        f: impl FnOnce(&Callbacks, &mut Store) -> Result<R, RuntimeError>,
    ) -> Result<(R, After), HostError> {
        self.invoke_with(callback, context_id, stream, None, f)
    }

    /// `invoke`, with an HTTP-call response readable by the callback.
    fn invoke_with<R>(
        &mut self,
        callback: Callback,
        context_id: u32,
        stream: Option<&mut dyn HttpStream>,
        response: Option<(&HttpCallResponse, Option<(u32, Vec<u8>)>)>,
        f: impl FnOnce(&Callbacks, &mut Store) -> Result<R, RuntimeError>,
    ) -> Result<(R, After), HostError> {
        // The root whose figures this callback adds to, when it counts (exported, figures on).
        let counted = if self.stats.is_some() && self.exported(callback) {
            self.host().contexts.get(&context_id).copied()
        } else {
            None
        };
        let slot = stream.map(|s| {
            // SAFETY: erases the borrow's lifetime; the pointer is removed from the env below,
            // before this function returns, whatever the callback did.
            let s: &mut (dyn HttpStream + 'static) = unsafe { std::mem::transmute(s) };
            NonNull::from(s)
        });
        {
            let data = self.host_mut();
            data.call = CallState::idle();
            data.call.callback = callback;
            data.call.context_id = context_id;
            data.call.effective_id = context_id;
            data.call.stream = StreamSlot(slot);
            // Cleared with the rest of the call state below, before this function returns.
            let (response, grpc_status) = match response {
                Some((r, g)) => (Some(r), g),
                None => (None, None),
            };
            data.call.http_response = CallResponseSlot(response.map(NonNull::from));
            data.call.grpc_status = grpc_status;
        }
        if let Some(b) = &mut self.budget {
            // A fresh budget for every callback; errors only if the global's type is wrong.
            let _ = b.remaining.set(&mut self.store, wasmer::Value::I64(b.points as i64));
            if std::mem::take(&mut b.exhausted_dirty) {
                let _ = b.exhausted.set(&mut self.store, wasmer::Value::I32(0));
            }
        }
        let t0 = counted.map(|_| clock::start());
        // A panic in a hostcall unwinds out of wasmer's call (wasmer re-raises it past the
        // wasm frames). Caught here, it fails the callback like a trap, so that the embedder
        // drops the instance, and the call state below is still cleared.
        let r = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&self.cb, &mut self.store))) {
            Ok(r) => r,
            Err(p) => {
                if let Some(b) = &mut self.budget {
                    b.exhausted_dirty = true;
                }
                if let (Some(root), Some(t0)) = (counted, t0) {
                    self.record(root, clock::since(t0), 0, Some(FailureKind::Panic));
                }
                let message = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_string());
                self.host_mut().call = CallState::idle();
                return Err(HostError::Panic { callback: callback.export_name(), message });
            }
        };
        if let (Some(root), Some(t0)) = (counted, t0) {
            let nanos = clock::since(t0);
            let (used, exhausted) = match &self.budget {
                Some(b) => {
                    let left = b.remaining.get(&mut self.store).i64().unwrap_or(0).max(0) as u64;
                    let exhausted = r.is_err() && b.exhausted.get(&mut self.store).i32() == Some(1);
                    (if exhausted { b.points } else { b.points.saturating_sub(left) }, exhausted)
                }
                None => (0, false),
            };
            let failure = r.as_ref().err().map(|e| self.failure_kind(e, exhausted));
            self.record(root, nanos, used, failure);
        }
        if let (Err(_), Some(b)) = (&r, &mut self.budget) {
            b.exhausted_dirty = true;
        }
        let r = match (r, &self.budget) {
            (Err(e), Some(b)) if b.exhausted.get(&mut self.store).i32() == Some(1) => Err(RuntimeError::new(format!(
                "exceeded its CPU budget of {} wasm instructions (wasm_max_instructions); first error: {}",
                b.points,
                e.message()
            ))),
            (r, _) => r,
        };
        let data = self.host_mut();
        let after = After {
            local_response: data.call.local_response.take(),
            ops: data.call.stream_ops,
            done_called: data.call.done_called,
        };
        data.call = CallState::idle();
        r.map(|v| (v, after)).map_err(|e| trap(callback, e))
    }

    /// Creates a root context and runs on_vm_start, then on_configure with `plugin_config`
    /// (skipped when None: a module loaded but used by no filter). Returns its context id.
    pub fn create_root_context(&mut self, plugin_config: Option<Vec<u8>>) -> Result<u32, HostError> {
        let configure = plugin_config.is_some();
        let plugin_config = plugin_config.unwrap_or_default();
        let id = self.next_context_id();
        let config_len = plugin_config.len() as i32;
        let vm_config_len = {
            let data = self.host_mut();
            data.contexts.insert(id, id);
            data.roots.insert(id, RootInfo { config: plugin_config });
            data.vm_config.len() as i32
        };
        self.invoke(Callback::ContextCreate, id, None, |cb, st| match &cb.context_create {
            Some(f) => f.call(st, id as i32, 0),
            None => Ok(()),
        })?;
        let (ok, _) = self.invoke(Callback::VmStart, id, None, |cb, st| match &cb.vm_start {
            Some(f) => f.call(st, id as i32, vm_config_len),
            None => Ok(1),
        })?;
        if ok == 0 {
            let _ = self.on_delete(id);
            return Err(HostError::VmStartFailed);
        }
        if !configure {
            return Ok(id);
        }
        let (ok, _) = self.invoke(Callback::Configure, id, None, |cb, st| match &cb.configure {
            Some(f) => f.call(st, id as i32, config_len),
            None => Ok(1),
        })?;
        if ok == 0 {
            let _ = self.on_delete(id);
            return Err(HostError::ConfigureFailed);
        }
        Ok(id)
    }

    /// Creates one more root context in an instance whose VM already started (the Lua FFI
    /// path: `load` starts the VM once, each `on_configure` adds a configured root context):
    /// on_context_create(root, 0) then on_configure with `plugin_config`, no on_vm_start.
    pub fn create_configured_root(&mut self, plugin_config: Vec<u8>) -> Result<u32, HostError> {
        let id = self.next_context_id();
        let config_len = plugin_config.len() as i32;
        {
            let data = self.host_mut();
            data.contexts.insert(id, id);
            data.roots.insert(id, RootInfo { config: plugin_config });
        }
        let created = self.invoke(Callback::ContextCreate, id, None, |cb, st| match &cb.context_create {
            Some(f) => f.call(st, id as i32, 0),
            None => Ok(()),
        });
        let configured = created.and_then(|_| {
            self.invoke(Callback::Configure, id, None, |cb, st| match &cb.configure {
                Some(f) => f.call(st, id as i32, config_len),
                None => Ok(1),
            })
        });
        match configured {
            Ok((0, _)) => {
                let _ = self.on_delete(id);
                Err(HostError::ConfigureFailed)
            }
            Ok(_) => Ok(id),
            Err(e) => {
                let data = self.host_mut();
                data.contexts.remove(&id);
                data.roots.remove(&id);
                Err(e)
            }
        }
    }

    /// Creates the HTTP context of one request under `root`.
    pub fn create_http_context(&mut self, root: u32) -> Result<u32, HostError> {
        let id = self.next_context_id();
        self.host_mut().contexts.insert(id, root);
        self.invoke(Callback::ContextCreate, id, None, |cb, st| match &cb.context_create {
            Some(f) => f.call(st, id as i32, root as i32),
            None => Ok(()),
        })?;
        Ok(id)
    }

    fn headers(
        &mut self,
        callback: Callback,
        ctx: u32,
        stream: &mut dyn HttpStream,
        num_headers: u32,
        end_of_stream: bool,
    ) -> Result<Outcome, HostError> {
        let (action, after) = self.invoke(callback, ctx, Some(stream), |cb, st| {
            let f = if callback == Callback::RequestHeaders { &cb.request_headers } else { &cb.response_headers };
            match f {
                Some(f) => f.call(st, ctx, num_headers, end_of_stream),
                None => Ok(0),
            }
        })?;
        Ok(Outcome { action: Action::from_i32(action), local_response: after.local_response, ops: after.ops })
    }

    pub fn on_request_headers(
        &mut self,
        ctx: u32,
        stream: &mut dyn HttpStream,
        num_headers: u32,
        end_of_stream: bool,
    ) -> Result<Outcome, HostError> {
        if self.cb.request_headers.is_none() {
            return Ok(Outcome::CONTINUE);
        }
        self.headers(Callback::RequestHeaders, ctx, stream, num_headers, end_of_stream)
    }

    pub fn on_response_headers(
        &mut self,
        ctx: u32,
        stream: &mut dyn HttpStream,
        num_headers: u32,
        end_of_stream: bool,
    ) -> Result<Outcome, HostError> {
        if self.cb.response_headers.is_none() {
            return Ok(Outcome::CONTINUE);
        }
        self.headers(Callback::ResponseHeaders, ctx, stream, num_headers, end_of_stream)
    }

    /// on_request_body / on_response_body: `body_size` is what is buffered so far, readable
    /// and changeable through the stream's `body()`.
    pub fn on_body(
        &mut self,
        response: bool,
        ctx: u32,
        stream: &mut dyn HttpStream,
        body_size: usize,
        end_of_stream: bool,
    ) -> Result<Outcome, HostError> {
        let callback = if response { Callback::ResponseBody } else { Callback::RequestBody };
        let exported = if response { self.cb.response_body.is_some() } else { self.cb.request_body.is_some() };
        if !exported {
            return Ok(Outcome::CONTINUE);
        }
        let size = body_size.min(i32::MAX as usize) as i32;
        let (action, after) = self.invoke(callback, ctx, Some(stream), |cb, st| {
            let f = if response { &cb.response_body } else { &cb.request_body };
            match f {
                Some(f) => f.call(st, ctx as i32, size, end_of_stream as i32),
                None => Ok(0),
            }
        })?;
        Ok(Outcome { action: Action::from_i32(action), local_response: after.local_response, ops: after.ops })
    }

    /// Tick periods set since the last call: (root context id, milliseconds; 0 = stop).
    pub fn take_tick_changes(&mut self) -> Vec<(u32, u32)> {
        std::mem::take(&mut self.host_mut().tick_changes)
    }

    /// on_tick for a root context.
    pub fn on_tick(&mut self, root: u32) -> Result<(), HostError> {
        if self.cb.tick.is_none() {
            return Ok(());
        }
        self.invoke(Callback::Tick, root, None, |cb, st| match &cb.tick {
            Some(f) => f.call(st, root as i32),
            None => Ok(()),
        })?;
        Ok(())
    }

    /// Calls dispatched with proxy_http_call since the last take, in order. Each must be
    /// answered once with `on_http_call_response` (or dropped with `forget_http_calls`).
    pub fn take_http_calls(&mut self) -> Vec<HttpCallRequest> {
        let data = self.host_mut();
        let calls = std::mem::take(&mut data.http_calls);
        data.calls_in_flight += calls.len();
        for c in &calls {
            if let Some(kind) = c.grpc {
                data.grpc_inflight.insert(c.token, kind);
            }
        }
        calls
    }

    /// gRPC calls in flight the plugin cancelled (proxy_grpc_cancel / proxy_grpc_close of a
    /// unary call) since the last take: the embedder stops them and delivers nothing more.
    /// The host has forgotten them already.
    pub fn take_grpc_cancels(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.host_mut().grpc_cancels)
    }

    /// proxy_grpc_call and proxy_grpc_stream answer INTERNAL_FAILURE (with a warning): the
    /// embedder cannot carry gRPC.
    pub fn refuse_grpc_calls(&mut self) {
        self.host_mut().grpc_offered = false;
    }

    /// Whether proxy_http_call was called since the last take.
    pub fn has_http_calls(&self) -> bool {
        !self.host().http_calls.is_empty()
    }

    /// Calls taken but that will never be answered (their context went away: a local
    /// response cancelled them, or the request ended), by token.
    pub fn forget_http_calls(&mut self, tokens: &[u32]) {
        let data = self.host_mut();
        for &t in tokens {
            // A token told twice (a gRPC call's later events after its request ended) counts once.
            if data.call_ledger.release(t) {
                data.calls_in_flight = data.calls_in_flight.saturating_sub(1);
            }
            data.grpc_inflight.remove(&t);
            data.grpc_unary.remove(&t);
        }
    }

    /// proxy_on_http_call_response(ctx, token, headers, body size, trailers) with `resp`
    /// readable through the call-response maps and buffer. `stream` is the request of an
    /// HTTP context (None for a root context): it may change it, answer it, or resume it.
    pub fn on_http_call_response(
        &mut self,
        ctx: u32,
        token: u32,
        resp: &HttpCallResponse,
        stream: Option<&mut dyn HttpStream>,
    ) -> Result<Outcome, HostError> {
        {
            let data = self.host_mut();
            data.calls_in_flight = data.calls_in_flight.saturating_sub(1);
            data.call_ledger.release(token);
            if !data.contexts.contains_key(&ctx) {
                return Ok(Outcome::CONTINUE);
            }
        }
        if self.cb.http_call_response.is_none() {
            return Ok(Outcome::CONTINUE);
        }
        let (nh, nb, nt) = (resp.headers.len() as i32, resp.body.len().min(i32::MAX as usize) as i32, resp.trailers.len() as i32);
        let (_, after) = self.invoke_with(Callback::HttpCallResponse, ctx, stream, Some((resp, None)), |cb, st| {
            match &cb.http_call_response {
                Some(f) => f.call(st, ctx as i32, token as i32, nh, nb, nt),
                None => Ok(()),
            }
        })?;
        Ok(Outcome { action: Action::Continue, local_response: after.local_response, ops: after.ops })
    }

    /// Hands one event of gRPC call `token` to context `ctx`, as Envoy delivers it: a stream
    /// gets each event as its callback (initial metadata, each message, trailing metadata,
    /// the close); a unary call gets, at its close, proxy_on_grpc_receive with the message
    /// when it ended OK with one, else proxy_on_grpc_close with the status (its metadata is
    /// readable in either). `Close` ends the call; events of a call the plugin cancelled, or
    /// that the host forgot, are dropped. `stream` as for `on_http_call_response`.
    pub fn on_grpc_event(&mut self, ctx: u32, token: u32, ev: GrpcEvent, stream: Option<&mut dyn HttpStream>) -> Result<Outcome, HostError> {
        let data = self.host_mut();
        let Some(&kind) = data.grpc_inflight.get(&token) else { return Ok(Outcome::CONTINUE) };
        let mut answer = HttpCallResponse::default();
        let mut status = None;
        let (callback, n) = match (kind, ev) {
            (GrpcKind::Stream, GrpcEvent::InitialMetadata(m)) => {
                answer.headers = m;
                (Callback::GrpcReceiveInitialMetadata, answer.headers.len())
            }
            (GrpcKind::Stream, GrpcEvent::Message(m)) => {
                answer.body = m;
                (Callback::GrpcReceive, answer.body.len())
            }
            (GrpcKind::Stream, GrpcEvent::TrailingMetadata(m)) => {
                answer.trailers = m;
                (Callback::GrpcReceiveTrailingMetadata, answer.trailers.len())
            }
            (GrpcKind::Stream, GrpcEvent::Close { status: code, message }) => {
                data.grpc_finished(token);
                status = Some((code, message));
                (Callback::GrpcClose, code as usize)
            }
            (GrpcKind::Unary, GrpcEvent::Close { status: code, message }) => {
                let (got, messages) = data.grpc_unary.remove(&token).unwrap_or_default();
                data.grpc_finished(token);
                answer = got;
                if code == crate::grpc_call::code::OK && messages == 1 {
                    (Callback::GrpcReceive, answer.body.len())
                } else {
                    // OK without exactly one message is not a unary answer (Envoy: INTERNAL).
                    let (code, message) = if code == crate::grpc_call::code::OK {
                        (crate::grpc_call::code::INTERNAL, b"a unary call answered with no message or several".to_vec())
                    } else {
                        (code, message)
                    };
                    answer.body.clear();
                    status = Some((code, message));
                    (Callback::GrpcClose, code as usize)
                }
            }
            (GrpcKind::Unary, ev) => {
                // Kept until the close, which delivers the answer whole.
                let (got, messages) = data.grpc_unary.entry(token).or_default();
                match ev {
                    GrpcEvent::InitialMetadata(m) => got.headers = m,
                    GrpcEvent::TrailingMetadata(m) => got.trailers = m,
                    GrpcEvent::Message(m) => {
                        *messages += 1;
                        if *messages == 1 {
                            got.body = m;
                        }
                    }
                    GrpcEvent::Close { .. } => {}
                }
                return Ok(Outcome::CONTINUE);
            }
        };
        if !self.host().contexts.contains_key(&ctx) || !self.exported(callback) {
            return Ok(Outcome::CONTINUE);
        }
        let (c, t, n) = (ctx as i32, token as i32, n.min(i32::MAX as usize) as i32);
        let (_, after) = self.invoke_with(callback, ctx, stream, Some((&answer, status)), |cb, st| {
            let f = match callback {
                Callback::GrpcReceiveInitialMetadata => &cb.grpc_initial_metadata,
                Callback::GrpcReceive => &cb.grpc_receive,
                Callback::GrpcReceiveTrailingMetadata => &cb.grpc_trailing_metadata,
                _ => &cb.grpc_close,
            };
            match f {
                Some(f) => f.call(st, c, t, n),
                None => Ok(()),
            }
        })?;
        Ok(Outcome { action: Action::Continue, local_response: after.local_response, ops: after.ops })
    }

    /// on_queue_ready for a root context.
    pub fn on_queue_ready(&mut self, root: u32, queue_id: u32) -> Result<(), HostError> {
        if self.cb.queue_ready.is_none() {
            return Ok(());
        }
        self.invoke(Callback::QueueReady, root, None, |cb, st| match &cb.queue_ready {
            Some(f) => f.call(st, root as i32, queue_id as i32),
            None => Ok(()),
        })?;
        Ok(())
    }

    /// Calls on_queue_ready for every queue this instance's root contexts registered that
    /// was enqueued to since the last poll (the embedder calls this from a timer: there is no
    /// cross-process wake-up). Stops at the first failing callback.
    pub fn poll_queues(&mut self) -> Result<(), HostError> {
        let data = self.host_mut();
        let Some(store) = data.shared.clone() else { return Ok(()) };
        let mut due = Vec::new();
        for r in data.queue_regs.iter_mut() {
            if let Some(seq) = store.queue_seq(r.queue) {
                if seq != r.seen {
                    r.seen = seq;
                    due.push((r.root, r.queue));
                }
            }
        }
        for (root, queue) in due {
            self.on_queue_ready(root, queue)?;
        }
        Ok(())
    }

    /// Whether any root context registered a queue (the embedder polls only then).
    pub fn has_queues(&self) -> bool {
        !self.host().queue_regs.is_empty()
    }

    /// Replaces the shared store (by default the process store, see
    /// `shared_store::set_process_store`).
    pub fn set_shared_store(&mut self, store: Option<std::sync::Arc<crate::shared_store::SharedStore>>) {
        self.host_mut().shared = store;
    }

    /// on_response_trailers with `num_trailers` trailers in the response trailer map.
    pub fn on_response_trailers(&mut self, ctx: u32, stream: &mut dyn HttpStream, num_trailers: u32) -> Result<Outcome, HostError> {
        if self.cb.response_trailers.is_none() {
            return Ok(Outcome::CONTINUE);
        }
        let (action, after) = self.invoke(Callback::ResponseTrailers, ctx, Some(stream), |cb, st| match &cb.response_trailers {
            Some(f) => f.call(st, ctx as i32, num_trailers as i32),
            None => Ok(0),
        })?;
        Ok(Outcome { action: Action::from_i32(action), local_response: after.local_response, ops: after.ops })
    }

    /// Creates the context of one L4 connection under `root` (a stream context: the same
    /// on_context_create as an HTTP context's).
    pub fn create_stream_context(&mut self, root: u32) -> Result<u32, HostError> {
        self.create_http_context(root)
    }

    /// on_new_connection, when the connection's session starts.
    pub fn on_new_connection(&mut self, ctx: u32, stream: &mut dyn HttpStream) -> Result<Outcome, HostError> {
        if self.cb.new_connection.is_none() {
            return Ok(Outcome::CONTINUE);
        }
        let (action, after) = self.invoke(Callback::NewConnection, ctx, Some(stream), |cb, st| match &cb.new_connection {
            Some(f) => f.call(st, ctx as i32),
            None => Ok(0),
        })?;
        Ok(Outcome { action: Action::from_i32(action), local_response: None, ops: after.ops })
    }

    /// on_downstream_data (`upstream` false) or on_upstream_data: `size` bytes are readable
    /// and changeable as the DOWNSTREAM_DATA / UPSTREAM_DATA buffer through the stream's
    /// `body()`; `end_of_stream` when that side half-closed.
    pub fn on_stream_data(
        &mut self,
        upstream: bool,
        ctx: u32,
        stream: &mut dyn HttpStream,
        size: usize,
        end_of_stream: bool,
    ) -> Result<Outcome, HostError> {
        let (callback, exported) = if upstream {
            (Callback::UpstreamData, self.cb.upstream_data.is_some())
        } else {
            (Callback::DownstreamData, self.cb.downstream_data.is_some())
        };
        if !exported {
            return Ok(Outcome::CONTINUE);
        }
        let size = size.min(i32::MAX as usize) as i32;
        let (action, after) = self.invoke(callback, ctx, Some(stream), |cb, st| {
            let f = if upstream { &cb.upstream_data } else { &cb.downstream_data };
            match f {
                Some(f) => f.call(st, ctx as i32, size, end_of_stream as i32),
                None => Ok(0),
            }
        })?;
        Ok(Outcome { action: Action::from_i32(action), local_response: None, ops: after.ops })
    }

    /// on_downstream_connection_close / on_upstream_connection_close with the side that
    /// closed (`PeerType`).
    pub fn on_connection_close(
        &mut self,
        upstream: bool,
        ctx: u32,
        stream: &mut dyn HttpStream,
        peer: crate::abi::PeerType,
    ) -> Result<(), HostError> {
        let callback = if upstream { Callback::UpstreamClose } else { Callback::DownstreamClose };
        if !self.exported(callback) {
            return Ok(());
        }
        self.invoke(callback, ctx, Some(stream), |cb, st| {
            let f = if upstream { &cb.upstream_close } else { &cb.downstream_close };
            match f {
                Some(f) => f.call(st, ctx as i32, peer as i32),
                None => Ok(()),
            }
        })?;
        Ok(())
    }

    /// proxy_http_call answers BAD_ARGUMENT (with a warning): the embedder cannot send calls
    /// (the nginx stream module).
    pub fn refuse_http_calls(&mut self) {
        self.host_mut().http_calls_offered = false;
        self.host_mut().grpc_offered = false;
    }

    /// on_done then on_log. When on_done returns false without calling proxy_done, the
    /// context waits: on_log runs when it calls proxy_done later, or at on_delete.
    pub fn on_done_and_log(&mut self, ctx: u32, stream: &mut dyn HttpStream) -> Result<(), HostError> {
        let (done, after) = self.invoke(Callback::Done, ctx, Some(&mut *stream), |cb, st| match &cb.done {
            Some(f) => f.call(st, ctx as i32),
            None => Ok(1),
        })?;
        if done == 0 && !after.done_called {
            self.host_mut().waiting.insert(ctx);
            return Ok(());
        }
        self.on_log(ctx, Some(stream))
    }

    fn on_log(&mut self, ctx: u32, stream: Option<&mut dyn HttpStream>) -> Result<(), HostError> {
        self.host_mut().waiting.remove(&ctx);
        if self.cb.log.is_none() {
            return Ok(());
        }
        self.invoke(Callback::Log, ctx, stream, |cb, st| match &cb.log {
            Some(f) => f.call(st, ctx as i32),
            None => Ok(()),
        })?;
        Ok(())
    }

    /// on_delete (after a waiting context's on_log), then forgets the context whatever
    /// happened.
    pub fn on_delete(&mut self, ctx: u32) -> Result<(), HostError> {
        if self.host().waiting.contains(&ctx) {
            self.on_log(ctx, None)?;
        }
        let r = self.invoke(Callback::Delete, ctx, None, |cb, st| match &cb.delete {
            Some(f) => f.call(st, ctx as i32),
            None => Ok(()),
        });
        let data = self.host_mut();
        data.contexts.remove(&ctx);
        data.roots.remove(&ctx);
        data.edits.remove(&ctx);
        data.drop_open_streams(ctx);
        r.map(|_| ())
    }
}
