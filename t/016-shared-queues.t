# Shared queues across workers: register / resolve / enqueue / dequeue, proxy_on_queue_ready
# delivered by each worker's poll timer (every 100 ms) to the root context that registered.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest 'shared_state';

master_on();    # two workers (and, in 015, a reload) need a master process
workers(2);

run_tests();

__DATA__

=== TEST 1: a queue registered in worker 1 is filled by worker 2 and drained by worker 1's on_queue_ready, in order
--- config
location /t { proxy_wasm shared_state "tick=20;queue=jobs"; empty_gif; }
--- request
GET /t
--- wait: 1
--- grep_error_log eval
qr/worker \d (?:dequeued: .*|queue empty|registered queue \w+)/
--- grep_error_log_out
worker 1 registered queue jobs
worker 1 dequeued: hello from worker 2
worker 1 dequeued: bye from worker 2
worker 1 queue empty
--- error_log
worker 2 enqueued to jobs: Ok(())

=== TEST 2: from requests: unknown queue NOT_FOUND, EMPTY when empty, FIFO order
--- config
location /t { proxy_wasm shared_state; empty_gif; }
--- request
GET /t
--- more_headers
x-ops: dequeue=q;enqueue=q:x;register=q;register=q;dequeue=q;enqueue=q:a;enqueue=q:b;dequeue=q;dequeue=q;dequeue=q
--- response_body
dequeue q: NOT_FOUND
enqueue q: NOT_FOUND
register q: id=1
register q: id=1
dequeue q: EMPTY
enqueue q: Ok(())
enqueue q: Ok(())
dequeue q: a
dequeue q: b
dequeue q: EMPTY

=== TEST 3: queue names are namespaced by vm_id; ids are shared by every worker
--- http_config
wasm_module shared_state $TEST_NGINX_FILTERS/shared_state.wasm;
wasm_module other $TEST_NGINX_FILTERS/shared_state.wasm;
--- config
location /a { proxy_wasm shared_state; empty_gif; }
location /b { proxy_wasm other; empty_gif; }
--- request eval
["GET /a", "GET /b", "GET /a", "GET /b", "GET /a"]
--- more_headers eval
["x-ops: register=q", "x-ops: enqueue=q:x;register=q", "x-ops: register=q;enqueue=q:for a", "x-ops: dequeue=q", "x-ops: dequeue=q"]
--- response_body eval
["register q: id=1\n", "enqueue q: NOT_FOUND\nregister q: id=2\n", "register q: id=1\nenqueue q: Ok(())\n", "dequeue q: EMPTY\n", "dequeue q: for a\n"]

=== TEST 4: a trap in on_queue_ready is logged as that callback's failure; the worker keeps serving
--- http_config
wasm_module queue_trap $TEST_NGINX_FILTERS/queue_trap.wat;
--- config
location /t { proxy_wasm queue_trap; empty_gif; }
--- request
GET /t
--- wait: 0.5
--- error_code: 200
--- error_log
queue_trap: proxy_on_queue_ready failed
--- no_error_log
exited on signal
[alert]
