//! Directives: `wasm_vm`, `wasm_module`, `proxy_wasm`. Handlers only record and read files;
//! compiling and running plugins happens once per configuration load in postconfiguration
//! (see worker.rs), never in the `nginx -s` signaller.

use std::ffi::{c_char, c_void};

use ngx::core;
use ngx::ffi::*;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, Merge, MergeConfigError};
use proxy_wasm_host::{CompiledModule, Compiler};

use crate::Module;

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

/// Longest `name=` label of a `proxy_wasm` (it goes into metric series, 255 bytes each).
const MAX_FILTER_LABEL: usize = 64;

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
    pub call_ssl_verify: Option<bool>,
    pub call_trusted: Option<String>,
    /// The generated HTTP-call location's configuration (a `void **`), 0 if none.
    pub call_loc_conf: usize,
    /// What calls can reach without a resolver, and whether there is one (call_policy.rs).
    pub reachable: crate::call_policy::Reachable,
    /// proxy_wasm_call_allow naming no wasm_module (yet): resolved in postconfiguration.
    pub call_allow_pending: Vec<(String, Vec<proxy_wasm_host::call_target::Pattern>, Origin)>,
    /// proxy_wasm_call_allow for plugins loaded from Lua, by the name given to load().
    pub lua_call_allow: Vec<(String, Vec<proxy_wasm_host::call_target::Pattern>)>,
    /// wasm_shm_size, and the zone declared in postconfiguration (see shm.rs).
    pub shm_size: Option<usize>,
    pub shm_zone: Option<std::ptr::NonNull<ngx_shm_zone_t>>,
    /// proxy_wasm_filter_metrics (None = off: see README, Metrics, for what they cost).
    pub filter_metrics: Option<bool>,
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

#[derive(Default, Clone)]
pub(crate) struct LocConf {
    /// Indices into MainConf::filters, in execution order; None = inherit.
    pub filters: Option<Vec<usize>>,
    /// proxy_wasm_body_buffer_limit: the most body bytes one filter may hold while paused.
    pub body_buffer_limit: Option<usize>,
    /// proxy_wasm_failure_policy: Some(status) fails closed with it, Some(0) fails open.
    pub failure_status: Option<u32>,
}

/// Default of proxy_wasm_body_buffer_limit.
pub(crate) const DEFAULT_BODY_BUFFER_LIMIT: usize = 10 << 20;

impl Merge for LocConf {
    fn merge(&mut self, prev: &LocConf) -> Result<(), MergeConfigError> {
        if self.filters.is_none() {
            self.filters = prev.filters.clone();
        }
        if self.body_buffer_limit.is_none() {
            self.body_buffer_limit = prev.body_buffer_limit;
        }
        if self.failure_status.is_none() {
            self.failure_status = prev.failure_status;
        }
        Ok(())
    }
}

/// The body buffer limit of the request's location.
pub(crate) unsafe fn body_buffer_limit(r: *mut ngx_http_request_t) -> usize {
    use ngx::http::HttpModuleLocationConf;
    Module::location_conf(&*r).and_then(|c| c.body_buffer_limit).unwrap_or(DEFAULT_BODY_BUFFER_LIMIT)
}

// SAFETY: the configuration types are the ones create_main_conf / create_loc_conf allocate.
unsafe impl HttpModuleMainConf for Module {
    type MainConf = MainConf;
}
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = LocConf;
}

/// Arguments of the directive being parsed (args[0] is its name).
unsafe fn args<'a>(cf: *mut ngx_conf_t) -> &'a [ngx_str_t] {
    (*(*cf).args).as_slice()
}

fn arg_string(s: &ngx_str_t) -> String {
    String::from_utf8_lossy(s.as_bytes()).into_owned()
}

macro_rules! conf_error {
    ($cf:expr, $($arg:tt)*) => {{
        let msg = format!($($arg)*);
        ngx::ngx_conf_log_error!(NGX_LOG_EMERG, $cf, "{}", msg);
        return core::NGX_CONF_ERROR;
    }};
}

