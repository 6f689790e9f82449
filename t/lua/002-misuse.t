# Every misuse of resty.proxy-wasm gets a clear error, and failing plugins fail the request
# cleanly (503 from the APISIX-like wrapper) without harming the worker.
use lib 't/lib';
use Test::Nginx::Socket;
use ProxyWasmLua;

ProxyWasmLua::load_by_default("testbed", "testbed.wasm");
# One worker, also when the suite runs with two: TEST 7's restart happens in the worker that
# trapped, and with two the next request may go to the other one.
workers(1);

run_tests();

__DATA__

=== TEST 1: load: missing file, not wasm, bad arguments
--- config
location /t {
    content_by_lua_block {
        local wasm = require("resty.proxy-wasm")
        ngx.say(select(2, wasm.load("x", "/nonexistent.wasm")))
        ngx.say(select(2, wasm.load("x", "$TEST_NGINX_FILTERS/not_wasm.wat")))
        ngx.say(select(2, wasm.load("x", "$TEST_NGINX_FILTERS/no_abi.wat")))
        ngx.say(select(2, wasm.load("", "$TEST_NGINX_FILTERS/testbed.wasm")))
        ngx.say(select(2, wasm.load("x")))
    }
}
--- request
GET /t
--- response_body_like
^failed to open wasm plugin: /nonexistent.wasm: No such file or directory
failed to load wasm plugin "x": is not a valid wasm module[^\n]*
failed to load wasm plugin "x": exports no proxy_abi_version_\* marker[^\n]*
bad plugin name: a non-empty string is required
bad plugin path: the path of a .wasm file is required
--- error_log
failed to load wasm plugin "x"

=== TEST 2: load without wasm_vm in the http block says what is missing
--- http_config
# no wasm_vm
--- config
location /t {
    content_by_lua_block {
        local wasm = require("resty.proxy-wasm")
        ngx.say(select(2, wasm.load("x", "$TEST_NGINX_FILTERS/testbed.wasm")))
    }
}
--- request
GET /t
--- response_body
failed to load wasm plugin: miss wasm_vm configuration: add "wasm_vm wasmer;" to the http block
--- error_log
miss wasm_vm configuration

=== TEST 3: on_configure: bad plugin, empty or non-string conf, a plugin ctx as the plugin
--- config
location /t {
    content_by_lua_block {
        local wasm = require("resty.proxy-wasm")
        local plugin = require("apisix_like").plugins.testbed
        ngx.say(select(2, wasm.on_configure(nil, "a")))
        ngx.say(select(2, wasm.on_configure("plugin", "a")))
        ngx.say(select(2, wasm.on_configure(plugin, "")))
        ngx.say(select(2, wasm.on_configure(plugin, { a = 1 })))
        local ctx = assert(wasm.on_configure(plugin, "name=ok"))
        ngx.say(select(2, wasm.on_configure(ctx, "a")))
        ngx.say(type(ctx))
    }
}
--- request
GET /t
--- response_body
bad plugin: on_configure takes what load returned
bad plugin: on_configure takes what load returned
bad conf: a non-empty string is required
bad conf: a non-empty string is required
bad plugin: on_configure takes what load returned
cdata

=== TEST 4: on_configure rejected by the plugin
--- config
location /t {
    content_by_lua_block {
        local wasm = require("resty.proxy-wasm")
        ngx.say(select(2, wasm.on_configure(require("apisix_like").plugins.testbed, "configure_fail")))
    }
}
--- request
GET /t
--- response_body
failed to run proxy_on_configure: testbed: proxy_on_configure returned false
--- error_log
on_configure: rejecting configuration

