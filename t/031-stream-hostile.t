# Hostile L4 filters (t/filters/wat/stream_hostile.wat): a trap, an endless loop and a memory
# fault in each stream callback, under proxy_wasm_failure_policy closed (the connection is
# closed, the failure logged) and open (the filter is skipped, data passes). The worker survives:
# the connections after a failure, through the same server and a healthy one, work.
# Each block talks to the stream servers through this block's http server (proxy_pass to the
# stream port), which gives several connections per block: /s goes through the hostile filter,
# /ok through a well-behaved one on another port; both end at location /inner.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
# Blocks without a stream_config get this one: the hostile module under a CPU budget and a
# memory cap, and a healthy server (RAND_PORT_1) in front of the http server.
use ProxyWasmStream 'stream_hostile', stream_config => <<'_EOC_';
    wasm_max_instructions 50m;
    wasm_max_memory 16m;
    wasm_module stream_hostile $TEST_NGINX_FILTERS/stream_hostile.wat;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        proxy_wasm stream_hostile ok;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    # Failures are expected here ([error]); nothing worse, and no worker dies.
    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[crit]\n[alert]\n[emerg]\nexited on signal\n");
    }
    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    location = /inner { return 200 "inner\n"; }
    location = /s { proxy_pass http://127.0.0.1:$TEST_NGINX_STREAM_PORT/inner; }
    location = /ok { proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/inner; }
_EOC_
    }
});

run_tests();

__DATA__

=== TEST 1: stream client: a trap in on_downstream_data, policy closed: the connection is closed
--- stream_server_config
    proxy_wasm_failure_policy closed;
    proxy_wasm stream_hostile td;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /inner HTTP/1.0\r\n\r\n"
--- stream_response:
--- error_log
proxy_on_downstream_data failed:


=== TEST 2: stream client: a trap in on_downstream_data, policy open: the data passes
--- stream_server_config
    proxy_wasm_failure_policy open;
    proxy_wasm stream_hostile td;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /inner HTTP/1.0\r\n\r\n"
--- stream_response_like chomp
^HTTP/1\.1 200 OK\r\n.*\r\n\r\ninner\n$
--- error_log
proxy_on_downstream_data failed:


=== TEST 3: the default failure policy is closed
--- stream_server_config
    proxy_wasm stream_hostile tn;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /inner HTTP/1.0\r\n\r\n"
--- stream_response:
--- error_log
proxy_on_new_connection failed:


=== TEST 4: a trap (unreachable) in proxy_on_new_connection, policy closed: the connection is closed (502 through the http proxy); the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy closed;
    proxy_wasm stream_hostile tn;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[502, 200, 502, 200]
--- timeout: 20
--- error_log
proxy_on_new_connection failed:


=== TEST 5: a trap (unreachable) in proxy_on_new_connection, policy open: the filter is skipped, data passes; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy open;
    proxy_wasm stream_hostile tn;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_new_connection failed:


=== TEST 6: an endless loop (CPU budget) in proxy_on_new_connection, policy closed: the connection is closed (502 through the http proxy); the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy closed;
    proxy_wasm stream_hostile ln;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[502, 200, 502, 200]
--- timeout: 20
--- error_log
proxy_on_new_connection failed:


=== TEST 7: an endless loop (CPU budget) in proxy_on_new_connection, policy open: the filter is skipped, data passes; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy open;
    proxy_wasm stream_hostile ln;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_new_connection failed:


=== TEST 8: memory.grow past wasm_max_memory, then an out-of-bounds load in proxy_on_new_connection, policy closed: the connection is closed (502 through the http proxy); the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy closed;
    proxy_wasm stream_hostile mn;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[502, 200, 502, 200]
--- timeout: 20
--- error_log
proxy_on_new_connection failed:


=== TEST 9: memory.grow past wasm_max_memory, then an out-of-bounds load in proxy_on_new_connection, policy open: the filter is skipped, data passes; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy open;
    proxy_wasm stream_hostile mn;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_new_connection failed:


=== TEST 10: a trap (unreachable) in proxy_on_downstream_data, policy closed: the connection is closed (502 through the http proxy); the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy closed;
    proxy_wasm stream_hostile td;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[502, 200, 502, 200]
--- timeout: 20
--- error_log
proxy_on_downstream_data failed:


=== TEST 11: a trap (unreachable) in proxy_on_downstream_data, policy open: the filter is skipped, data passes; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy open;
    proxy_wasm stream_hostile td;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_downstream_data failed:


=== TEST 12: an endless loop (CPU budget) in proxy_on_downstream_data, policy closed: the connection is closed (502 through the http proxy); the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy closed;
    proxy_wasm stream_hostile ld;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[502, 200, 502, 200]
--- timeout: 20
--- error_log
proxy_on_downstream_data failed:


=== TEST 13: an endless loop (CPU budget) in proxy_on_downstream_data, policy open: the filter is skipped, data passes; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy open;
    proxy_wasm stream_hostile ld;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_downstream_data failed:


=== TEST 14: memory.grow past wasm_max_memory, then an out-of-bounds load in proxy_on_downstream_data, policy closed: the connection is closed (502 through the http proxy); the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy closed;
    proxy_wasm stream_hostile md;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[502, 200, 502, 200]
--- timeout: 20
--- error_log
proxy_on_downstream_data failed:


=== TEST 15: memory.grow past wasm_max_memory, then an out-of-bounds load in proxy_on_downstream_data, policy open: the filter is skipped, data passes; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy open;
    proxy_wasm stream_hostile md;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_downstream_data failed:


