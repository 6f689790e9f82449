# Context lifecycle, end_of_stream, failures and logging.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

run_tests();

__DATA__

=== TEST 1: on_done, on_log and on_delete run once per request, in that order
--- config
location /t { proxy_wasm testbed "log_done;name=lc"; empty_gif; }
--- request
GET /t
--- grep_error_log eval
qr/lc on_(done|log|delete)/
--- grep_error_log_out
lc on_done
lc on_log
lc on_delete

=== TEST 2: end_of_stream is true for a request without a body
--- config
location /t { proxy_wasm testbed "log_eos"; empty_gif; }
--- request
GET /t
--- error_log eval
qr/request headers n=\d+ eos=true/

=== TEST 3: end_of_stream is false for a request with a body
--- config
location /t { proxy_wasm testbed "log_eos"; proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend; }
location /backend { return 200 "ok\n"; }
--- request
POST /t
some body
--- error_log eval
qr/request headers n=\d+ eos=false/

=== TEST 4: num_headers counts pseudo-headers and headers
--- config
location /t { proxy_wasm testbed "log_eos"; empty_gif; }
--- request
GET /t
--- more_headers
X-A: 1
X-B: 2
--- error_log eval
qr/request headers n=(7|8) eos=true/

=== TEST 5: a trap in on_request_headers fails the request with 500 and names plugin and callback
--- config
location /t { proxy_wasm testbed "trap_request"; empty_gif; }
--- request
GET /t
--- error_code: 500
--- error_log eval
[qr/\[proxy_wasm\] testbed: proxy_on_request_headers failed: .*; failing the request/,
 qr/trap_request asked for a trap/]
--- no_error_log
exited on signal

=== TEST 6: the worker keeps serving after a trap
--- config
location /trap { proxy_wasm testbed "trap_request"; empty_gif; }
location /ok { proxy_wasm testbed "resp_add=x-ok:1"; empty_gif; }
--- request eval
["GET /trap", "GET /ok", "GET /trap", "GET /ok"]
--- error_code eval
[500, 200, 500, 200]
--- error_log
proxy_on_request_headers failed
--- no_error_log
exited on signal

=== TEST 7: a trap in on_response_headers replaces the response with a 500
--- config
location /t { proxy_wasm testbed "trap_response"; proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend; }
location /backend { return 200 "secret upstream body\n"; }
--- request
GET /t
--- error_code: 500
--- response_body_unlike
secret upstream body
--- error_log
proxy_on_response_headers failed

=== TEST 8: Pause with nothing pending does not hang the request
--- config
location /t { proxy_wasm testbed "pause_request"; empty_gif; }
--- request
GET /t
--- error_code: 200
--- error_log
returned Pause with no local response and no HTTP call pending: continuing

=== TEST 9: plugin log lines carry the request context and the plugin name
--- config
location /t { proxy_wasm testbed "req_get=x-foo"; empty_gif; }
--- request
GET /t
--- more_headers
X-Foo: ctx
--- error_log eval
qr/\[warn\] .*\[proxy_wasm\] testbed: req_get x-foo=ctx, client: 127\.0\.0\.1, server: localhost, request: "GET \/t HTTP\/1\.1"/

=== TEST 10: proxy_get_log_level reflects the error_log level
--- config
location /t { proxy_wasm testbed "log_level"; empty_gif; }
--- log_level: info
--- request
GET /t
--- error_log
host log level is Ok(Info)

=== TEST 11: proxy_get_current_time_nanoseconds is wall-clock time
--- config
location /t { proxy_wasm testbed "log_time"; empty_gif; }
--- request
GET /t
--- error_log
time is after 2020: true

=== TEST 12: contexts of many requests are created and deleted (no leak of context ids)
--- config
location /t { proxy_wasm testbed "log_done;name=many"; empty_gif; }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 200, 200, 200]
--- grep_error_log eval
qr/many on_delete/
--- grep_error_log_out eval
"many on_delete\n" x 5

=== TEST 13: proxy_get_log_level reports the request's error_log level (a location's own), as proxy_log filters
--- config
location /t { error_log logs/error.log info; proxy_wasm testbed "log_level;req_log_level"; empty_gif; }
--- log_level: warn
--- request
GET /t
--- error_log
host log level is Ok(Warn)
request log level is Ok(Info)
