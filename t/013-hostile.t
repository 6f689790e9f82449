# Hostile and faulty plugins: CPU budget, memory cap, bad pointers, stack exhaustion, double
# local responses, failure policy, and the worker that keeps serving (it never exits).
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

run_tests();

__DATA__

=== TEST 1: an endless loop fails its callback within the CPU budget; the worker keeps serving
--- http_config
wasm_max_instructions 50m;
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /loop { proxy_wasm hostile l; empty_gif; }
location /ok { proxy_wasm hostile n; empty_gif; }
--- request eval
["GET /loop", "GET /ok", "GET /ok"]
--- error_code eval
[500, 200, 200]
--- timeout: 20
--- error_log
proxy_on_request_headers failed: exceeded its CPU budget of 50000000 wasm instructions
--- no_error_log
exited on signal
[alert]

=== TEST 2: memory.grow past wasm_max_memory fails inside the plugin, the request goes on
--- http_config
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

=== TEST 3: without a cap, the same 1 GiB grow succeeds (the test above is not vacuous)
--- http_config
wasm_max_memory 2g;
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile m; empty_gif; }
--- request
GET /t
--- error_code: 200
--- error_log
memory.grow succeeded past the limit

=== TEST 4: wild pointers get INVALID_MEMORY_ACCESS, not a trap or a crash
--- http_config
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile w; empty_gif; }
--- request
GET /t
--- error_code: 200
--- error_log
wild log pointer: INVALID_MEMORY_ACCESS
wild header pointer: INVALID_MEMORY_ACCESS

=== TEST 5: a second local response in one request gets BAD_ARGUMENT; the first is sent
--- http_config
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile d; empty_gif; }
--- request
GET /t
--- error_code: 403
--- response_body chomp
denied
--- error_log
second local response: BAD_ARGUMENT

=== TEST 6: a context id that does not exist gets BAD_ARGUMENT
--- http_config
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile c; empty_gif; }
--- request
GET /t
--- error_code: 200
--- error_log
unknown context: BAD_ARGUMENT

=== TEST 7: recursion to stack exhaustion is a trap: 500, and the worker keeps serving
--- http_config
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

=== TEST 8: fail closed with a configured status
--- http_config
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm_failure_policy closed 503; proxy_wasm hostile t; empty_gif; }
--- request
GET /t
--- error_code: 503
--- error_log
proxy_on_request_headers failed

=== TEST 9: fail open skips the failed filter and serves the request
--- http_config
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t {
    proxy_wasm_failure_policy open;
    proxy_wasm hostile t;
    proxy_wasm testbed "resp_add=x-after-failure:served";
    empty_gif;
}
--- request
GET /t
--- error_code: 200
--- response_headers
x-after-failure: served
--- error_log
failing open (proxy_wasm_failure_policy open): the filter is skipped

=== TEST 10: a plugin that traps on every request is restarted with a growing delay
--- http_config
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile t; empty_gif; }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- error_code eval
[500, 500, 500, 500, 500, 500, 500, 500]
--- error_log
proxy_on_request_headers failed: unreachable
--- grep_error_log eval
qr/replacing the instance after a failure/
--- grep_error_log_out eval
# One worker: 3 immediate restarts, then the delay. Several workers each restart on their own
# (the requests spread over them): that run only checks a restart happens.
(($Test::Nginx::Util::MasterProcessEnabled // 'off') eq 'on' && $Test::Nginx::Util::Workers > 1)
    ? qr/\A(replacing the instance after a failure\n){1,7}\z/
    : qr/\A(replacing the instance after a failure\n){3,4}\z/

=== TEST 11: bad limits fail nginx -t
--- http_config
wasm_max_memory 1k;
--- config
--- must_die
--- error_log eval
qr/invalid size "1k" in "wasm_max_memory": at least 64k/

=== TEST 12: a bad failure policy fails nginx -t
--- config
location /t { proxy_wasm_failure_policy sometimes; empty_gif; }
--- must_die
--- error_log eval
qr/invalid "proxy_wasm_failure_policy" "sometimes": use "closed \[status\]" or "open"/

=== TEST 13: a trap in on_response_headers fails the request as configured
--- http_config
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile th; empty_gif; }
--- request
GET /t
--- error_code: 500
--- error_log
proxy_on_response_headers failed: unreachable

=== TEST 14: an endless loop in on_response_headers ends at the CPU budget
--- http_config
wasm_max_instructions 20m;
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile lh; empty_gif; }
--- request
GET /t
--- error_code: 500
--- timeout: 20
--- error_log
proxy_on_response_headers failed: exceeded its CPU budget

