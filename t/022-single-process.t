# nginx as the real Test::Nginx runs it, whatever the suite's mode: master_process off and
# error_log debug. nginx built --with-debug (Debian's is) logs every timer with
# ngx_event_ident(ev->data), reading ev->data as a connection: every event the module arms (ticks,
# the queue poller, root-call and call-timeout timers) must survive that. Before the fix the
# first timer crashed the process.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

master_off();
log_level('debug');

run_tests();

__DATA__

=== TEST 1: a tick period set in on_configure fires; the queue poller runs alongside
--- config
location /t { proxy_wasm testbed "name=ticker;tick=100;tick_max=3"; empty_gif; }
--- request
GET /t
--- wait: 1
--- grep_error_log eval
qr/tick \d+ ticker/
--- grep_error_log_out
tick 1 ticker
tick 2 ticker
tick 3 ticker
--- error_log eval
qr/event timer del: -1: \d+/

=== TEST 2: a root context's call from on_tick (fake request timers) and a call that times out
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
proxy_wasm_call_allow testbed 127.0.0.1;
--- config
location /t {
    proxy_wasm testbed "name=ticker; tick=50; tick_max=1; tick_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?from=tick";
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /slow timeout=300; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
location /backend { return 200 "backend saw $args\n"; }
location /slow { limit_rate 50; alias $TEST_NGINX_HTML_DIR/big.txt; }
location /app { return 200 "app got x-auth=$http_x_auth\n"; }
--- user_files eval
">>> big.txt\n" . ("x" x 4000) . "\n"
--- request
GET /t
--- wait: 0.5
--- response_body
app got x-auth=NONE:
--- error_log eval
[qr/root ticker call response token=\d+ status=200 headers=\d+ body=backend saw from=tick/,
 qr/timed out after 300 ms/]
--- no_error_log
[alert]
[crit]
exited on signal
