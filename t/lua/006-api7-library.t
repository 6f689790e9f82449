# api7's own resty.proxy-wasm, unchanged, against this module. Not shipped here: set
# TEST_NGINX_API7_LIB to a directory holding resty/proxy-wasm.lua from api7/wasm-nginx-module,
# lua-resty-http (resty/http.lua, ...) and lua-resty-string (resty/string.lua, which
# lua-resty-http's http_connect.lua requires), e.g. a checkout's lib/ plus those two
# libraries' lib/ copied in; otherwise the file is skipped.
use lib 't/lib';
BEGIN {
    if (!$ENV{TEST_NGINX_API7_LIB}) {
        require Test::More;
        Test::More::plan(skip_all => "TEST_NGINX_API7_LIB is not set (api7's Lua library)");
    }
}
use Test::Nginx::Socket;
use ProxyWasmLua;

$ENV{TEST_NGINX_LUA_LIB} = "$ENV{TEST_NGINX_API7_LIB}/?.lua;$ENV{TEST_NGINX_LUA_LIB}";

run_tests();

__DATA__

=== TEST 1: their library: local response, header rewrites incl. :authority
--- http_config
init_worker_by_lua_block { require("apisix_like").load("testbed", "$TEST_NGINX_FILTERS/testbed.wasm") }
--- config
location /deny {
    access_by_lua_block { require("apisix_like").access("testbed", "local=403:denied") }
    content_by_lua_block { ngx.say("content must not run") }
}
location /t {
    access_by_lua_block { require("apisix_like").access("testbed", "req_set=:authority:new.example;resp_add=x-b:2") }
    header_filter_by_lua_block { require("apisix_like").header_filter("testbed", "req_set=:authority:new.example;resp_add=x-b:2") }
    content_by_lua_block { ngx.say("host=", ngx.var.http_host) }
}
--- request eval
["GET /deny", "GET /t"]
--- error_code eval
[403, 200]
--- response_body eval
["denied", "host=new.example\n"]

=== TEST 2: their library: action 2 and Pause without a call neither loop nor crash
--- http_config
init_worker_by_lua_block {
    require("apisix_like").load("actions", "$TEST_NGINX_FILTERS/lua_actions.wat")
    require("apisix_like").load("testbed", "$TEST_NGINX_FILTERS/testbed.wasm")
}
--- config
location /a {
    access_by_lua_block { require("apisix_like").access("actions", "x") }
    content_by_lua_block { ngx.say("a ok") }
}
location /p {
    access_by_lua_block { require("apisix_like").access("testbed", "pause_request") }
    content_by_lua_block { ngx.say("p ok") }
}
--- request eval
["GET /a", "GET /p"]
--- response_body eval
["a ok\n", "p ok\n"]
--- timeout: 3
--- no_error_log
exited on signal

=== TEST 3: their library: an HTTP call through lua-resty-http
--- http_config
proxy_wasm_call_allow callout 127.0.0.1:$TEST_NGINX_SERVER_PORT;
init_worker_by_lua_block { require("apisix_like").load("callout", "$TEST_NGINX_FILTERS/lua_callout.wasm") }
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("callout", "call=127.0.0.1:$TEST_NGINX_SERVER_PORT;path=/echo") }
    content_by_lua_block { ngx.say("x-call=", ngx.var.http_x_call) }
}
location /echo { content_by_lua_block { ngx.print("pong") } }
--- request
GET /t
--- response_body
x-call=200/pong

=== TEST 4: their library: calls without :method (GET), without :path (/), with a relative :path (issue 15, 1b)
--- http_config
proxy_wasm_call_allow callout 127.0.0.1:$TEST_NGINX_SERVER_PORT;
init_worker_by_lua_block { require("apisix_like").load("callout", "$TEST_NGINX_FILTERS/lua_callout.wasm") }
--- config
location /m {
    access_by_lua_block { require("apisix_like").access("callout", "call=127.0.0.1:$TEST_NGINX_SERVER_PORT;method=-") }
    content_by_lua_block { ngx.say("x-call=", ngx.var.http_x_call) }
}
location /p {
    access_by_lua_block { require("apisix_like").access("callout", "call=127.0.0.1:$TEST_NGINX_SERVER_PORT;method=-;path=-") }
    content_by_lua_block { ngx.say("x-call=", ngx.var.http_x_call) }
}
location /r {
    access_by_lua_block { require("apisix_like").access("callout", "call=127.0.0.1:$TEST_NGINX_SERVER_PORT;path=call/rel") }
    content_by_lua_block { ngx.say("x-call=", ngx.var.http_x_call) }
}
location /call { content_by_lua_block { ngx.say(ngx.req.get_method(), " ", ngx.var.request_uri) } }
location = / { content_by_lua_block { ngx.say("root ", ngx.req.get_method(), " ", ngx.var.request_uri) } }
--- request eval
["GET /m", "GET /p", "GET /r"]
--- response_body eval
["x-call=200/GET /call\n", "x-call=200/root GET /\n", "x-call=200/GET /call/rel\n"]

=== TEST 5: their library: one-word property writes (host not changeable, unknown NOT_FOUND)
--- http_config
init_worker_by_lua_block { require("apisix_like").load("testbed", "$TEST_NGINX_FILTERS/testbed.wasm") }
--- config
location /t {
    set $v "original";
    access_by_lua_block {
        require("apisix_like").access("testbed", "prop_set_raw=v:new;prop_set_raw=host:evil.example;prop_set_raw=no_such_var:x;prop=no_such_var")
    }
    content_by_lua_block { ngx.say("v=", ngx.var.v, " host=", ngx.var.host) }
}
--- request
GET /t
--- response_body
v=new host=localhost
--- grep_error_log eval
qr/prop(_set_raw)? [a-z_]+=\w+/
--- grep_error_log_out
prop_set_raw v=Ok
prop_set_raw host=InternalFailure
prop_set_raw no_such_var=NotFound
prop no_such_var=NONE

=== TEST 6: their library: proxy_get_buffer_bytes on body chunks (start at or past the end, size 0, empty chunk)
--- http_config
init_worker_by_lua_block { require("apisix_like").load("testbed", "$TEST_NGINX_FILTERS/testbed.wasm") }
--- config
location /t {
    access_by_lua_block { require("apisix_like").request_body("testbed", "req_body_at=end:4;req_body_at=0:0;req_body_at=0:3") }
    body_filter_by_lua_block { require("apisix_like").body_filter("testbed", "resp_body_at=end:1;resp_body_at=1:3") }
    content_by_lua_block { ngx.print("reply") }
}
--- request
POST /t
hello body
--- response_body chomp
reply
--- grep_error_log eval
qr/(req|resp)_body_at \S+ size=\d+ -> \w+ \[[^\]]*\]/
--- grep_error_log_out
req_body_at end:4 size=10 -> BadArgument []
req_body_at 0:0 size=10 -> BadArgument []
req_body_at 0:3 size=10 -> Ok [hel]
resp_body_at end:1 size=5 -> BadArgument []
resp_body_at 1:3 size=5 -> Ok [epl]
resp_body_at end:1 size=0 -> NotFound []
resp_body_at 1:3 size=0 -> NotFound []
