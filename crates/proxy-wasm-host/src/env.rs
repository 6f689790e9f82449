//! Per-instance host state that hostcalls see (wasmer's FunctionEnv data), and the state of
//! the callback currently running.

use std::collections::HashMap;
use std::ptr::NonNull;

use wasmer::{Memory, TypedFunction};

use crate::abi::{AbiVersion, LogLevel};
use crate::stream::{HttpStream, LocalResponse};

/// Where plugin messages go when no request is involved (root contexts, start-up).
pub trait Logger: Send {
    /// The most verbose level the embedder records: hostcalls check it before formatting.
    fn level(&self) -> LogLevel;
    fn log(&self, level: LogLevel, msg: &[u8]);
}

/// Which callback is running: decides which buffers and maps a hostcall may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    None,
    Start,
    ContextCreate,
    VmStart,
    Configure,
    RequestHeaders,
    RequestBody,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
    Tick,
    HttpCallResponse,
    QueueReady,
    Log,
    Done,
    Delete,
    /// L4 (network filter) callbacks.
    NewConnection,
    DownstreamData,
    UpstreamData,
    DownstreamClose,
    UpstreamClose,
    /// gRPC call answers.
    GrpcReceiveInitialMetadata,
    GrpcReceive,
    GrpcReceiveTrailingMetadata,
    GrpcClose,
}

impl Callback {
    pub fn export_name(self) -> &'static str {
        match self {
            Callback::None => "(none)",
            Callback::Start => "_initialize",
            Callback::ContextCreate => "proxy_on_context_create",
            Callback::VmStart => "proxy_on_vm_start",
            Callback::Configure => "proxy_on_configure",
            Callback::RequestHeaders => "proxy_on_request_headers",
            Callback::ResponseHeaders => "proxy_on_response_headers",
            Callback::RequestBody => "proxy_on_request_body",
            Callback::ResponseBody => "proxy_on_response_body",
            Callback::ResponseTrailers => "proxy_on_response_trailers",
            Callback::Tick => "proxy_on_tick",
            Callback::HttpCallResponse => "proxy_on_http_call_response",
            Callback::QueueReady => "proxy_on_queue_ready",
            Callback::Log => "proxy_on_log",
            Callback::Done => "proxy_on_done",
            Callback::Delete => "proxy_on_delete",
            Callback::NewConnection => "proxy_on_new_connection",
            Callback::DownstreamData => "proxy_on_downstream_data",
            Callback::UpstreamData => "proxy_on_upstream_data",
            Callback::DownstreamClose => "proxy_on_downstream_connection_close",
            Callback::UpstreamClose => "proxy_on_upstream_connection_close",
            Callback::GrpcReceiveInitialMetadata => "proxy_on_grpc_receive_initial_metadata",
            Callback::GrpcReceive => "proxy_on_grpc_receive",
            Callback::GrpcReceiveTrailingMetadata => "proxy_on_grpc_receive_trailing_metadata",
            Callback::GrpcClose => "proxy_on_grpc_close",
        }
    }

    /// Callbacks from which `proxy_send_local_response` may answer the request.
    pub fn may_send_local_response(self) -> bool {
        matches!(
            self,
            Callback::RequestHeaders
                | Callback::RequestBody
                | Callback::ResponseHeaders
                | Callback::ResponseBody
                | Callback::HttpCallResponse
        ) || self.is_grpc()
    }

    /// The callbacks that deliver a gRPC call's answer.
    pub fn is_grpc(self) -> bool {
        matches!(
            self,
            Callback::GrpcReceiveInitialMetadata | Callback::GrpcReceive | Callback::GrpcReceiveTrailingMetadata | Callback::GrpcClose
        )
    }

    /// Callbacks from which `proxy_http_call` may dispatch: the request and response
    /// phases (which can wait for it), call responses (chaining), and root-context callbacks.
    pub fn may_dispatch_http_call(self) -> bool {
        matches!(
            self,
            Callback::RequestHeaders
                | Callback::RequestBody
                | Callback::ResponseHeaders
                | Callback::ResponseBody
                | Callback::HttpCallResponse
                | Callback::Tick
                | Callback::QueueReady
                | Callback::VmStart
                | Callback::Configure
        ) || self.is_grpc()
    }
}

