# HTTP calls from Lua-driven plugins: on_http returns 1, Lua fetches the call with
# ngx_http_wasm_call_get, sends it with a cosocket, and hands the response to
# ngx_http_wasm_on_http_call_resp (api7's contract; no lua-resty-http needed).
use lib 't/lib';
use Test::Nginx::Socket;
use ProxyWasmLua;

ProxyWasmLua::load_by_default("callout", "lua_callout.wasm");

# The plugin calls this server (127.0.0.1): it needs an explicit allow, as on the native path
# (t/021-call-security.t). Runs before load_by_default's preprocessor.
add_block_preprocessor(sub {
    my $block = shift;
    return if defined $block->http_config;
    $block->set_value("http_config", "proxy_wasm_call_allow callout 127.0.0.1;\n"
        . qq{init_worker_by_lua_block { require("apisix_like").load("callout", "\$TEST_NGINX_FILTERS/lua_callout.wasm") }});
});

run_tests();

__DATA__

=== TEST 1: the call's response reaches the plugin, which rewrites the request and resumes
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("callout", "call=127.0.0.1:$TEST_NGINX_SERVER_PORT;method=POST;body=hi") }
    content_by_lua_block { ngx.say("x-call=", ngx.var.http_x_call) }
}
location /call {
    content_by_lua_block {
        ngx.req.read_body()
        ngx.say(ngx.req.get_method(), " ", ngx.var.request_uri, " ", ngx.var.http_x_from, " ", ngx.req.get_body_data())
    }
}
--- request
GET /t
--- response_body
x-call=200/POST /call wasm hi
--- error_log eval
qr/call \d+ status=200 body=POST \/call wasm hi/

=== TEST 2: :authority becomes the call's Host header
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("callout", "call=127.0.0.1:$TEST_NGINX_SERVER_PORT;authority=backend.example") }
    content_by_lua_block { ngx.say("x-call=", ngx.var.http_x_call) }
}
location /call {
    content_by_lua_block { ngx.say("host=", ngx.var.http_host) }
}
--- request
GET /t
--- response_body
x-call=200/host=backend.example

=== TEST 3: a local response from on_http_call_response answers the request
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("callout", "call=127.0.0.1:$TEST_NGINX_SERVER_PORT;path=/call/deny;then=local") }
    content_by_lua_block { ngx.say("content must not run") }
}
location /call {
    content_by_lua_block { ngx.status = 403; ngx.say("no entry") }
}
--- request
GET /t
--- error_code: 200
--- response_headers
x-call-status: 403
--- response_body chomp
no entry

=== TEST 4: a chained call carries nothing of the first (no stale method, path, scheme, body)
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("callout", "call=127.0.0.1:$TEST_NGINX_SERVER_PORT;method=POST;path=/call/first;scheme=http;body=one;then=chain") }
    content_by_lua_block { ngx.say("x-call=", ngx.var.http_x_call) }
}
location /call {
    content_by_lua_block {
        ngx.req.read_body()
        ngx.say(ngx.req.get_method(), " ", ngx.var.request_uri, " from=", ngx.var.http_x_from, " body=", ngx.req.get_body_data())
    }
}
--- request
GET /t
--- response_body
x-call=200/GET /call/second from=nil body=nil
--- error_log eval
[qr/call \d+ status=200 body=POST \/call\/first from=wasm body=one/, qr/chained call \d+/]

=== TEST 5: a failed call (connection refused) still reaches the plugin, with no status
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("callout", "call=127.0.0.1:1") }
    content_by_lua_block { ngx.say("x-call=", ngx.var.http_x_call) }
}
--- request
GET /t
--- response_body
x-call=NONE/
--- error_log
proxy-wasm: http call failed: connect to 127.0.0.1:1
--- no_error_log
exited on signal

=== TEST 6: two calls dispatched in one callback both run, one after the other
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("callout", "call=127.0.0.1:$TEST_NGINX_SERVER_PORT;calls=2") }
    content_by_lua_block { ngx.say("x-call=", ngx.var.http_x_call) }
}
location /call {
    content_by_lua_block { ngx.print("pong") }
}
--- request
GET /t
--- response_body
x-call=200/pong,200/pong

=== TEST 7: a chunked response body is decoded before the plugin reads it
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("callout", "call=127.0.0.1:$TEST_NGINX_SERVER_PORT") }
    content_by_lua_block { ngx.say("x-call=", ngx.var.http_x_call) }
}
location /call {
    chunked_transfer_encoding on;
    content_by_lua_block { ngx.print("ab"); ngx.flush(true); ngx.print("cd") }
}
--- request
GET /t
--- response_body
x-call=200/abcd

=== TEST 8: proxy_wasm_call_allow applies to plugins loaded from Lua, by their load() name
--- http_config
proxy_wasm_call_allow callout 10.0.0.0/8;
init_worker_by_lua_block { require("apisix_like").load("callout", "$TEST_NGINX_FILTERS/lua_callout.wasm") }
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("callout", "call=127.0.0.1:$TEST_NGINX_SERVER_PORT") }
    content_by_lua_block { ngx.say("x-call=", ngx.var.http_x_call) }
}
location /call {
    content_by_lua_block { ngx.print("pong") }
}
--- request
GET /t
--- response_body
x-call=nil
--- error_log eval
[qr/proxy_http_call to "127.0.0.1:\d+" refused \(BAD_ARGUMENT\): plugin "callout" may not call it/,
 qr/dispatch failed: BadArgument/]
--- no_error_log
[crit]
[alert]

=== TEST 9: failed calls in a row are answered after a growing back-off (the request yields meanwhile)
--- http_config
proxy_wasm_call_allow callout 127.0.0.1:1;
init_worker_by_lua_block { require("apisix_like").load("callout", "$TEST_NGINX_FILTERS/lua_callout.wasm") }
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("callout", "call=127.0.0.1:1;calls=3") }
    content_by_lua_block { ngx.say("x-call=", ngx.var.http_x_call) }
}
--- request
GET /t
--- response_body
x-call=NONE/,NONE/,NONE/
--- error_log eval
[qr/proxy-wasm: 1 failed call\(s\) in a row: answering after 5 ms/,
 qr/proxy-wasm: 2 failed call\(s\) in a row: answering after 10 ms/,
 qr/proxy-wasm: 3 failed call\(s\) in a row: answering after 20 ms/]
--- no_error_log
[crit]
[alert]
