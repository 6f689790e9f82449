# proxy_set_tick_period_milliseconds / proxy_on_tick per root context in each worker.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

workers(1);    # the blocks count one worker's ticks

run_tests();

__DATA__

=== TEST 1: a root context ticks at its period, and stops when it sets 0
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

=== TEST 2: each proxy_wasm occurrence is its own root context with its own timer
--- config
location /a { proxy_wasm testbed "name=first;tick=100;tick_max=2"; empty_gif; }
location /b { proxy_wasm testbed "name=second;tick=150;tick_max=1"; empty_gif; }
--- request
GET /a
--- wait: 1
--- error_log
tick 2 first
tick 1 second
--- no_error_log
tick 3 first
tick 2 second

=== TEST 3: a trap in on_tick stops that timer, is logged, and requests are still served
--- config
location /t { proxy_wasm testbed "name=bad;tick=50;tick_trap=2;resp_add=x-served:1"; empty_gif; }
--- request
GET /t
--- wait: 0.5
--- error_code: 200
--- response_headers
x-served: 1
--- error_log
tick 2 bad
proxy_on_tick failed
--- no_error_log
exited on signal

=== TEST 4: ticks do not keep nginx from stopping
--- config
location /t { proxy_wasm testbed "name=forever;tick=20"; empty_gif; }
--- request
GET /t
--- wait: 0.3
--- error_log
tick 3 forever
--- no_error_log
exited on signal