/// The stream of the running callback. Only set for the duration of one callback (see
/// `PluginInstance::invoke`), so the erased lifetime is never observed past its real one.
pub(crate) struct StreamSlot(pub(crate) Option<NonNull<dyn HttpStream>>);

// SAFETY: an instance and its FunctionEnv live and run on one nginx worker thread; wasmer asks
// for Send only because a Store could move between threads, which ours never do.
unsafe impl Send for StreamSlot {}

pub(crate) struct CallState {
    pub callback: Callback,
    pub context_id: u32,
    /// Set by proxy_set_effective_context; defaults to `context_id`.
    pub effective_id: u32,
    pub stream: StreamSlot,
    pub local_response: Option<LocalResponse>,
    /// proxy_continue_stream / proxy_continue_request|response / proxy_close_stream.
    pub stream_ops: StreamOps,
    /// proxy_done was called by the context whose on_done is running.
    pub done_called: bool,
    /// The response being delivered by on_http_call_response; same lifetime rule as `stream`.
    pub http_response: CallResponseSlot,
    /// The status and grpc-message proxy_get_status reports, during proxy_on_grpc_close.
    pub grpc_status: Option<(u32, Vec<u8>)>,
    /// The host is running the plugin's allocator (return_bytes): a hostcall made from it
    /// may not allocate again (no unbounded re-entrancy).
    pub in_allocator: bool,
}

/// See `StreamSlot`.
pub(crate) struct CallResponseSlot(pub(crate) Option<NonNull<crate::http_call::HttpCallResponse>>);

// SAFETY: as for StreamSlot: only ever used on the thread that runs the instance.
unsafe impl Send for CallResponseSlot {}

/// Stream control asked for during a callback; the embedder applies it when the callback
/// returns (nginx cannot resume or reset a request from inside a wasm call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOps {
    pub continue_request: bool,
    pub continue_response: bool,
    pub close_request: bool,
    pub close_response: bool,
    /// L4: resume or close the downstream (client) or upstream side.
    pub continue_downstream: bool,
    pub continue_upstream: bool,
    pub close_downstream: bool,
    pub close_upstream: bool,
}

impl StreamOps {
    pub const NONE: StreamOps = StreamOps {
        continue_request: false,
        continue_response: false,
        close_request: false,
        close_response: false,
        continue_downstream: false,
        continue_upstream: false,
        close_downstream: false,
        close_upstream: false,
    };

    /// A close of any side was asked for.
    pub fn closes(&self) -> bool {
        self.close_request || self.close_response || self.close_downstream || self.close_upstream
    }
}

impl CallState {
    pub fn idle() -> CallState {
        CallState {
            callback: Callback::None,
            context_id: 0,
            effective_id: 0,
            stream: StreamSlot(None),
            local_response: None,
            stream_ops: StreamOps::default(),
            done_called: false,
            http_response: CallResponseSlot(None),
            grpc_status: None,
            in_allocator: false,
        }
    }
}

/// Context ids are small sequential integers: a multiplicative hash is enough, and much
/// cheaper than SipHash on the per-request path.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(crate) type IdMap<V> = HashMap<u32, V, std::hash::BuildHasherDefault<IdHasher>>;
pub(crate) type IdSet = std::collections::HashSet<u32, std::hash::BuildHasherDefault<IdHasher>>;

pub(crate) struct RootInfo {
    pub config: Vec<u8>,
}

/// (count, bytes) of what one HTTP context made the embedder keep until the request ends.
#[derive(Default)]
pub(crate) struct EditBudget {
    /// Header edits per map, indexed by MapType (MAX_HEADER_EDITS, MAX_HEADER_EDIT_BYTES).
    pub maps: [(u32, usize); 8],
    /// proxy_set_property calls on the request (MAX_PROPERTY_SETS, MAX_PROPERTY_SET_BYTES).
    pub properties: (u32, usize),
}

