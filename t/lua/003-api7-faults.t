# api7/wasm-nginx-module's known faults, fixed: an action other than Continue/Pause, or Pause
# with no pending call, must not loop or crash; HTTP-call out-parameters are never stale;
# freed handles are refused. The raw C functions are called the way api7's library calls them.
use lib 't/lib';
use Test::Nginx::Socket;
use ProxyWasmLua;

ProxyWasmLua::load_by_default("testbed", "testbed.wasm");

run_tests();

__DATA__

=== TEST 1: action 2 from on_request_headers: on_http returns 0 (api7's Lua loop spins on 2..99)
--- http_config
init_worker_by_lua_block { require("apisix_like").load("actions", "$TEST_NGINX_FILTERS/lua_actions.wat") }
--- config
location /t {
    access_by_lua_block {
        local C = require("ffi").C
        local ctx = assert(require("apisix_like").ctx("actions", "x"))
        local r = require("resty.core.base").get_request()
        ngx.ctx.rc = tonumber(C.ngx_http_wasm_on_http(ctx, r, 1, nil, 0, 1))
        require("apisix_like").access("actions", "x")
    }
    content_by_lua_block { ngx.say("rc=", ngx.ctx.rc, " continued") }
}
--- request
GET /t
--- response_body
rc=0 continued
--- error_log
returned Pause with no HTTP call pending and no local response: continuing

=== TEST 2: action 7 from on_request_body gives 0 as well
--- http_config
init_worker_by_lua_block { require("apisix_like").load("actions", "$TEST_NGINX_FILTERS/lua_actions.wat") }
--- config
location /t {
    access_by_lua_block {
        local C = require("ffi").C
        local ctx = assert(require("apisix_like").ctx("actions", "x"))
        local r = require("resty.core.base").get_request()
        ngx.ctx.rc = tonumber(C.ngx_http_wasm_on_http(ctx, r, 2, "abc", 3, 1))
    }
    content_by_lua_block { ngx.say("rc=", ngx.ctx.rc) }
}
--- request
POST /t
abc
--- response_body
rc=0

=== TEST 3: Pause with nothing pending: rc 0, no call to fetch, call_get writes an empty call
--- config
location /t {
    access_by_lua_block {
        local ffi = require("ffi")
        local C = ffi.C
        local ctx = assert(require("apisix_like").ctx("testbed", "pause_request"))
        local r = require("resty.core.base").get_request()
        local rc = tonumber(C.ngx_http_wasm_on_http(ctx, r, 1, nil, 0, 1))
        local n = tonumber(C.ngx_http_wasm_call_max_headers_count(r))
        -- What api7's library would do next had rc been 1: it must not crash.
        local s = ffi.new("ngx_str_t[5]")
        s[0].data, s[0].len = "STALE", 5
        local elts = ffi.new("proxy_wasm_table_elt_t[?]", n + 1)
        elts[0].key.len = 3
        local timeout = ffi.new("int32_t[1]", 99)
        C.ngx_http_wasm_call_get(r, s, s + 1, s + 2, s + 3, elts, s + 4, timeout)
        local resp = tonumber(C.ngx_http_wasm_on_http_call_resp(ctx, r, nil, 0, nil))
        ngx.ctx.out = string.format("rc=%d n=%d method_len=%d host_len=%d key_len=%d timeout=%d resp=%d",
            rc, n, tonumber(s[0].len), tonumber(s[2].len), elts[0].key.len, timeout[0], resp)
    }
    content_by_lua_block { ngx.say(ngx.ctx.out) }
}
--- request
GET /t
--- response_body
rc=0 n=0 method_len=0 host_len=0 key_len=0 timeout=0 resp=-1
--- error_log
returned Pause with no HTTP call pending
no HTTP call pending for this request
no HTTP call in flight
--- no_error_log
exited on signal

=== TEST 4: Pause from on_response_headers with nothing pending: the response goes on
--- http_config
init_worker_by_lua_block { require("apisix_like").load("actions", "$TEST_NGINX_FILTERS/lua_actions.wat") }
--- config
location /t {
    header_filter_by_lua_block { require("apisix_like").header_filter("actions", "x") }
    content_by_lua_block { ngx.say("ok") }
}
--- request
GET /t
--- response_body
ok

=== TEST 5: a plugin ctx keeps its plugin alive after the plugin is unloaded
--- http_config
init_worker_by_lua_block {
    local ffi = require("ffi")
    local wasm = require("resty.proxy-wasm")
    local plugin = assert(wasm.load("testbed", "$TEST_NGINX_FILTERS/testbed.wasm"))
    package.loaded.kept_ctx = assert(wasm.on_configure(plugin, "req_add=x-a:kept"))
    -- What the plugin's finalizer does, now.
    ffi.C.ngx_http_wasm_unload_plugin(ffi.gc(plugin, nil))
}
--- config
location /t {
    access_by_lua_block {
        local ok, err = require("resty.proxy-wasm").on_http_request_headers(package.loaded.kept_ctx)
        if not ok then ngx.log(ngx.ERR, err) end
    }
    content_by_lua_block { ngx.say(ngx.var.http_x_a) }
}
--- request
GET /t
--- response_body
kept
--- error_log
testbed: unloaded wasm plugin

=== TEST 6: a deleted plugin ctx pointer is refused, not dereferenced
--- config
location /t {
    access_by_lua_block {
        local ffi = require("ffi")
        local wasm = require("resty.proxy-wasm")
        local ctx = assert(wasm.on_configure(require("apisix_like").plugins.testbed, "name=gone"))
        local raw = ffi.cast("void *", ctx)
        -- What the ctx's finalizer does, now.
        ffi.C.ngx_http_wasm_delete_plugin_ctx(ffi.gc(ctx, nil))
        local r = require("resty.core.base").get_request()
        ngx.ctx.rc = tonumber(ffi.C.ngx_http_wasm_on_http(raw, r, 1, nil, 0, 1))
        ngx.ctx.cfg = ffi.C.ngx_http_wasm_on_configure(raw, "x", 1) == nil
    }
    content_by_lua_block { ngx.say("rc=", ngx.ctx.rc, " configure_refused=", ngx.ctx.cfg) }
}
--- request
GET /t
--- response_body
rc=-1 configure_refused=true
--- error_log
on_http: bad plugin ctx: not a live handle
free plugin context
--- no_error_log
exited on signal
