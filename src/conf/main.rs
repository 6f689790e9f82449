//! The http main configuration: the modules and filters the directives declared, and the
//! settings every worker shares. Filled by the directive handlers (directives.rs), completed
//! in postconfiguration.

use ngx::ffi::*;
use proxy_wasm_host::{CompiledModule, Compiler};

/// Where a directive was written, for messages that name the file and line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    pub file: String,
    pub line: usize,
}

impl Origin {
    pub(crate) unsafe fn of(cf: *mut ngx_conf_t) -> Origin {
        let cf = &*cf;
        if cf.conf_file.is_null() {
            return Origin::default();
        }
        let f = &*cf.conf_file;
        Origin { file: f.file.name.to_string(), line: f.line as usize }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "in {}:{}", self.file, self.line)
    }
}

pub(crate) struct ModuleDef {
    pub name: String,
    pub path: String,
    pub bytes: Vec<u8>,
    pub vm_config: Vec<u8>,
    pub origin: Origin,
    /// Set in postconfiguration (in the master, before fork), shared by every worker.
    pub compiled: Option<CompiledModule>,
    /// proxy_wasm_call_allow: the host:port / IP targets its HTTP calls may reach besides
    /// `upstream {}` blocks (see call_policy.rs).
    pub call_allow: Vec<proxy_wasm_host::call_target::Pattern>,
}

pub(crate) struct FilterDef {
    pub module: usize,
    pub config: Vec<u8>,
    pub origin: Origin,
    /// The `filter` label of its metrics: `name=LABEL`, or the file name and line.
    pub label: String,
}


#[derive(Default)]
pub(crate) struct MainConf {
    pub compiler: Option<Compiler>,
    pub modules: Vec<ModuleDef>,
    /// One per `proxy_wasm` occurrence: each gets its own root context in every worker.
    pub filters: Vec<FilterDef>,
    /// Every module compiled and checked (postconfiguration ran, not in the signaller).
    pub loaded: bool,
    /// wasm_compile_cache: directory of compiled artifacts.
    pub cache_dir: Option<std::path::PathBuf>,
    /// wasm_max_memory / wasm_max_instructions (None = default).
    pub max_memory: Option<u64>,
    pub max_instructions: Option<u64>,
    /// wasm_call_timeout, wasm_call_ssl_verify, wasm_call_ssl_trusted_certificate.
    pub call_timeout: Option<ngx_msec_t>,
    pub call_ssl_verify: Flag,
    pub call_trusted: Option<String>,
    /// The generated HTTP-call location's configuration (a `void **`), 0 if none.
    pub call_loc_conf: usize,
    /// The generated gRPC-call location's configuration, 0 if none (no grpc module).
    pub grpc_loc_conf: usize,
    /// What calls can reach without a resolver, and whether there is one (call_policy.rs).
    pub reachable: crate::conf::call_policy::Reachable,
    /// proxy_wasm_call_allow naming no wasm_module (yet): resolved in postconfiguration.
    pub call_allow_pending: Vec<(String, Vec<proxy_wasm_host::call_target::Pattern>, Origin)>,
    /// proxy_wasm_call_allow for plugins loaded from Lua, by the name given to load().
    pub lua_call_allow: Vec<(String, Vec<proxy_wasm_host::call_target::Pattern>)>,
    /// wasm_shm_size, and the zone declared in postconfiguration (see shm.rs).
    pub shm_size: Option<usize>,
    pub shm_zone: Option<std::ptr::NonNull<ngx_shm_zone_t>>,
    /// proxy_wasm_filter_metrics (None = off: see README, Metrics, for what they cost).
    pub filter_metrics: Flag,
}

impl MainConf {
    pub fn limits(&self) -> proxy_wasm_host::Limits {
        let d = proxy_wasm_host::DEFAULT_LIMITS;
        proxy_wasm_host::Limits {
            max_memory: self.max_memory.unwrap_or(d.max_memory),
            max_instructions: self.max_instructions.unwrap_or(d.max_instructions),
        }
    }
}

impl MainConf {
    /// The engine of plugins loaded from Lua: only with an explicit `wasm_vm`.
    pub fn lua_engine(&self) -> Option<proxy_wasm_host::Engine> {
        self.compiler.and_then(|c| proxy_wasm_host::new_engine(c, &self.limits()).ok())
    }

    pub fn module_index(&self, name: &str) -> Option<usize> {
        self.modules.iter().position(|m| m.name == name)
    }
}

impl MainConf {
    /// wasm_call_ssl_trusted_certificate, or the system bundle when there is one.
    pub(crate) fn call_trusted_certificate(&self) -> Option<String> {
        match &self.call_trusted {
            Some(p) => Some(p.clone()),
            None => {
                let system = "/etc/ssl/certs/ca-certificates.crt";
                std::path::Path::new(system).exists().then(|| system.to_string())
            }
        }
    }
}

/// Default of wasm_shm_size, and its upper bound.
pub(crate) const DEFAULT_SHM_SIZE: usize = 8 << 20;
pub(crate) const MAX_SHM_SIZE: usize = 1 << 30;

/// An on|off directive's value, as nginx's stock `ngx_conf_set_flag_slot` stores it (hence
/// the layout: the slot writes an ngx_flag_t at the field's offset, and refuses a duplicate
/// while the field is not unset).
#[repr(transparent)]
#[derive(Clone, Copy)]
pub(crate) struct Flag(ngx_flag_t);

impl Default for Flag {
    fn default() -> Flag {
        Flag(NGX_CONF_UNSET as ngx_flag_t)
    }
}

impl Flag {
    /// The value set, or `default` when the directive is absent.
    pub(crate) fn get(self, default: bool) -> bool {
        if self.0 == NGX_CONF_UNSET as ngx_flag_t {
            default
        } else {
            self.0 != 0
        }
    }
}
