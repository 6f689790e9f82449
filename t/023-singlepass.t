# The singlepass compiler (a build with the cargo feature `singlepass`; the test command's
# addon build has it and sets TEST_NGINX_SINGLEPASS=1): `wasm_vm wasmer singlepass;` runs the
# same filters as cranelift. Representative blocks of the other files, under singlepass: headers,
# bodies, local responses, traps, the CPU budget, the memory cap, wild pointers, stack
# exhaustion. Every block names singlepass in its http_config.
use lib 't/lib';
use Test::Nginx::Socket;
use ProxyWasmTest;

plan(skip_all => "TEST_NGINX_SINGLEPASS is not set (a module built with --features singlepass)")
    unless $ENV{TEST_NGINX_SINGLEPASS};
plan('no_plan');

run_tests();

__DATA__

=== TEST 1: singlepass compiles the module: the compile cache holds a singlepass artifact
--- http_config
wasm_vm wasmer singlepass;
wasm_compile_cache $TEST_NGINX_SERVER_ROOT/wasm-cache;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t { proxy_wasm testbed "resp_add=x-loaded:yes"; empty_gif; }
location /cache/ { alias $TEST_NGINX_SERVER_ROOT/wasm-cache/; autoindex on; }
--- request eval
["GET /t", "GET /cache/"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/^GIF/, qr/-wasmer[\d.]+-singlepass-\w+\.bin/]

=== TEST 2: request and response headers rewritten
--- http_config
wasm_vm wasmer singlepass;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t {
    proxy_wasm testbed "req_add=x-a:1;req_set=x-b:new;req_remove=x-gone;resp_add=x-r:2";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
}
location /echo { return 200 "a=$http_x_a b=$http_x_b gone=$http_x_gone\n"; }
--- request
GET /t
--- more_headers
X-B: old
X-Gone: yes
--- response_body
a=1 b=new gone=
--- response_headers
x-r: 2

=== TEST 3: a proxied response body rewritten across many chunks
--- user_files eval
">>> big.txt\n" . ("abcdefghij" x 20000)
--- http_config
wasm_vm wasmer singlepass;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t {
    proxy_wasm testbed "resp_body_upper";
    proxy_buffer_size 4k;
    proxy_buffers 4 4k;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/big.txt;
}
--- request
GET /t
--- response_body eval
"ABCDEFGHIJ" x 20000

=== TEST 4: a request body rewritten chunk by chunk reaches the upstream
--- http_config
wasm_vm wasmer singlepass;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t {
    proxy_wasm testbed "req_body_upper";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
}
location /echo { proxy_wasm testbed "req_body_echo"; empty_gif; }
--- request
POST /t
make me loud
--- response_body chomp
MAKE ME LOUD

=== TEST 5: a local response: status, headers and body as given
--- http_config
wasm_vm wasmer singlepass;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t { proxy_wasm testbed "local=403:denied"; empty_gif; }
--- request
GET /t
--- error_code: 403
--- response_body chomp
denied
--- response_headers
x-local: testbed
Content-Length: 6

=== TEST 6: a trap fails the request with 500; the worker keeps serving
--- http_config
wasm_vm wasmer singlepass;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /trap { proxy_wasm testbed "trap_request"; empty_gif; }
location /ok { proxy_wasm testbed "resp_add=x-ok:1"; empty_gif; }
--- request eval
["GET /trap", "GET /ok", "GET /trap", "GET /ok"]
--- error_code eval
[500, 200, 500, 200]
--- error_log eval
[qr/\[proxy_wasm\] testbed: proxy_on_request_headers failed: .*; failing the request/,
 qr/trap_request asked for a trap/]
--- no_error_log
exited on signal
[alert]

=== TEST 7: an endless loop ends at the CPU budget (metering works under singlepass)
--- http_config
wasm_vm wasmer singlepass;
wasm_max_instructions 50m;
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /loop { proxy_wasm hostile l; empty_gif; }
location /ok { proxy_wasm hostile n; empty_gif; }
--- request eval
["GET /loop", "GET /ok"]
--- error_code eval
[500, 200]
--- timeout: 20
--- error_log
proxy_on_request_headers failed: exceeded its CPU budget of 50000000 wasm instructions
--- no_error_log
exited on signal
[alert]

=== TEST 8: memory.grow past wasm_max_memory fails inside the plugin
--- http_config
wasm_vm wasmer singlepass;
wasm_max_memory 16m;
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile m; empty_gif; }
--- request
GET /t
--- error_code: 200
--- error_log
memory.grow failed as it should
--- no_error_log
succeeded past the limit
exited on signal

=== TEST 9: wild pointers get INVALID_MEMORY_ACCESS
--- http_config
wasm_vm wasmer singlepass;
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile w; empty_gif; }
--- request
GET /t
--- error_code: 200
--- error_log
wild log pointer: INVALID_MEMORY_ACCESS
wild header pointer: INVALID_MEMORY_ACCESS

=== TEST 10: recursion to stack exhaustion is a trap: 500, and the worker keeps serving
--- http_config
wasm_vm wasmer singlepass;
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /deep { proxy_wasm hostile r; empty_gif; }
location /ok { proxy_wasm hostile n; empty_gif; }
--- request eval
["GET /deep", "GET /ok"]
--- error_code eval
[500, 200]
--- error_log eval
qr/\[proxy_wasm\] hostile: proxy_on_request_headers failed: .*stack/i
--- no_error_log
exited on signal
[alert]