/// `wasm_vm wasmer [cranelift|singlepass];`, or `wasm_vm wasmtime [ANY];`: APISIX's template
/// writes the latter whenever config.yaml has a `wasm:` section, so it asks for the default
/// engine (with a notice) rather than failing APISIX's configuration.
pub(crate) extern "C" fn set_wasm_vm(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a live `cf` whose args are this
    // directive\'s words, and `conf` pointing at the configuration its COMMANDS entry names.
    crate::guard("wasm_vm", core::NGX_CONF_ERROR, || unsafe {
        let mcf = &mut *(conf as *mut MainConf);
        let a = args(cf);
        if mcf.compiler.is_some() {
            conf_error!(cf, "\"wasm_vm\" directive is duplicate");
        }
        let compiler = if a[1].as_bytes() == b"wasmtime" {
            let ignored = a.get(2).map(|s| format!(" (\"{}\" ignored)", arg_string(s))).unwrap_or_default();
            ngx::ngx_conf_log_error!(
                NGX_LOG_NOTICE,
                cf,
                "\"wasm_vm wasmtime\" is served by wasmer with the {} compiler{}: this module has no wasmtime",
                Compiler::Cranelift.name(),
                ignored
            );
            Compiler::Cranelift
        } else if a[1].as_bytes() != b"wasmer" {
            conf_error!(
                cf,
                "unknown wasm runtime \"{}\" in \"wasm_vm\": use \"wasmer\" (or \"wasmtime\", which wasmer serves)",
                arg_string(&a[1])
            );
        } else if a.len() > 2 {
            match Compiler::from_name(&arg_string(&a[2])) {
                Some(c) => c,
                None => conf_error!(
                    cf,
                    "unknown wasmer compiler \"{}\" in \"wasm_vm\": use \"cranelift\" or \"singlepass\"",
                    arg_string(&a[2])
                ),
            }
        } else {
            Compiler::Cranelift
        };
        if let Err(e) = proxy_wasm_host::new_engine(compiler, &proxy_wasm_host::DEFAULT_LIMITS) {
            conf_error!(cf, "wasm_vm: {e}");
        }
        mcf.compiler = Some(compiler);
        crate::lua_ffi::set_vm(mcf.lua_engine());
        core::NGX_CONF_OK
    })
}

/// `wasm_module NAME PATH [VM_CONFIG];`
pub(crate) extern "C" fn set_wasm_module(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a live `cf` whose args are this
    // directive\'s words, and `conf` pointing at the configuration its COMMANDS entry names.
    crate::guard("wasm_module", core::NGX_CONF_ERROR, || unsafe {
        let mcf = &mut *(conf as *mut MainConf);
        let a = args(cf);
        let name = arg_string(&a[1]);
        if name.is_empty() {
            conf_error!(cf, "wasm_module: empty module name");
        }
        if mcf.module_index(&name).is_some() {
            conf_error!(cf, "wasm_module \"{name}\" is already defined");
        }
        // Relative paths are relative to the prefix, like every nginx file path.
        let mut path = a[2];
        if ngx_conf_full_name((*cf).cycle, &mut path, 0) != NGX_OK as ngx_int_t {
            conf_error!(cf, "wasm_module \"{name}\": bad path \"{}\"", arg_string(&a[2]));
        }
        let path = arg_string(&path);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => conf_error!(cf, "wasm_module \"{name}\": cannot read \"{path}\": {e}"),
        };
        let vm_config = a.get(3).map(|s| s.as_bytes().to_vec()).unwrap_or_default();
        mcf.modules.push(ModuleDef { name, path, bytes, vm_config, origin: Origin::of(cf), compiled: None, call_allow: Vec::new() });
        core::NGX_CONF_OK
    })
}

/// `proxy_wasm NAME [PLUGIN_CONFIG [name=LABEL]];` — appends a filter to this level's chain.
/// The label is a third argument only, so that no existing plugin configuration changes
/// meaning (`proxy_wasm m name=x;` still passes "name=x" to the plugin).
pub(crate) extern "C" fn set_proxy_wasm(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a live `cf` whose args are this
    // directive\'s words, and `conf` pointing at the configuration its COMMANDS entry names.
    crate::guard("proxy_wasm", core::NGX_CONF_ERROR, || unsafe {
        let lcf = &mut *(conf as *mut LocConf);
        let Some(mcf) = Module::main_conf_mut(&*cf) else {
            conf_error!(cf, "proxy_wasm: no http main configuration");
        };
        let a = args(cf);
        let name = arg_string(&a[1]);
        let Some(module) = mcf.module_index(&name) else {
            conf_error!(cf, "proxy_wasm: unknown module \"{name}\": declare it first with \"wasm_module {name} /path/to/filter.wasm;\" in the http block");
        };
        let config = a.get(2).map(|s| s.as_bytes().to_vec()).unwrap_or_default();
        let origin = Origin::of(cf);
        let label = match a.get(3).map(arg_string) {
            Some(l) => match l.strip_prefix("name=") {
                Some(v) if !v.is_empty() && v.len() <= MAX_FILTER_LABEL && v.bytes().all(|b| b.is_ascii_graphic()) => v.to_string(),
                _ => conf_error!(
                    cf,
                    "proxy_wasm: invalid third argument \"{l}\": use name=LABEL (1..{MAX_FILTER_LABEL} printable characters, no spaces)"
                ),
            },
            None => {
                let file = origin.file.rsplit('/').next().unwrap_or("");
                format!("{file}:{}", origin.line)
            }
        };
        mcf.filters.push(FilterDef { module, config, origin, label });
        let idx = mcf.filters.len() - 1;
        lcf.filters.get_or_insert_with(Vec::new).push(idx);
        core::NGX_CONF_OK
    })
}

