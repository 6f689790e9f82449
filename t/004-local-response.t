# proxy_send_local_response from on_request_headers and on_response_headers.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

run_tests();

__DATA__

=== TEST 1: status, body and headers as given, no newline appended
--- config
location /t { proxy_wasm testbed "local=403:denied"; empty_gif; }
--- request
GET /t
--- error_code: 403
--- response_body chomp
denied
--- response_headers
x-local: testbed
Content-Type: text/plain
Content-Length: 6

=== TEST 2: the content handler never runs after a local response
--- config
location /t {
    proxy_wasm testbed "local=200:from wasm";
    proxy_pass http://127.0.0.1:1/;
}
--- request
GET /t
--- error_code: 200
--- response_body chomp
from wasm

=== TEST 3: a local response to HEAD has headers only
--- config
location /t { proxy_wasm testbed "local=200:body"; empty_gif; }
--- request
HEAD /t
--- error_code: 200
--- response_body chomp
--- response_headers
Content-Length: 4

=== TEST 4: a local response with a request body discards the body
--- config
location /t { proxy_wasm testbed "local=201:created"; empty_gif; }
--- request
POST /t
hello there, this body is discarded
--- error_code: 201
--- response_body chomp
created

=== TEST 5: a local response from on_response_headers replaces the upstream response
--- config
location /t {
    proxy_wasm testbed "resp_local=502:replaced";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "original body that must not leak\n"; }
--- request
GET /t
--- error_code: 502
--- response_body chomp
replaced
--- response_headers
x-local: testbed
Content-Length: 8

=== TEST 6: a local response from on_response_headers replaces a static file
--- user_files
>>> big.txt
this file is replaced
--- config
location /big.txt { proxy_wasm testbed "resp_local=200:short"; }
--- request
GET /big.txt
--- error_code: 200
--- response_body chomp
short

=== TEST 7: an empty local response body
--- config
location /t { proxy_wasm testbed "local=204:"; empty_gif; }
--- request
GET /t
--- error_code: 204
--- response_body chomp
