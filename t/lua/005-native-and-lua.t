# `wasm_vm wasmer;` alone enables the Lua path, the native directives work in the same nginx,
# and plugins may be loaded in init_by_lua (the master, before fork) as well.
use lib 't/lib';
use Test::Nginx::Socket;
use ProxyWasmLua;

run_tests();

__DATA__

=== TEST 1: proxy_wasm in one location, resty.proxy-wasm in another, the same module in both
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
init_worker_by_lua_block { require("apisix_like").load("testbed", "$TEST_NGINX_FILTERS/testbed.wasm") }
--- config
location /native {
    proxy_wasm testbed "resp_add=x-by:native";
    content_by_lua_block { ngx.say("native") }
}
location /lua {
    header_filter_by_lua_block { require("apisix_like").header_filter("testbed", "resp_add=x-by:lua") }
    content_by_lua_block { ngx.say("lua") }
}
--- request eval
["GET /native", "GET /lua"]
--- response_body eval
["native\n", "lua\n"]
--- response_headers eval
["x-by: native", "x-by: lua"]

=== TEST 2: native filter and Lua-driven plugin on the same request
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
init_worker_by_lua_block { require("apisix_like").load("testbed", "$TEST_NGINX_FILTERS/testbed.wasm") }
--- config
location /t {
    proxy_wasm testbed "req_add=x-native:1;resp_add=x-native:1";
    access_by_lua_block { require("apisix_like").access("testbed", "req_add=x-lua:1") }
    header_filter_by_lua_block { require("apisix_like").header_filter("testbed", "resp_add=x-lua:1") }
    content_by_lua_block { ngx.say("native=", ngx.var.http_x_native, " lua=", ngx.var.http_x_lua) }
}
--- request
GET /t
--- response_body
native=1 lua=1
--- response_headers
x-native: 1
x-lua: 1

=== TEST 3: a plugin loaded in init_by_lua (in the master) serves in the workers
--- workers: 2
--- http_config
init_by_lua_block {
    require("apisix_like").load("testbed", "$TEST_NGINX_FILTERS/testbed.wasm")
}
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("testbed", "req_add=x-a:from-master") }
    content_by_lua_block { ngx.say(ngx.var.http_x_a) }
}
--- request eval
["GET /t", "GET /t", "GET /t"]
--- response_body eval
["from-master\n", "from-master\n", "from-master\n"]

=== TEST 4: wasm_max_instructions applies to plugins loaded in init_by_lua
--- http_config
wasm_max_instructions 5m;
init_by_lua_block { require("apisix_like").load("hostile", "$TEST_NGINX_FILTERS/hostile.wat") }
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("hostile", "lq") }
    content_by_lua_block { ngx.say("content must not run") }
}
--- request
GET /t
--- error_code: 503
--- error_log
exceeded its CPU budget of 5000000 wasm instructions
--- no_error_log
exited on signal

=== TEST 5: a Lua-loaded plugin whose load failed does not stop nginx or the native path
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
init_worker_by_lua_block { require("apisix_like").load("broken", "$TEST_NGINX_FILTERS/bad_import.wat") }
--- config
location /t {
    proxy_wasm testbed "resp_add=x-native:ok";
    content_by_lua_block { ngx.say("ok") }
}
--- request
GET /t
--- response_body
ok
--- response_headers
x-native: ok
--- error_log
load broken: failed to load wasm plugin "broken"

=== TEST 6: with wasm_vm alone, Lua-driven plugins get the shared zone: data set by one request is read by the next
--- http_config
init_worker_by_lua_block { require("apisix_like").load("shared_state", "$TEST_NGINX_FILTERS/shared_state.wasm") }
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("shared_state", "lua") }
}
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
["x-ops: set=k:from-lua", "x-ops: get=k"]
--- response_body eval
["set k: Ok\n", "get k: from-lua cas=nonzero\n"]

=== TEST 7: a plugin loaded in init_by_lua (the master) uses its worker's shared zone
--- http_config
init_by_lua_block { require("apisix_like").load("shared_state", "$TEST_NGINX_FILTERS/shared_state.wasm") }
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("shared_state", "lua") }
}
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
["x-ops: set=m:master-loaded", "x-ops: get=m"]
--- response_body eval
["set m: Ok\n", "get m: master-loaded cas=nonzero\n"]

=== TEST 8: Lua-loaded plugins use wasm_compile_cache too (loaded in init_by_lua: the master stores the artifact)
--- http_config
wasm_compile_cache $TEST_NGINX_SERVER_ROOT/wasm-cache;
init_by_lua_block { require("apisix_like").load("testbed", "$TEST_NGINX_FILTERS/testbed.wasm") }
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("testbed", "req_add=x-a:1") }
    content_by_lua_block {
        local p = io.popen("ls $TEST_NGINX_SERVER_ROOT/wasm-cache | wc -l")
        ngx.say("x-a=", ngx.var.http_x_a, " cached=", p:read("*l"))
        p:close()
    }
}
--- request
GET /t
--- response_body
x-a=1 cached=1

=== TEST 9: a worker never writes the compile cache (only the master, or the single process with master_process off)
--- http_config
wasm_compile_cache $TEST_NGINX_SERVER_ROOT/wasm-cache;
init_worker_by_lua_block { require("apisix_like").load("testbed", "$TEST_NGINX_FILTERS/testbed.wasm") }
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("testbed", "req_add=x-a:1") }
    content_by_lua_block {
        local p = io.popen("ls $TEST_NGINX_SERVER_ROOT/wasm-cache 2>/dev/null | wc -l")
        ngx.say("x-a=", ngx.var.http_x_a, " cached=", p:read("*l"))
        p:close()
    }
}
--- request
GET /t
--- response_body eval
$Test::Nginx::Util::MasterProcessEnabled eq 'on' ? "x-a=1 cached=0\n" : "x-a=1 cached=1\n"