/// `proxy_wasm_filter_metrics on|off;` (default off): the per-filter figures on
/// `proxy_wasm_metrics` (see worker.rs, `flush_stats`).
pub(crate) extern "C" fn set_filter_metrics(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a live `cf` whose args are this
    // directive\'s words, and `conf` pointing at the configuration its COMMANDS entry names.
    crate::guard("proxy_wasm_filter_metrics", core::NGX_CONF_ERROR, || unsafe {
        let mcf = &mut *(conf as *mut MainConf);
        if mcf.filter_metrics.is_some() {
            conf_error!(cf, "\"proxy_wasm_filter_metrics\" directive is duplicate");
        }
        mcf.filter_metrics = Some(match arg_string(&args(cf)[1]).as_str() {
            "on" => true,
            "off" => false,
            other => conf_error!(cf, "invalid value \"{other}\" in \"proxy_wasm_filter_metrics\": on or off"),
        });
        core::NGX_CONF_OK
    })
}

/// `proxy_wasm_body_buffer_limit SIZE;`
pub(crate) extern "C" fn set_body_buffer_limit(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a live `cf` whose args are this
    // directive\'s words, and `conf` pointing at the configuration its COMMANDS entry names.
    crate::guard("proxy_wasm_body_buffer_limit", core::NGX_CONF_ERROR, || unsafe {
        let lcf = &mut *(conf as *mut LocConf);
        if lcf.body_buffer_limit.is_some() {
            conf_error!(cf, "\"proxy_wasm_body_buffer_limit\" directive is duplicate");
        }
        let mut v = args(cf)[1];
        let n = ngx_parse_size(&mut v);
        if n < 0 {
            conf_error!(cf, "invalid size \"{}\" in \"proxy_wasm_body_buffer_limit\"", arg_string(&args(cf)[1]));
        }
        lcf.body_buffer_limit = Some(n as usize);
        core::NGX_CONF_OK
    })
}

/// `wasm_compile_cache PATH;` — an on-disk cache of compiled modules. Only the master writes
/// it; the directory and its files must belong to the master's user and be writable by no
/// one else, or they are ignored (logged at warn, the module is compiled): see
/// proxy_wasm_host::cache.
pub(crate) extern "C" fn set_compile_cache(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a live `cf` whose args are this
    // directive\'s words, and `conf` pointing at the configuration its COMMANDS entry names.
    crate::guard("wasm_compile_cache", core::NGX_CONF_ERROR, || unsafe {
        let mcf = &mut *(conf as *mut MainConf);
        if mcf.cache_dir.is_some() {
            conf_error!(cf, "\"wasm_compile_cache\" directive is duplicate");
        }
        let mut path = args(cf)[1];
        if ngx_conf_full_name((*cf).cycle, &mut path, 0) != NGX_OK as ngx_int_t {
            conf_error!(cf, "wasm_compile_cache: bad path \"{}\"", arg_string(&args(cf)[1]));
        }
        mcf.cache_dir = Some(std::path::PathBuf::from(arg_string(&path)));
        // init_by_lua may load plugins before our postconfiguration runs.
        crate::lua_ffi::set_cache_dir(mcf.cache_dir.clone());
        crate::worker::note_master_uid();
        core::NGX_CONF_OK
    })
}

/// `wasm_max_memory SIZE;`
pub(crate) extern "C" fn set_max_memory(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a live `cf` whose args are this
    // directive\'s words, and `conf` pointing at the configuration its COMMANDS entry names.
    crate::guard("wasm_max_memory", core::NGX_CONF_ERROR, || unsafe {
        let mcf = &mut *(conf as *mut MainConf);
        let mut v = args(cf)[1];
        let n = ngx_parse_offset(&mut v);
        if n < 65536 {
            conf_error!(cf, "invalid size \"{}\" in \"wasm_max_memory\": at least 64k (one wasm page)", arg_string(&args(cf)[1]));
        }
        mcf.max_memory = Some(n as u64);
        crate::lua_ffi::set_vm(mcf.lua_engine());
        core::NGX_CONF_OK
    })
}

