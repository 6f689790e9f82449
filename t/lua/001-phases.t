# resty.proxy-wasm driven the way APISIX drives it: plugin loaded in init_worker_by_lua, one
# plugin ctx per route configuration, callbacks from access, header_filter, body_filter, log.
use lib 't/lib';
use Test::Nginx::Socket;
use ProxyWasmLua;

ProxyWasmLua::load_by_default("testbed", "testbed.wasm");
# One worker, also when the suite runs with two: plugin contexts are per worker, and TEST 7
# counts one worker's (with two, which worker takes each request decides how many are made).
workers(1);

run_tests();

__DATA__

=== TEST 1: request and response headers added from access and header_filter
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

=== TEST 2: a local response from on_http_request_headers: status, headers, body as given
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
--- response_headers
x-local: testbed
Content-Type: text/plain
Content-Length: 6

=== TEST 3: a local response with no body is empty, not nginx's error page
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("testbed", "local=401:") }
    content_by_lua_block { ngx.say("content must not run") }
}
--- request
GET /t
--- error_code: 401
--- response_body chomp
--- response_headers
Content-Length: 0

=== TEST 4: request header rewrites reach the upstream (set, remove)
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("testbed", "req_set=x-a:new;req_remove=x-gone") }
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
}
location /echo {
    content_by_lua_block { ngx.say("x-a=", ngx.var.http_x_a, " x-gone=", ngx.var.http_x_gone) }
}
--- request
GET /t
--- more_headers
X-A: old
X-Gone: 1
--- response_body
x-a=new x-gone=nil

=== TEST 5: :path and :method are settable and reach the upstream
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("testbed", "req_set=:path:/echo/x?q=1;req_set=:method:PUT") }
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT;
}
location /echo {
    content_by_lua_block { ngx.say(ngx.req.get_method(), " ", ngx.var.request_uri) }
}
--- request
GET /t
--- response_body
PUT /echo/x?q=1

=== TEST 6: :authority is settable (api7 set :method instead); method unchanged
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("testbed", "req_set=:authority:new.example") }
    proxy_set_header Host $http_host;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
}
location /echo {
    content_by_lua_block { ngx.say(ngx.req.get_method(), " host=", ngx.var.http_host) }
}
--- request
GET /t
--- response_body
GET host=new.example

=== TEST 7: one plugin ctx per route configuration, created on first use and reused
--- config
location /a {
    access_by_lua_block { require("apisix_like").access("testbed", "req_add=x-a:route-a") }
    content_by_lua_block { ngx.say(ngx.var.http_x_a) }
}
location /b {
    access_by_lua_block { require("apisix_like").access("testbed", "req_add=x-a:route-b") }
    content_by_lua_block { ngx.say(ngx.var.http_x_a) }
}
--- request eval
["GET /a", "GET /b", "GET /a", "GET /b"]
--- response_body eval
["route-a\n", "route-b\n", "route-a\n", "route-b\n"]
--- grep_error_log eval: qr/create plugin context \d+/
--- grep_error_log_out eval
qr/\Acreate plugin context \d+\ncreate plugin context \d+\n\z/

=== TEST 8: response header rewrites: set, remove, :status
--- config
location /t {
    header_filter_by_lua_block { require("apisix_like").header_filter("testbed", "resp_set=x-up:changed;resp_remove=x-drop;resp_set=:status:202") }
    content_by_lua_block { ngx.header["X-Up"] = "orig"; ngx.header["X-Drop"] = "1"; ngx.say("ok") }
}
--- request
GET /t
--- error_code: 202
--- response_headers
x-up: changed
!x-drop
--- response_body
ok

=== TEST 9: on_http_request_body sees the body with end_of_stream
--- config
location /t {
    access_by_lua_block {
        local pw = require("apisix_like")
        pw.access("testbed", "req_body_log")
        pw.request_body("testbed", "req_body_log")
    }
    content_by_lua_block { ngx.req.read_body(); ngx.say(ngx.req.get_body_data()) }
}
--- request
POST /t
hello body
--- response_body
hello body
--- error_log
req body size=10 eos=true

=== TEST 10: a request body rewritten by the plugin reaches the upstream
--- config
location /t {
    access_by_lua_block { require("apisix_like").request_body("testbed", "req_body_upper") }
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
}
location /echo {
    content_by_lua_block { ngx.req.read_body(); ngx.say(ngx.req.get_body_data(), " len=", ngx.var.http_content_length) }
}
--- request
POST /t
make me loud
--- response_body
MAKE ME LOUD len=12