=== TEST 5: callbacks in the wrong phase, or given something else than a plugin ctx
--- config
location /t {
    access_by_lua_block {
        local wasm = require("resty.proxy-wasm")
        local pw = require("apisix_like")
        local ctx = assert(pw.ctx("testbed", "name=x"))
        local out = {}
        out[#out + 1] = select(2, wasm.on_http_response_headers(ctx))
        out[#out + 1] = select(2, wasm.on_http_response_body(ctx))
        out[#out + 1] = select(2, wasm.on_log(ctx))
        out[#out + 1] = select(2, wasm.on_http_request_headers(pw.plugins.testbed))
        out[#out + 1] = select(2, wasm.on_http_request_headers(nil))
        out[#out + 1] = select(2, wasm.on_http_request_body(ctx, 42))
        ngx.ctx.out = table.concat(out, "\n")
    }
    content_by_lua_block { ngx.say(ngx.ctx.out) }
}
--- request
GET /t
--- response_body
on_http_response_headers called in the access phase: call it from header_filter_by_lua
on_http_response_body called in the access phase: call it from body_filter_by_lua
on_log called in the access phase: call it from log_by_lua
bad plugin ctx: on_http_request_headers takes what on_configure returned
bad plugin ctx: on_http_request_headers takes what on_configure returned
bad body: a string or nil is required

=== TEST 6: request callbacks from header_filter are refused
--- config
location /t {
    header_filter_by_lua_block {
        local wasm = require("resty.proxy-wasm")
        local ctx = assert(require("apisix_like").ctx("testbed", "name=x"))
        local _, err = wasm.on_http_request_headers(ctx)
        ngx.header["X-Err"] = err
    }
    content_by_lua_block { ngx.say("ok") }
}
--- request
GET /t
--- response_headers
X-Err: on_http_request_headers called in the header_filter phase: call it from rewrite_by_lua or access_by_lua

=== TEST 7: a trap fails the request with the error; the next request gets a fresh instance
--- config
location /trap {
    access_by_lua_block { require("apisix_like").access("testbed", "trap_request") }
    content_by_lua_block { ngx.say("content must not run") }
}
location /ok {
    access_by_lua_block { require("apisix_like").access("testbed", "req_add=x-a:fine") }
    content_by_lua_block { ngx.say(ngx.var.http_x_a) }
}
--- request eval
["GET /trap", "GET /ok"]
--- error_code eval
[503, 200]
--- response_body_like eval
[qr/503/, qr/^fine$/]
--- error_log
failed to run wasm plugin: failed to run proxy_on_http_request_headers: testbed: proxy_on_request_headers failed
starting a fresh instance after a failure
--- no_error_log
exited on signal

=== TEST 8: an endless loop ends at the CPU budget; the worker serves on
--- http_config
wasm_max_instructions 10m;
init_worker_by_lua_block { require("apisix_like").load("hostile", "$TEST_NGINX_FILTERS/hostile.wat") }
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("hostile", "lq") }
    content_by_lua_block { ngx.say("content must not run") }
}
location /alive {
    content_by_lua_block { ngx.say("alive") }
}
--- request eval
["GET /t", "GET /alive"]
--- error_code eval
[503, 200]
--- error_log
exceeded its CPU budget of 10000000 wasm instructions
--- no_error_log
exited on signal

=== TEST 9: a trap in on_http_response_headers is reported (the response goes on, as in APISIX)
--- config
location /t {
    header_filter_by_lua_block { require("apisix_like").header_filter("testbed", "trap_response") }
    content_by_lua_block { ngx.say("ok") }
}
--- request
GET /t
--- response_body
ok
--- error_log
failed to run wasm plugin: failed to run proxy_on_http_response_headers

=== TEST 10: a plugin that traps on every request is restarted with a back-off
--- config
location /trap {
    access_by_lua_block { require("apisix_like").access("testbed", "trap_request") }
    content_by_lua_block { ngx.say("content must not run") }
}
--- request eval
["GET /trap", "GET /trap", "GET /trap", "GET /trap", "GET /trap", "GET /trap", "GET /trap"]
--- error_code eval
[503, 503, 503, 503, 503, 503, 503]
--- error_log
the plugin keeps failing: waiting before the next restart
--- no_error_log
exited on signal