=== TEST 15: a trap in on_request_body fails the request
--- http_config
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile tB; empty_gif; }
--- request
POST /t
some body
--- error_code: 500
--- error_log
proxy_on_request_body failed: unreachable

=== TEST 16: an endless loop in on_response_body after the headers were sent closes that connection; the worker serves the next request
--- http_config
wasm_max_instructions 20m;
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
wasm_module other $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile lb; proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/b; }
location /b { return 200 "body"; }
location /ok { proxy_wasm other n; empty_gif; }
--- request eval
["GET /t", "GET /ok"]
--- error_code eval
["", 200]
--- ignore_response
--- timeout: 20
--- error_log
proxy_on_response_body failed: exceeded its CPU budget
--- no_error_log
exited on signal

=== TEST 17: a trap in on_done is logged; the response was already served
--- http_config
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile td; empty_gif; }
--- request
GET /t
--- error_code: 200
--- error_log
proxy_on_done failed: unreachable

=== TEST 18: an endless loop in on_log ends at the CPU budget; the response was already served
--- http_config
wasm_max_instructions 20m;
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile lg; empty_gif; }
--- request
GET /t
--- error_code: 200
--- timeout: 20
--- error_log
proxy_on_log failed: exceeded its CPU budget

=== TEST 19: a trap in on_delete is logged
--- http_config
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile tx; empty_gif; }
--- request
GET /t
--- error_code: 200
--- error_log
proxy_on_delete failed: unreachable

=== TEST 20: a trap in on_tick stops the timer; requests are still served
--- http_config
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
wasm_module other $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile tk; empty_gif; }
location /ok { proxy_wasm other n; empty_gif; }
--- request
GET /ok
--- wait: 0.3
--- error_code: 200
--- error_log
proxy_on_tick failed: unreachable
--- no_error_log
exited on signal

=== TEST 21: an endless loop in on_tick ends at the CPU budget
--- http_config
wasm_max_instructions 20m;
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
wasm_module other $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile lk; empty_gif; }
location /ok { proxy_wasm other n; empty_gif; }
--- request
GET /ok
--- wait: 0.5
--- error_code: 200
--- timeout: 20
--- error_log
proxy_on_tick failed: exceeded its CPU budget

=== TEST 22: a trap in on_configure fails nginx -t, naming the proxy_wasm line
--- http_config
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile tc; empty_gif; }
--- must_die
--- error_log eval
qr/proxy_wasm "hostile": proxy_on_configure failed: unreachable .*in .*nginx\.conf:\d+/

=== TEST 23: an endless loop in on_configure fails nginx -t at the CPU budget
--- http_config
wasm_max_instructions 20m;
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile lc; empty_gif; }
--- must_die
--- timeout: 30
--- error_log eval
qr/proxy_on_configure failed: exceeded its CPU budget of 20000000 wasm instructions/

=== TEST 24: a trap in on_vm_start fails nginx -t, naming the wasm_module line
--- http_config
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat tv;
--- config
location /t { proxy_wasm hostile n; empty_gif; }
--- must_die
--- error_log eval
qr/proxy_on_vm_start failed: unreachable/

=== TEST 25: an endless loop in on_request_body ends at the CPU budget
--- http_config
wasm_max_instructions 20m;
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile lB; empty_gif; }
--- request
POST /t
some body
--- error_code: 500
--- timeout: 20
--- error_log
proxy_on_request_body failed: exceeded its CPU budget

=== TEST 26: an endless loop in on_done ends at the CPU budget
--- http_config
wasm_max_instructions 20m;
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile ld; empty_gif; }
--- request
GET /t
--- error_code: 200
--- timeout: 20
--- error_log
proxy_on_done failed: exceeded its CPU budget

=== TEST 27: an endless loop in on_delete ends at the CPU budget
--- http_config
wasm_max_instructions 20m;
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile lx; empty_gif; }
--- request
GET /t
--- error_code: 200
--- timeout: 20
--- error_log
proxy_on_delete failed: exceeded its CPU budget

=== TEST 28: a trap in on_log is logged; the response was already served
--- http_config
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
--- config
location /t { proxy_wasm hostile tg; empty_gif; }
--- request
GET /t
--- error_code: 200
--- error_log
proxy_on_log failed: unreachable

=== TEST 29: an endless loop in on_vm_start fails nginx -t at the CPU budget
--- http_config
wasm_max_instructions 20m;
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat lv;
--- config
location /t { proxy_wasm hostile n; empty_gif; }
--- must_die
--- timeout: 30
--- error_log eval
qr/proxy_on_vm_start failed: exceeded its CPU budget/
