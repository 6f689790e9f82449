# The host follows the spec, not one SDK: an AssemblyScript filter (@solo-io/proxy-runtime,
# ABI 0.2.0, t/filters/assemblyscript) and a hand-written ABI 0.1.0 filter
# (t/filters/wat/abi_0_1_0.wat), alone and chained with the Rust testbed filter.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

add_block_preprocessor(sub {
    my $block = shift;
    # ProxyWasmTest's default http_config loads only testbed; this suite needs all three.
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<'_EOC_');
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
wasm_module as $TEST_NGINX_FILTERS/as_filter.wasm;
wasm_module abi010 $TEST_NGINX_FILTERS/abi_0_1_0.wat;
_EOC_
    }
});

run_tests();

__DATA__

=== TEST 1: AS filter: loads (nginx -t passes) and adds x-as-filter: none without configuration
--- config
location /t {
    proxy_wasm as;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "backend\n"; }
--- request
GET /t
--- error_code: 200
--- response_body
backend
--- response_headers
x-as-filter: none
!x-blocked-by

=== TEST 2: AS filter: its configuration reaches on_configure and on_response_headers
--- config
location /t {
    proxy_wasm as "x-custom-block";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "backend\n"; }
--- request
GET /t
--- error_code: 200
--- response_headers
x-as-filter: x-custom-block

=== TEST 3: AS filter: the default block header gives a local 403 with body and header
--- config
location /t {
    proxy_wasm as;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "backend must not answer\n"; }
--- request
GET /t
--- more_headers
X-AS-Block: 1
--- error_code: 403
--- response_body chomp
blocked by assemblyscript
--- response_headers
x-blocked-by: as
Content-Length: 25
!x-as-filter

=== TEST 4: AS filter: the configured header blocks (even with an empty value), the default one no longer does
--- config
location /t {
    proxy_wasm as "x-custom-block";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "seen=$http_x_as_seen\n"; }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- more_headers eval
["X-Custom-Block: yes", "X-Custom-Block:", "X-AS-Block: 1"]
--- error_code eval
[403, 403, 200]
--- response_body eval
["blocked by assemblyscript", "blocked by assemblyscript", "seen=1\n"]

=== TEST 5: AS filter: the request header it adds reaches the upstream
--- config
location /t {
    proxy_wasm as;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "seen=$http_x_as_seen\n"; }
--- request
GET /t
--- error_code: 200
--- response_body
seen=1

=== TEST 6: AS filter: on_configure logs at info, with and without configuration
--- config
location /a { proxy_wasm as; empty_gif; }
location /b { proxy_wasm as "x-other"; empty_gif; }
--- request
GET /a
--- error_code: 200
--- error_log
as filter configured: header=x-as-block config=none
as filter configured: header=x-other config=x-other
--- no_error_log
[error]
[crit]
[alert]
[emerg]
exited on signal

=== TEST 7: ABI 0.1.0 filter: loads, and the request header it adds reaches the upstream
--- config
location /t {
    proxy_wasm abi010 "hello 0.1.0";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "abi=$http_x_abi\n"; }
--- request
GET /t
--- error_code: 200
--- response_body
abi=0.1.0

=== TEST 8: ABI 0.1.0 filter: a missing header is OK (status 0) with an empty value (length 0)
--- config
location /t { proxy_wasm abi010; empty_gif; }
--- request
GET /t
--- error_code: 200
--- error_log
abi_0_1_0 missing header: status=0 len=0
--- no_error_log
[error]
[crit]
[alert]
[emerg]
exited on signal

=== TEST 9: ABI 0.1.0 filter: proxy_get_configuration in on_configure, x-abi-config on the response
--- config
location /t {
    proxy_wasm abi010 "hello 0.1.0";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "ok\n"; }
--- request
GET /t
--- error_code: 200
--- response_headers
x-abi-config: hello 0.1.0
--- error_log
abi_0_1_0 configured: status=0 len=11 config=hello 0.1.0
--- no_error_log
[error]
[crit]
[alert]
[emerg]
exited on signal

=== TEST 10: ABI 0.1.0 filter: two root contexts of one module keep their own configuration
--- config
location /t {
    proxy_wasm abi010 "one";
    proxy_wasm abi010 "two";
    empty_gif;
}
--- request
GET /t
--- error_code: 200
--- raw_response_headers_like eval
qr/x-abi-config: one\r\n(?:.*\r\n)*x-abi-config: two\r\n/i

=== TEST 11: AS filter chained after a Rust testbed filter: both act, in order
--- config
location /t {
    proxy_wasm testbed "order=A";
    proxy_wasm as;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "order=$http_x_order seen=$http_x_as_seen\n"; }
--- request
GET /t
--- error_code: 200
--- response_body
order=A seen=1
--- response_headers
x-order: A
x-as-filter: none

=== TEST 12: AS filter chained after a Rust testbed filter: its local response is final
--- config
location /t {
    proxy_wasm testbed "order=A";
    proxy_wasm as;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "backend must not answer\n"; }
--- request
GET /t
--- more_headers
X-AS-Block: 1
--- error_code: 403
--- response_body chomp
blocked by assemblyscript
--- response_headers
x-blocked-by: as
!x-order
!x-as-filter

=== TEST 13: three SDKs / ABI versions in one chain (Rust 0.2.1, AssemblyScript 0.2.0, WAT 0.1.0)
--- config
location /t {
    proxy_wasm testbed "order=R";
    proxy_wasm as "x-custom-block";
    proxy_wasm abi010 "chained";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "order=$http_x_order seen=$http_x_as_seen abi=$http_x_abi\n"; }
--- request
GET /t
--- error_code: 200
--- response_body
order=R seen=1 abi=0.1.0
--- response_headers
x-order: R
x-as-filter: x-custom-block
x-abi-config: chained