=== TEST 16: a trap (unreachable) in proxy_on_upstream_data, policy closed: the connection is closed (502 through the http proxy); the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy closed;
    proxy_wasm stream_hostile tu;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[502, 200, 502, 200]
--- timeout: 20
--- error_log
proxy_on_upstream_data failed:


=== TEST 17: a trap (unreachable) in proxy_on_upstream_data, policy open: the filter is skipped, data passes; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy open;
    proxy_wasm stream_hostile tu;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_upstream_data failed:


=== TEST 18: an endless loop (CPU budget) in proxy_on_upstream_data, policy closed: the connection is closed (502 through the http proxy); the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy closed;
    proxy_wasm stream_hostile lu;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[502, 200, 502, 200]
--- timeout: 20
--- error_log
proxy_on_upstream_data failed:


=== TEST 19: an endless loop (CPU budget) in proxy_on_upstream_data, policy open: the filter is skipped, data passes; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy open;
    proxy_wasm stream_hostile lu;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_upstream_data failed:


=== TEST 20: memory.grow past wasm_max_memory, then an out-of-bounds load in proxy_on_upstream_data, policy closed: the connection is closed (502 through the http proxy); the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy closed;
    proxy_wasm stream_hostile mu;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[502, 200, 502, 200]
--- timeout: 20
--- error_log
proxy_on_upstream_data failed:


=== TEST 21: memory.grow past wasm_max_memory, then an out-of-bounds load in proxy_on_upstream_data, policy open: the filter is skipped, data passes; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy open;
    proxy_wasm stream_hostile mu;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_upstream_data failed:


=== TEST 22: a trap (unreachable) in proxy_on_upstream_connection_close, policy closed: the response was already sent; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy closed;
    proxy_wasm stream_hostile tC;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_upstream_connection_close failed:


=== TEST 23: a trap (unreachable) in proxy_on_upstream_connection_close, policy open: the response was already sent; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy open;
    proxy_wasm stream_hostile tC;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_upstream_connection_close failed:


=== TEST 24: an endless loop (CPU budget) in proxy_on_upstream_connection_close, policy closed: the response was already sent; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy closed;
    proxy_wasm stream_hostile lC;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_upstream_connection_close failed:


=== TEST 25: an endless loop (CPU budget) in proxy_on_upstream_connection_close, policy open: the response was already sent; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy open;
    proxy_wasm stream_hostile lC;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_upstream_connection_close failed:


=== TEST 26: memory.grow past wasm_max_memory, then an out-of-bounds load in proxy_on_upstream_connection_close, policy closed: the response was already sent; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy closed;
    proxy_wasm stream_hostile mC;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_upstream_connection_close failed:


=== TEST 27: memory.grow past wasm_max_memory, then an out-of-bounds load in proxy_on_upstream_connection_close, policy open: the response was already sent; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy open;
    proxy_wasm stream_hostile mC;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_upstream_connection_close failed:


=== TEST 28: a trap (unreachable) in proxy_on_downstream_connection_close, policy closed: the response was already sent; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy closed;
    proxy_wasm stream_hostile tc;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_downstream_connection_close failed:


=== TEST 29: a trap (unreachable) in proxy_on_downstream_connection_close, policy open: the response was already sent; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy open;
    proxy_wasm stream_hostile tc;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_downstream_connection_close failed:


=== TEST 30: an endless loop (CPU budget) in proxy_on_downstream_connection_close, policy closed: the response was already sent; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy closed;
    proxy_wasm stream_hostile lc;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_downstream_connection_close failed:


=== TEST 31: an endless loop (CPU budget) in proxy_on_downstream_connection_close, policy open: the response was already sent; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy open;
    proxy_wasm stream_hostile lc;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_downstream_connection_close failed:


=== TEST 32: memory.grow past wasm_max_memory, then an out-of-bounds load in proxy_on_downstream_connection_close, policy closed: the response was already sent; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy closed;
    proxy_wasm stream_hostile mc;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_downstream_connection_close failed:


=== TEST 33: memory.grow past wasm_max_memory, then an out-of-bounds load in proxy_on_downstream_connection_close, policy open: the response was already sent; the worker serves on
--- stream_server_config
    proxy_wasm_failure_policy open;
    proxy_wasm stream_hostile mc;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /s", "GET /ok"]
--- error_code eval
[200, 200, 200, 200]
--- timeout: 20
--- error_log
proxy_on_downstream_connection_close failed:



=== TEST 34: both modules in one nginx: a trap in a stream filter fails its own connections only; the http module's filters and the next stream connections work (each .so keeps its own runtime: -Bsymbolic)
--- http_config
    wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
    location = /inner { proxy_wasm testbed "resp_add=x-http-filter:yes"; return 200 "inner\n"; }
    location = /s { proxy_pass http://127.0.0.1:$TEST_NGINX_STREAM_PORT/inner; }
    location = /ok { proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/inner; }
--- stream_config
    wasm_max_instructions 50m;
    wasm_module stream_hostile $TEST_NGINX_FILTERS/stream_hostile.wat;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        proxy_wasm stream_hostile ok;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
    }
--- stream_server_config
    proxy_wasm stream_hostile td;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /s", "GET /ok", "GET /inner", "GET /s", "GET /ok"]
--- error_code eval
[502, 200, 200, 502, 200]
--- response_headers eval
["", "x-http-filter: yes", "x-http-filter: yes", "", "x-http-filter: yes"]
--- error_log
proxy_on_downstream_data failed:
