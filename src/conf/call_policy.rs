//! Which targets a module's HTTP calls may reach (`proxy_wasm_call_allow`), checked at
//! dispatch inside proxy_http_call, and refusing there the targets that could only fail
//! later (a host name while no `resolver` is configured), as Envoy refuses an unknown cluster.
//!
//! Default: a module may call the `upstream {}` blocks of the configuration, nothing else.
//! `proxy_wasm_call_allow MODULE PATTERN ...;` (http level, repeatable) adds host:port / IP
//! targets; the patterns are those of `proxy_wasm_host::call_target` (loopback and
//! link-local targets need a pattern that names them).

use std::ffi::{c_char, c_void};

use ngx::core;
use ngx::ffi::*;
use ngx::http::{HttpModuleMainConf, NgxHttpUpstreamModule};
use proxy_wasm_host::call_target::{self, Host, Pattern};
use proxy_wasm_host::CallPolicy;

use crate::conf::MainConf;

/// What nginx can reach without a resolver, and whether it has one (postconfiguration).
#[derive(Default, Clone)]
pub(crate) struct Reachable {
    /// Names of `upstream {}` blocks, lowercased.
    blocks: Vec<String>,
    /// Upstreams a static `proxy_pass host:port` created: (host lowercased, port).
    implicit: Vec<(String, u16)>,
    /// The call location has a `resolver`.
    resolver: bool,
}

/// Reads the configuration's upstreams and the call location's resolver (postconfiguration,
/// after the call location was created).
pub(crate) unsafe fn collect(cf: *mut ngx_conf_t, mcf: &mut MainConf) {
    let mut r = Reachable::default();
    if let Some(umcf) = NgxHttpUpstreamModule::main_conf(&*cf) {
        let elts = umcf.upstreams.elts as *const *const ngx_http_upstream_srv_conf_t;
        for i in 0..umcf.upstreams.nelts {
            let u = &**elts.add(i);
            let host = String::from_utf8_lossy(u.host.as_bytes()).to_ascii_lowercase();
            if u.flags & NGX_HTTP_UPSTREAM_CREATE as ngx_uint_t != 0 {
                r.blocks.push(host);
            } else {
                r.implicit.push((host, u.port));
            }
        }
    }
    let loc_conf = mcf.call_loc_conf as *mut *mut c_void;
    if !loc_conf.is_null() {
        let clcf = *loc_conf.add(ngx_http_core_module.ctx_index) as *const ngx_http_core_loc_conf_t;
        // Without a `resolver`, nginx gives every location a dummy one with no servers.
        r.resolver = !clcf.is_null() && !(*clcf).resolver.is_null() && (*(*clcf).resolver).connections.nelts > 0;
    }
    mcf.reachable = r;
}

/// Decides on one target for a module with these patterns.
pub(crate) fn check(reach: &Reachable, module: &str, allow: &[Pattern], upstream: &[u8]) -> Result<(), String> {
    let t = call_target::parse_target(upstream)?;
    if let (Host::Name(n), None) = (&t.host, t.port) {
        if reach.blocks.iter().any(|b| b == n) {
            return Ok(());
        }
    }
    if !call_target::allowed(allow, &t) {
        return Err(if t.is_special() {
            format!("module \"{module}\" may not call it: a loopback or link-local target needs a \"proxy_wasm_call_allow {module}\" pattern naming it")
        } else {
            format!("module \"{module}\" may not call it: it is not an upstream {{}} block and no \"proxy_wasm_call_allow {module}\" pattern matches it")
        });
    }
    if let Host::Name(n) = &t.host {
        let port = t.port.unwrap_or(80);
        if !reach.resolver && !reach.implicit.iter().any(|(h, p)| h == n && *p == port) {
            return Err(format!("no resolver defined to resolve \"{n}\": set \"resolver\" at http level, or call an upstream {{}} block"));
        }
    }
    Ok(())
}

/// The policy of module `mi`'s instances.
pub(crate) fn for_module(conf: &MainConf, mi: usize) -> CallPolicy {
    let m = &conf.modules[mi];
    let (reach, name, allow) = (conf.reachable.clone(), m.name.clone(), m.call_allow.clone());
    Box::new(move |upstream: &[u8]| check(&reach, &name, &allow, upstream))
}