impl EditBudget {
    /// Adds `n` items of `bytes` bytes to `slot` if both bounds still hold.
    pub fn charge(slot: &mut (u32, usize), n: usize, bytes: usize, max_n: u32, max_bytes: usize) -> Result<(), crate::abi::Status> {
        let count = (slot.0 as usize).saturating_add(n);
        let total = slot.1.saturating_add(bytes);
        if count > max_n as usize || total > max_bytes {
            return Err(crate::abi::Status::BadArgument);
        }
        *slot = (count as u32, total);
        Ok(())
    }
}

pub struct HostEnv {
    pub(crate) abi: AbiVersion,
    pub(crate) memory: Option<Memory>,
    pub(crate) alloc: Option<TypedFunction<i32, i32>>,
    pub(crate) logger: Box<dyn Logger>,
    pub(crate) vm_config: Vec<u8>,
    pub(crate) call: CallState,
    /// Live contexts: id -> root id (a root maps to itself).
    pub(crate) contexts: IdMap<u32>,
    pub(crate) roots: IdMap<RootInfo>,
    /// HTTP contexts whose on_done returned false: on_log waits for proxy_done (or on_delete).
    pub(crate) waiting: IdSet,
    /// The module's name: plugin_name and plugin_vm_id.
    pub(crate) name: String,
    /// plugin_root_id: empty (nginx configures no root ids) unless the embedder sets one.
    pub(crate) root_id: String,
    /// proxy_set_tick_period_milliseconds calls not yet applied by the embedder: (root, ms).
    pub(crate) tick_changes: Vec<(u32, u32)>,
    /// Properties set outside any request (root contexts), by NUL-joined path.
    pub(crate) root_properties: HashMap<Vec<u8>, Vec<u8>>,
    /// Paths plus values in `root_properties` (bounded by MAX_ROOT_PROPERTY_BYTES).
    pub(crate) root_property_bytes: usize,
    /// What each HTTP context made the embedder store (header edits, properties set),
    /// against the bounds of limits.rs. Forgotten with the context.
    pub(crate) edits: IdMap<EditBudget>,
    /// Scratch buffers reused across hostcalls to keep allocation off the hot path.
    pub(crate) scratch: Vec<u8>,
    pub(crate) map_scratch: crate::maps::MapBuilder,
    /// proxy_http_call requests not yet taken by the embedder.
    pub(crate) http_calls: Vec<crate::http_call::HttpCallRequest>,
    /// Calls taken by the embedder and not yet answered.
    pub(crate) calls_in_flight: usize,
    pub(crate) next_call_token: u32,
    /// The embedder's check of a call's target at dispatch (None: every target passes).
    pub(crate) call_policy: Option<crate::http_call::CallPolicy>,
    /// api7/wasm-nginx-module's contract (the Lua path) where it is laxer or stricter than
    /// Envoy's: see `PluginInstance::set_api7_contract`.
    pub(crate) api7: bool,
    /// The embedder sends HTTP calls (false: the nginx stream module, which has no
    /// subrequests to send them with): proxy_http_call says BAD_ARGUMENT.
    pub(crate) http_calls_offered: bool,
    /// Targets whose refusal was logged already.
    pub(crate) refusals: crate::http_call::RefusalLog,
    /// Bytes of calls in flight, and what each HTTP context dispatched.
    pub(crate) call_ledger: crate::http_call::CallLedger,
    /// gRPC streams opened and not yet ended by the plugin (their request is still being
    /// written: nginx sends a request body whole), by token.
    pub(crate) grpc_open: HashMap<u32, crate::http_call::HttpCallRequest>,
    /// gRPC calls the embedder carries, by token.
    pub(crate) grpc_inflight: HashMap<u32, crate::grpc_call::GrpcKind>,
    /// What a unary call received so far (delivered whole at its close).
    pub(crate) grpc_unary: HashMap<u32, (crate::http_call::HttpCallResponse, u32)>,
    /// gRPC calls in flight the plugin cancelled: the embedder stops them.
    pub(crate) grpc_cancels: Vec<u32>,
    /// The embedder carries gRPC calls (false: the Lua path, the stream module).
    pub(crate) grpc_offered: bool,
    /// Shared data, queues and metrics (None: those hostcalls answer UNIMPLEMENTED).
    pub(crate) shared: Option<std::sync::Arc<crate::shared_store::SharedStore>>,
    /// Queues registered by this instance's root contexts, polled for on_queue_ready.
    pub(crate) queue_regs: Vec<crate::shared_store::QueueReg>,
    /// Queue ids this instance registered or resolved, and whether the queue is its own VM's
    /// (may dequeue) rather than another VM's it resolved by name (may only enqueue). A
    /// guessed id is NOT_FOUND. At most MAX_QUEUES entries (ids are 1..=MAX_QUEUES).
    pub(crate) queue_grants: HashMap<u32, bool>,
}

