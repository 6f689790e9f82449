# The http block APISIX's template (apisix/cli/ngx_tpl.lua) writes when config.yaml has a
# `wasm:` section: `wasm_vm wasmtime;`, then plugins loaded through resty.proxy-wasm. It must
# work unchanged (wasmer serves it, with one notice at configuration time).
use lib 't/lib';
use Test::Nginx::Socket;
use ProxyWasmLua;

run_tests();

__DATA__

=== TEST 1: wasm_vm wasmtime; then a plugin loaded in init_worker serves requests
--- http_config
# no wasm_vm
wasm_vm wasmtime;
init_worker_by_lua_block { require("apisix_like").load("testbed", "$TEST_NGINX_FILTERS/testbed.wasm") }
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("testbed", "req_add=x-a:1;resp_add=x-b:2") }
    header_filter_by_lua_block { require("apisix_like").header_filter("testbed", "req_add=x-a:1;resp_add=x-b:2") }
    content_by_lua_block { ngx.say("x-a=", ngx.var.http_x_a) }
}
--- request
GET /t
--- response_body
x-a=1
--- response_headers
x-b: 2
--- error_log eval
qr/\[notice\] .*"wasm_vm wasmtime" is served by wasmer with the cranelift compiler: this module has no wasmtime in .*nginx\.conf:\d+/
--- no_error_log
[error]
[crit]
[alert]
[emerg]

=== TEST 2: wasm_vm wasmtime; with the plugin loaded in init_by_lua (the master)
--- http_config
# no wasm_vm
wasm_vm wasmtime;
init_by_lua_block { require("apisix_like").load("testbed", "$TEST_NGINX_FILTERS/testbed.wasm") }
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("testbed", "local=403:denied") }
    content_by_lua_block { ngx.say("content must not run") }
}
--- request
GET /t
--- error_code: 403
--- response_body chomp
denied
--- no_error_log
[error]
[crit]
[alert]
[emerg]