/// The HTTP-call policy of module `mi`'s instances: None in the stream module, which sends
/// no calls (it has no http subrequests to send them with).
pub(crate) fn policy(conf: &MainConf, mi: usize) -> Option<CallPolicy> {
    (!cfg!(feature = "stream")).then(|| for_module(conf, mi))
}

/// Gives a new instance its policy; without one, proxy_http_call says BAD_ARGUMENT.
pub(crate) fn install(inst: &mut proxy_wasm_host::PluginInstance, policy: Option<CallPolicy>) {
    match policy {
        Some(p) => inst.set_call_policy(p),
        None => inst.refuse_http_calls(),
    }
}

/// Postconfiguration: gives each proxy_wasm_call_allow that named no module yet to its
/// wasm_module, or, with `wasm_vm` (the Lua path), to the plugins Lua loads by that name.
pub(crate) fn resolve(mcf: &mut MainConf) -> Result<(), String> {
    for (name, patterns, origin) in std::mem::take(&mut mcf.call_allow_pending) {
        if let Some(mi) = mcf.module_index(&name) {
            mcf.modules[mi].call_allow.extend(patterns);
        } else if mcf.compiler.is_some() {
            match mcf.lua_call_allow.iter_mut().find(|(n, _)| *n == name) {
                Some((_, p)) => p.extend(patterns),
                None => mcf.lua_call_allow.push((name, patterns)),
            }
        } else {
            return Err(format!(
                "proxy_wasm_call_allow: unknown module \"{name}\": declare it with \"wasm_module\" (or, for plugins loaded from Lua, set \"wasm_vm\") {origin}"
            ));
        }
    }
    Ok(())
}

#[cfg(feature = "http")]
/// The policy of a plugin Lua loads as `name`: the allow-list of the configuration running
/// when a call is made (Lua runs calls with cosockets: no upstream{} blocks, and the
/// resolver is the request's location's, so only the allow-list applies).
pub(crate) fn for_lua(name: &str) -> CallPolicy {
    let name = name.to_string();
    Box::new(move |upstream: &[u8]| {
        use ngx::http::HttpModuleMainConf;
        // SAFETY: ngx_cycle is the running cycle; the http main configuration lives as long.
        let mcf = unsafe { crate::conf::Module::main_conf(&*ngx_cycle) };
        let allow = mcf.and_then(|m| m.lua_call_allow.iter().find(|(n, _)| *n == name)).map(|(_, p)| p.as_slice());
        let t = call_target::parse_target(upstream)?;
        if call_target::allowed(allow.unwrap_or(&[]), &t) {
            return Ok(());
        }
        Err(format!("plugin \"{name}\" may not call it: no \"proxy_wasm_call_allow {name}\" pattern matches it (loopback and link-local targets need a pattern naming them)"))
    })
}

/// `proxy_wasm_call_allow MODULE PATTERN ...;`
pub(crate) extern "C" fn set_call_allow(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a live `cf` whose args are this
    // directive's words, and `conf` pointing at the configuration its COMMANDS entry names.
    crate::util::guard("proxy_wasm_call_allow", core::NGX_CONF_ERROR, || unsafe {
        let mcf = &mut *(conf as *mut MainConf);
        let a: &[ngx_str_t] = (*(*cf).args).as_slice();
        let name = String::from_utf8_lossy(a[1].as_bytes()).into_owned();
        let mut patterns = Vec::new();
        for w in &a[2..] {
            let text = String::from_utf8_lossy(w.as_bytes()).into_owned();
            match call_target::parse_pattern(&text) {
                Ok(p) => patterns.push(p),
                Err(e) => {
                    ngx::ngx_conf_log_error!(NGX_LOG_EMERG, cf, "invalid pattern \"{}\" in \"proxy_wasm_call_allow\": {}", text, e);
                    return core::NGX_CONF_ERROR;
                }
            }
        }
        match mcf.module_index(&name) {
            Some(mi) => mcf.modules[mi].call_allow.extend(patterns),
            // A wasm_module further down, or a plugin Lua loads under that name.
            None => mcf.call_allow_pending.push((name, patterns, crate::conf::Origin::of(cf))),
        }
        core::NGX_CONF_OK
    })
}
