# on_request_body: chunks as nginx reads them, buffering with Pause, edits that the upstream
# receives with a correct Content-Length, local responses from the body, limits.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

run_tests();

__DATA__

=== TEST 1: the body is read for the filter even without a content handler that reads it
--- config
location /t { proxy_wasm testbed "req_body_echo"; empty_gif; }
--- request
POST /t
hello request body
--- error_code: 200
--- response_body chomp
hello request body
--- response_headers
x-echo-length: 18

=== TEST 2: a body rewritten chunk by chunk reaches the upstream
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

=== TEST 3: a body that changes length: the upstream gets the new Content-Length
--- config
location /t {
    proxy_wasm testbed "req_body_replace=short:a good deal longer";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
}
location /echo { proxy_wasm testbed "req_body_echo"; empty_gif; }
--- request
POST /t
a short body
--- response_headers
x-echo-length: 25
--- response_body chomp
a a good deal longer body

=== TEST 4: a 100 KB body arrives in several chunks; body_size grows while paused
--- config
client_body_buffer_size 8k;
location /t {
    proxy_wasm testbed "req_body_log;req_body_pause;req_body_append=!";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
}
location /echo { proxy_wasm testbed "req_body_echo"; empty_gif; }
--- request eval
"POST /t\n" . ("0123456789" x 10000)
--- response_headers
x-echo-length: 100001
--- error_log eval
[qr/req body size=\d+ eos=false/, qr/req body size=100000 eos=true/]

=== TEST 5: a chunked request body
--- config
location /t { proxy_wasm testbed "req_body_echo"; empty_gif; }
--- raw_request eval
"POST /t HTTP/1.1\r
Host: localhost\r
Transfer-Encoding: chunked\r
Connection: close\r
\r
5\r
hello\r
6\r
 world\r
0\r
\r
"
--- response_body chomp
hello world

=== TEST 6: a local response from on_request_body
--- config
location /t { proxy_wasm testbed "req_body_local=422:bad body"; proxy_pass http://127.0.0.1:1/; }
--- request
POST /t
some body
--- error_code: 422
--- response_body chomp
bad body
--- response_headers
x-local: request-body

=== TEST 7: buffering past proxy_wasm_body_buffer_limit gives 413
--- config
client_body_buffer_size 4k;
location /t {
    proxy_wasm_body_buffer_limit 8k;
    proxy_wasm testbed "req_body_pause";
    empty_gif;
}
--- request eval
"POST /t\n" . ("z" x 50000)
--- error_code: 413
--- error_log
a filter buffered more than proxy_wasm_body_buffer_limit (8192 bytes) of request body

=== TEST 8: no body, no on_request_body, and end_of_stream was true in on_request_headers
--- config
location /t { proxy_wasm testbed "req_body_log;log_eos"; empty_gif; }
--- request
GET /t
--- error_log eval
qr/request headers n=\d+ eos=true/
--- no_error_log
req body size=

=== TEST 9: two filters edit the request body in order
--- config
location /t {
    proxy_wasm testbed "req_body_append=-one";
    proxy_wasm testbed "req_body_append=-two";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
}
location /echo { proxy_wasm testbed "req_body_echo"; empty_gif; }
--- request
POST /t
body
--- response_body chomp
body-one-two

=== TEST 10: proxy_get_buffer_bytes on the native path answers as Envoy: a start at the end or a size of 0 reads nothing (OK), past the end is BAD_ARGUMENT (the Lua path answers as api7: t/lua/009)
--- config
location /t {
    proxy_wasm testbed "req_body_at=end:4;req_body_at=0:0;req_body_at=end+1:4;req_body_at=0:3;req_body_at=4:max";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
}
location /ok { return 200 "ok\n"; }
--- request
POST /t
hello body
--- response_body
ok
--- grep_error_log eval
qr/req_body_at \S+ size=\d+ -> \w+ \[[^\]]*\]/
--- grep_error_log_out
req_body_at end:4 size=10 -> Ok []
req_body_at 0:0 size=10 -> Ok []
req_body_at end+1:4 size=10 -> BadArgument []
req_body_at 0:3 size=10 -> Ok [hel]
req_body_at 4:max size=10 -> Ok [o body]