impl HostEnv {
    pub(crate) fn new(abi: AbiVersion, name: String, logger: Box<dyn Logger>, vm_config: Vec<u8>) -> HostEnv {
        HostEnv {
            abi,
            name,
            root_id: String::new(),
            root_properties: HashMap::new(),
            root_property_bytes: 0,
            tick_changes: Vec::new(),
            memory: None,
            alloc: None,
            logger,
            vm_config,
            call: CallState::idle(),
            contexts: IdMap::default(),
            roots: IdMap::default(),
            waiting: Default::default(),
            edits: IdMap::default(),
            scratch: Vec::new(),
            map_scratch: Default::default(),
            http_calls: Vec::new(),
            calls_in_flight: 0,
            next_call_token: 1,
            call_policy: None,
            api7: false,
            http_calls_offered: true,
            refusals: Default::default(),
            call_ledger: Default::default(),
            grpc_open: HashMap::new(),
            grpc_inflight: HashMap::new(),
            grpc_unary: HashMap::new(),
            grpc_cancels: Vec::new(),
            grpc_offered: true,
            shared: crate::shared_store::process_store(),
            queue_regs: Vec::new(),
            queue_grants: HashMap::new(),
        }
    }

    /// The stream hostcalls act on: only the effective context's own stream is reachable.
    pub(crate) fn stream(&mut self) -> Option<&mut dyn HttpStream> {
        if self.call.effective_id != self.call.context_id {
            return None;
        }
        // SAFETY: the pointer was made from a `&mut dyn HttpStream` that outlives the running
        // callback, and it is cleared before that callback returns (PluginInstance::invoke).
        // Hostcalls run one at a time on this thread, so no other reference is alive.
        self.call.stream.0.map(|mut p| unsafe { p.as_mut() })
    }

    /// The call response being delivered, during on_http_call_response only.
    pub(crate) fn http_response(&self) -> Option<&crate::http_call::HttpCallResponse> {
        // SAFETY: set from a reference that outlives the running callback and cleared before
        // it returns (PluginInstance::invoke); only read here, on this thread.
        self.call.http_response.0.map(|p| unsafe { p.as_ref() })
    }

    pub(crate) fn stream_ref_is_none(&self) -> bool {
        self.call.stream.0.is_none()
    }

    /// The most verbose level that is recorded where `log` writes: hostcalls check it before
    /// copying anything.
    pub(crate) fn log_level(&mut self) -> LogLevel {
        let own = self.logger.level();
        self.stream().and_then(|s| s.log_level()).unwrap_or(own)
    }

    /// Logs through the request when there is one, else through the instance logger.
    pub(crate) fn log(&mut self, level: LogLevel, msg: &[u8]) {
        if let Some(s) = self.stream() {
            s.log(level, msg);
        } else {
            self.logger.log(level, msg);
        }
    }

    /// gRPC call `token` is over: it no longer counts as in flight.
    pub(crate) fn grpc_finished(&mut self, token: u32) {
        self.grpc_inflight.remove(&token);
        self.grpc_unary.remove(&token);
        self.calls_in_flight = self.calls_in_flight.saturating_sub(1);
        self.call_ledger.release(token);
    }

    /// Streams context `ctx` opened and never ended go with it.
    pub(crate) fn drop_open_streams(&mut self, ctx: u32) {
        let gone: Vec<u32> = self.grpc_open.iter().filter(|(_, c)| c.context_id == ctx).map(|(&t, _)| t).collect();
        for t in gone {
            self.grpc_open.remove(&t);
            self.call_ledger.release(t);
        }
    }

    /// The root context that owns the effective context.
    pub(crate) fn root_of_current(&self) -> Option<&RootInfo> {
        let root = *self.contexts.get(&self.call.effective_id)?;
        self.roots.get(&root)
    }
}
