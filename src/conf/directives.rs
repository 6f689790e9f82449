//! Directive handlers: they only check, record and read files. Compiling and running plugins
//! happens once per configuration load in postconfiguration (vm/load.rs), never in the
//! `nginx -s` signaller.

use ngx::core;
use ngx::ffi::*;
use proxy_wasm_host::{shared_store, Compiler};

use super::{FilterDef, LocConf, MainConf, ModuleDef, Origin};

/// Longest `name=` label of a `proxy_wasm` (it goes into metric series, 255 bytes each).
const MAX_FILTER_LABEL: usize = 64;

/// Arguments of the directive being parsed (args[0] is its name).
unsafe fn args<'a>(cf: *mut ngx_conf_t) -> &'a [ngx_str_t] {
    (*(*cf).args).as_slice()
}

fn arg_string(s: &ngx_str_t) -> String {
    String::from_utf8_lossy(s.as_bytes()).into_owned()
}


directive_handler!(
    /// `wasm_vm wasmer [cranelift|singlepass];`, or `wasm_vm wasmtime [ANY];`: APISIX's template
    /// writes the latter whenever config.yaml has a `wasm:` section, so it asks for the default
    /// engine (with a notice) rather than failing APISIX's configuration.
    set_wasm_vm, "wasm_vm", |cf, mcf: MainConf| {
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
    super::lua_engine::set_vm(mcf.lua_engine());
    core::NGX_CONF_OK
});

directive_handler!(
    /// `wasm_module NAME PATH [VM_CONFIG];`
    set_wasm_module, "wasm_module", |cf, mcf: MainConf| {
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
});

directive_handler!(
    /// `proxy_wasm NAME [PLUGIN_CONFIG [name=LABEL]];` — appends a filter to this level's chain.
    /// The label is a third argument only, so that no existing plugin configuration changes
    /// meaning (`proxy_wasm m name=x;` still passes "name=x" to the plugin).
    set_proxy_wasm, "proxy_wasm", |cf, lcf: LocConf| {
    let Some(mcf) = super::main_conf_of(cf) else {
        conf_error!(cf, "proxy_wasm: no main configuration");
    };
    let a = args(cf);
    let name = arg_string(&a[1]);
    let Some(module) = mcf.module_index(&name) else {
        conf_error!(cf, "proxy_wasm: unknown module \"{name}\": declare it first with \"wasm_module {name} /path/to/filter.wasm;\" in the {} block", super::BLOCK);
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
});

directive_handler!(
    /// `proxy_wasm_body_buffer_limit SIZE;` (http: per body a filter holds paused) and
    /// `proxy_wasm_buffer_limit SIZE;` (stream: per direction); messages name the directive.
    set_buffer_limit, "proxy_wasm_body_buffer_limit", |cf, lcf: LocConf| {
    let name = arg_string(&args(cf)[0]);
    if lcf.body_buffer_limit.is_some() {
        conf_error!(cf, "\"{name}\" directive is duplicate");
    }
    let mut v = args(cf)[1];
    let n = ngx_parse_size(&mut v);
    if n < 0 {
        conf_error!(cf, "invalid size \"{}\" in \"{name}\"", arg_string(&args(cf)[1]));
    }
    lcf.body_buffer_limit = Some(n as usize);
    core::NGX_CONF_OK
});

directive_handler!(
    /// `wasm_compile_cache PATH;` — an on-disk cache of compiled modules. Only the master writes
    /// it; the directory and its files must belong to the master's user and be writable by no
    /// one else, or they are ignored (logged at warn, the module is compiled): see
    /// proxy_wasm_host::cache.
    set_compile_cache, "wasm_compile_cache", |cf, mcf: MainConf| {
    if mcf.cache_dir.is_some() {
        conf_error!(cf, "\"wasm_compile_cache\" directive is duplicate");
    }
    let mut path = args(cf)[1];
    if ngx_conf_full_name((*cf).cycle, &mut path, 0) != NGX_OK as ngx_int_t {
        conf_error!(cf, "wasm_compile_cache: bad path \"{}\"", arg_string(&args(cf)[1]));
    }
    mcf.cache_dir = Some(std::path::PathBuf::from(arg_string(&path)));
    // init_by_lua may load plugins before our postconfiguration runs.
    super::lua_engine::set_cache_dir(mcf.cache_dir.clone());
    super::cache_policy::note_master_uid();
    core::NGX_CONF_OK
});

directive_handler!(
    /// `wasm_max_memory SIZE;`
    set_max_memory, "wasm_max_memory", |cf, mcf: MainConf| {
    let mut v = args(cf)[1];
    let n = ngx_parse_offset(&mut v);
    if n < 65536 {
        conf_error!(cf, "invalid size \"{}\" in \"wasm_max_memory\": at least 64k (one wasm page)", arg_string(&args(cf)[1]));
    }
    mcf.max_memory = Some(n as u64);
    super::lua_engine::set_vm(mcf.lua_engine());
    core::NGX_CONF_OK
});

directive_handler!(
    /// `wasm_max_instructions NUMBER;` (0 = off)
    set_max_instructions, "wasm_max_instructions", |cf, mcf: MainConf| {
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
            super::lua_engine::set_vm(mcf.lua_engine());
        }
        None => conf_error!(cf, "invalid number \"{text}\" in \"wasm_max_instructions\""),
    }
    core::NGX_CONF_OK
});

directive_handler!(
    /// `proxy_wasm_failure_policy closed [STATUS] | open;`
    set_failure_policy, "proxy_wasm_failure_policy", |cf, lcf: LocConf| {
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
});

directive_handler!(
    /// `wasm_call_timeout TIME;` — for calls made with timeout 0, and nginx's proxy timeouts.
    set_call_timeout, "wasm_call_timeout", |cf, mcf: MainConf| {
    let mut v = args(cf)[1];
    let ms = ngx_parse_time(&mut v, 0);
    if ms == NGX_ERROR as ngx_int_t || ms <= 0 {
        conf_error!(cf, "invalid time \"{}\" in \"wasm_call_timeout\"", arg_string(&args(cf)[1]));
    }
    mcf.call_timeout = Some(ms as ngx_msec_t);
    core::NGX_CONF_OK
});

directive_handler!(
    /// `wasm_call_ssl_trusted_certificate FILE;` (default: the system bundle)
    set_call_trusted, "wasm_call_ssl_trusted_certificate", |cf, mcf: MainConf| {
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
});

directive_handler!(
    /// `wasm_shm_size SIZE;`
    set_shm_size, "wasm_shm_size", |cf, mcf: MainConf| {
    let arg: ngx_str_t = (*(*cf).args).as_slice()[1];
    let text = String::from_utf8_lossy(arg.as_bytes()).into_owned();
    if mcf.shm_size.is_some() {
        ngx::ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"wasm_shm_size\" directive is duplicate");
        return core::NGX_CONF_ERROR;
    }
    let mut v = arg;
    let n = ngx_parse_size(&mut v);
    if n < 0 || (n as usize) < shared_store::MIN_SIZE || n as usize > super::MAX_SHM_SIZE {
        ngx::ngx_conf_log_error!(NGX_LOG_EMERG, cf, "invalid size \"{}\" in \"wasm_shm_size\": use 1m..1g", text);
        return core::NGX_CONF_ERROR;
    }
    mcf.shm_size = Some(n as usize);
    core::NGX_CONF_OK
});