/// `wasm_max_instructions NUMBER;` (0 = off)
pub(crate) extern "C" fn set_max_instructions(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a live `cf` whose args are this
    // directive\'s words, and `conf` pointing at the configuration its COMMANDS entry names.
    crate::guard("wasm_max_instructions", core::NGX_CONF_ERROR, || unsafe {
        let mcf = &mut *(conf as *mut MainConf);
        let text = arg_string(&args(cf)[1]);
        let (digits, mult) = match text.chars().last() {
            Some('k') | Some('K') => (&text[..text.len() - 1], 1_000u64),
            Some('m') | Some('M') => (&text[..text.len() - 1], 1_000_000),
            Some('g') | Some('G') => (&text[..text.len() - 1], 1_000_000_000),
            _ => (text.as_str(), 1),
        };
        match digits.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)) {
            Some(n) => {
                mcf.max_instructions = Some(n);
                crate::lua_ffi::set_vm(mcf.lua_engine());
            }
            None => conf_error!(cf, "invalid number \"{text}\" in \"wasm_max_instructions\""),
        }
        core::NGX_CONF_OK
    })
}

/// `proxy_wasm_failure_policy closed [STATUS] | open;`
pub(crate) extern "C" fn set_failure_policy(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a live `cf` whose args are this
    // directive\'s words, and `conf` pointing at the configuration its COMMANDS entry names.
    crate::guard("proxy_wasm_failure_policy", core::NGX_CONF_ERROR, || unsafe {
        let lcf = &mut *(conf as *mut LocConf);
        let a = args(cf);
        let status = match (arg_string(&a[1]).as_str(), a.get(2).map(arg_string)) {
            ("open", None) => 0,
            ("closed", None) => 500,
            ("closed", Some(s)) => match s.parse::<u32>() {
                Ok(n) if (400..=599).contains(&n) => n,
                _ => conf_error!(cf, "invalid status \"{s}\" in \"proxy_wasm_failure_policy\": use 400..599"),
            },
            (p, _) => conf_error!(cf, "invalid \"proxy_wasm_failure_policy\" \"{p}\": use \"closed [status]\" or \"open\""),
        };
        lcf.failure_status = Some(status);
        core::NGX_CONF_OK
    })
}

/// The failure policy of the request's location: the status to fail with, or 0 to skip the
/// failed filter (fail open).
pub(crate) unsafe fn failure_status(r: *mut ngx_http_request_t) -> u32 {
    use ngx::http::HttpModuleLocationConf;
    Module::location_conf(&*r).and_then(|c| c.failure_status).unwrap_or(500)
}

/// `wasm_call_timeout TIME;` — for calls made with timeout 0, and nginx's proxy timeouts.
pub(crate) extern "C" fn set_call_timeout(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a live `cf` whose args are this
    // directive\'s words, and `conf` pointing at the configuration its COMMANDS entry names.
    crate::guard("wasm_call_timeout", core::NGX_CONF_ERROR, || unsafe {
        let mcf = &mut *(conf as *mut MainConf);
        let mut v = args(cf)[1];
        let ms = ngx_parse_time(&mut v, 0);
        if ms == NGX_ERROR as ngx_int_t || ms <= 0 {
            conf_error!(cf, "invalid time \"{}\" in \"wasm_call_timeout\"", arg_string(&args(cf)[1]));
        }
        mcf.call_timeout = Some(ms as ngx_msec_t);
        core::NGX_CONF_OK
    })
}

/// `wasm_call_ssl_verify on|off;` (default on)
pub(crate) extern "C" fn set_call_ssl_verify(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a live `cf` whose args are this
    // directive\'s words, and `conf` pointing at the configuration its COMMANDS entry names.
    crate::guard("wasm_call_ssl_verify", core::NGX_CONF_ERROR, || unsafe {
        let mcf = &mut *(conf as *mut MainConf);
        mcf.call_ssl_verify = Some(match arg_string(&args(cf)[1]).as_str() {
            "on" => true,
            "off" => false,
            other => conf_error!(cf, "invalid value \"{other}\" in \"wasm_call_ssl_verify\": on or off"),
        });
        core::NGX_CONF_OK
    })
}

/// `wasm_call_ssl_trusted_certificate FILE;` (default: the system bundle)
pub(crate) extern "C" fn set_call_trusted(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a live `cf` whose args are this
    // directive\'s words, and `conf` pointing at the configuration its COMMANDS entry names.
    crate::guard("wasm_call_ssl_trusted_certificate", core::NGX_CONF_ERROR, || unsafe {
        let mcf = &mut *(conf as *mut MainConf);
        let mut path = args(cf)[1];
        if ngx_conf_full_name((*cf).cycle, &mut path, 1) != NGX_OK as ngx_int_t {
            conf_error!(cf, "wasm_call_ssl_trusted_certificate: bad path \"{}\"", arg_string(&args(cf)[1]));
        }
        let p = arg_string(&path);
        if !std::path::Path::new(&p).is_file() {
            conf_error!(cf, "wasm_call_ssl_trusted_certificate: \"{p}\" is not a readable file");
        }
        mcf.call_trusted = Some(p);
        core::NGX_CONF_OK
    })
}