=== TEST 11: on_http_response_body per chunk; a rewritten chunk replaces ngx.arg[1]
--- config
location /t {
    body_filter_by_lua_block { require("apisix_like").body_filter("testbed", "resp_body_upper;resp_body_log") }
    content_by_lua_block { ngx.say("first"); ngx.flush(true); ngx.say("second") }
}
--- request
GET /t
--- response_body
FIRST
SECOND
--- error_log
resp body size=6 eos=false
resp body size=0 eos=true

=== TEST 12: a local response from on_http_response_headers replaces status, headers and body
--- config
location /t {
    header_filter_by_lua_block { require("apisix_like").header_filter("testbed", "resp_local=502:replaced") }
    body_filter_by_lua_block { require("apisix_like").body_filter("testbed", "resp_local=502:replaced") }
    content_by_lua_block { ngx.header["X-Up"] = "1"; ngx.say("upstream body") }
}
--- request
GET /t
--- error_code: 502
--- response_headers
x-local: testbed
!x-up
--- response_body chomp
replaced

=== TEST 13: on_log from log_by_lua runs on_done and on_log; on_delete when the request ends
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("testbed", "log_done;lprop=request.path") }
    log_by_lua_block { require("apisix_like").log("testbed", "log_done;lprop=request.path") }
    content_by_lua_block { ngx.say("ok") }
}
--- request
GET /t?x=1
--- response_body
ok
--- grep_error_log eval: qr/testbed on_(done|delete)|lprop request.path=\S+/
--- grep_error_log_out
testbed on_done
lprop request.path=/t?x=1
testbed on_delete

=== TEST 14: without on_log, on_done and on_delete still run when the request is freed
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("testbed", "log_done") }
    content_by_lua_block { ngx.say("ok") }
}
--- request
GET /t
--- response_body
ok
--- grep_error_log eval: qr/testbed on_(done|delete)/
--- grep_error_log_out
testbed on_done
testbed on_delete

=== TEST 15: properties: a one-word path writes the nginx variable (APISIX's wasm_process_req_body)
--- config
location /t {
    set $wasm_process_req_body '';
    access_by_lua_block { require("apisix_like").access("testbed", "prop_set=wasm_process_req_body:yes;prop=request.method") }
    content_by_lua_block { ngx.say("wasm_process_req_body=", ngx.var.wasm_process_req_body) }
}
--- request
GET /t
--- response_body
wasm_process_req_body=yes
--- error_log
prop request.method=GET

=== TEST 16: plugin_root_id is the name given to load (as api7 reports it); plugin_name too
--- http_config
init_worker_by_lua_block { require("apisix_like").load("my_root", "$TEST_NGINX_FILTERS/testbed.wasm") }
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("my_root", "prop=plugin_root_id;prop=plugin_name") }
    content_by_lua_block { ngx.say("ok") }
}
--- request
GET /t
--- response_body
ok
--- error_log
prop plugin_root_id=my_root
prop plugin_name=my_root

=== TEST 17: a response-phase local response over an upstream body with Content-Length
--- config
location /t {
    header_filter_by_lua_block { require("apisix_like").header_filter("testbed", "resp_local=503:short") }
    body_filter_by_lua_block { require("apisix_like").body_filter("testbed", "resp_local=503:short") }
    return 200 "a much longer upstream body\n";
}
--- request
GET /t
--- error_code: 503
--- response_headers
!Content-Length
x-local: testbed
--- response_body chomp
short

=== TEST 18: rewrite_by_lua (APISIX's http_request_phase = rewrite) answers locally as well
--- config
location /t {
    rewrite_by_lua_block { require("apisix_like").access("testbed", "local=429:slow down") }
    content_by_lua_block { ngx.say("content must not run") }
}
--- request
GET /t
--- error_code: 429
--- response_body chomp
slow down

=== TEST 19: a local response from on_http_request_body
--- config
location /t {
    access_by_lua_block { require("apisix_like").request_body("testbed", "req_body_local=413:body refused") }
    content_by_lua_block { ngx.say("content must not run") }
}
--- request
POST /t
some body
--- error_code: 413
--- response_body chomp
body refused

=== TEST 20: proxy_close_stream from on_http_request_headers closes the connection (444)
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("testbed", "close_request") }
    content_by_lua_block { ngx.say("content must not run") }
}
--- request
GET /t
--- ignore_response
--- error_log
closed the stream (proxy_close_stream)
