# Filter chains: order, inheritance, a local response stopping the chain.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

run_tests();

__DATA__

=== TEST 1: two filters act in order on request and response headers
--- config
location /t {
    proxy_wasm testbed "order=A";
    proxy_wasm testbed "order=B";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "request order=$http_x_order\n"; }
--- request
GET /t
--- response_body
request order=AB
--- response_headers
x-order: AB

=== TEST 2: two different modules in one chain
--- http_config
wasm_module first $TEST_NGINX_FILTERS/testbed.wasm;
wasm_module second $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t {
    proxy_wasm first "order=1;name=first;log_done";
    proxy_wasm second "order=2;name=second;log_done";
    empty_gif;
}
--- request
GET /t
--- response_headers
x-order: 12
--- error_log eval
[qr/\[proxy_wasm\] first: first on_log ctx=\d+ status=200/,
 qr/\[proxy_wasm\] second: second on_log ctx=\d+ status=200/]

=== TEST 3: a local response from the first filter stops the chain
--- config
location /t {
    proxy_wasm testbed "local=401:stop;log_done;name=one";
    proxy_wasm testbed "req_get=x-anything;log_done;name=two";
    empty_gif;
}
--- request
GET /t
--- error_code: 401
--- response_body chomp
stop
--- error_log eval
[qr/one on_done/, qr/two on_done/]
--- no_error_log
req_get x-anything

=== TEST 4: a location without proxy_wasm inherits the server's chain
--- config
proxy_wasm testbed "resp_add=x-server-level:1";
location /t { empty_gif; }
--- request
GET /t
--- response_headers
x-server-level: 1

=== TEST 5: a location with its own proxy_wasm replaces the inherited chain
--- config
proxy_wasm testbed "resp_add=x-server-level:1";
location /t { proxy_wasm testbed "resp_add=x-location-level:1"; empty_gif; }
--- request
GET /t
--- response_headers
!x-server-level
x-location-level: 1

=== TEST 6: http-level chain is inherited by every server and location
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
proxy_wasm testbed "resp_add=x-http-level:1";
--- config
location /t { empty_gif; }
--- request
GET /t
--- response_headers
x-http-level: 1

=== TEST 7: a location without any chain is untouched
--- config
location /t { empty_gif; }
--- request
GET /t
--- response_headers
!x-order
Content-Type: image/gif
