# HTTP calls and shared state against a hostile or careless plugin: retry storms do not take
# the worker, targets are refused at dispatch (unresolvable, not allowed by
# proxy_wasm_call_allow), queues and shared data are scoped to their module, and calls are
# bounded.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

# "The same worker": the storms and the logged-once checks need one worker, in every mode.
workers(1);

our $Backend = <<'_EOC_';
location /plain { return 200 "plain ok\n"; }
location /backend { return 200 "backend ok\n"; }
location /app { return 200 "app got x-auth=$http_x_auth\n"; }
_EOC_

# A request that starts a retry storm and stays open (its socket is kept), sent from a
# block's `--- init` before the block's own request.
sub start_storm {
    require IO::Socket::INET;
    $main::storm = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}", Timeout => 2)
        or die "cannot connect: $!";
    print {$main::storm} "GET /storm HTTP/1.1\r\nHost: localhost\r\n\r\n";
    settle();
}

sub settle { select(undef, undef, undef, 0.5) }

add_block_preprocessor(sub {
    my $block = shift;
    if (defined $block->config) {
        $block->set_value("config", $block->config . $Backend);
    }
});

run_tests();

__DATA__

=== TEST 1: retry storm from on_http_call_response (calls failing without network I/O): the worker still serves
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
proxy_wasm_call_allow testbed 127.0.0.1:1;
--- config
location /storm {
    proxy_wasm testbed "call=127.0.0.1:1 /x; call_retry";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/plain;
}
--- init
start_storm();
--- request
GET /plain
--- timeout: 3
--- response_body
plain ok
--- wait: 1
--- error_log eval
[qr/testbed call response token=[2-9]\d* status=NONE/,
 qr/connect\(\) failed \(111: Connection refused\)/]
--- no_error_log eval
[qr/call response token=\d{3,}/, "[alert]", "[crit]", "exited on signal"]
--- shutdown_error_log eval
qr/\[notice\] \d+#\d+: exit$/



=== TEST 2: retry storm from a root context (on_tick, then its call responses): the worker still serves
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
proxy_wasm_call_allow testbed 127.0.0.1:1;
--- config
location /unused {
    proxy_wasm testbed "name=ticker; tick=20; tick_max=1; tick_call=127.0.0.1:1 /x; root_call_retry";
}
--- init
settle();
--- request
GET /plain
--- timeout: 3
--- response_body
plain ok
--- wait: 1
--- error_log eval
[qr/root ticker call response token=[2-9]\d* status=NONE/,
 qr/connect\(\) failed \(111: Connection refused\)/]
--- no_error_log eval
[qr/call response token=\d{3,}/, "[alert]", "[crit]", "exited on signal"]
--- shutdown_error_log eval
qr/\[notice\] \d+#\d+: exit$/



=== TEST 3: a host name while no resolver is configured is refused at dispatch (BAD_ARGUMENT), logged once per target
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
proxy_wasm_call_allow testbed *;
--- config
location /t {
    proxy_wasm testbed "call=nosuch.example:80 /x; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request eval
["GET /t", "GET /t"]
--- response_body eval
["app got x-auth=\n", "app got x-auth=\n"]
--- grep_error_log eval
qr/proxy_http_call to "nosuch.example:80" refused \(BAD_ARGUMENT\): no resolver defined to resolve "nosuch.example"|testbed call dispatch failed: BadArgument/
--- grep_error_log_out eval
qr/^proxy_http_call to "nosuch.example:80" refused \(BAD_ARGUMENT\): no resolver defined to resolve "nosuch.example"
testbed call dispatch failed: BadArgument
testbed call dispatch failed: BadArgument
$/
--- no_error_log
no resolver defined to resolve nosuch.example
[alert]
[crit]



=== TEST 4: malformed targets are refused at dispatch: bad port, bad address
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
proxy_wasm_call_allow testbed *;
--- config
location /t {
    proxy_wasm testbed "call=example.com:99999 /x; call=example.com:0 /x; call=10.0.0.999:80 /x; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=
--- error_log eval
[qr/proxy_http_call to "example.com:99999" refused \(BAD_ARGUMENT\): invalid port "99999"/,
 qr/proxy_http_call to "example.com:0" refused \(BAD_ARGUMENT\): invalid port "0"/,
 qr/proxy_http_call to "10.0.0.999:80" refused \(BAD_ARGUMENT\): invalid address "10.0.0.999"/]
--- no_error_log
[alert]
[crit]



=== TEST 5: by default a module may call upstream{} blocks only; proxy_wasm_call_allow is per module
--- http_config
upstream auth_cluster { server 127.0.0.1:$TEST_NGINX_SERVER_PORT; }
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
wasm_module other $TEST_NGINX_FILTERS/testbed.wasm;
proxy_wasm_call_allow other 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- config
location /t {
    proxy_wasm testbed "call=auth_cluster /backend; call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
location /o {
    proxy_wasm other "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend; call=127.0.0.1:1 /x; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request eval
["GET /t", "GET /o"]
--- response_body eval
["app got x-auth=200:backend ok\n", "app got x-auth=200:backend ok\n"]
--- error_log eval
[qr/\[proxy_wasm\] testbed: proxy_http_call to "127.0.0.1:\d+" refused \(BAD_ARGUMENT\): module "testbed" may not call it: a loopback or link-local target needs a "proxy_wasm_call_allow testbed" pattern naming it/,
 qr/\[proxy_wasm\] other: proxy_http_call to "127.0.0.1:1" refused \(BAD_ARGUMENT\): module "other" may not call it/]
--- no_error_log
[alert]
[crit]
connect() failed



=== TEST 6: loopback, unspecified and link-local targets need a pattern naming them ("*" and 0.0.0.0/0 do not)
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
proxy_wasm_call_allow testbed * 0.0.0.0/0 [::]/0;
resolver 127.0.0.1:1;
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend; call=169.254.169.254:80 /latest/meta-data; call=localhost:$TEST_NGINX_SERVER_PORT /backend; call=[::1]:$TEST_NGINX_SERVER_PORT /backend; call=0.0.0.0:$TEST_NGINX_SERVER_PORT /backend; call=[::ffff:127.0.0.1]:$TEST_NGINX_SERVER_PORT /backend; call=[fe80::1]:80 /x; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=
--- error_log eval
[qr/proxy_http_call to "127.0.0.1:\d+" refused \(BAD_ARGUMENT\): module "testbed" may not call it: a loopback/,
 qr/proxy_http_call to "169.254.169.254:80" refused \(BAD_ARGUMENT\): module "testbed" may not call it: a loopback/,
 qr/proxy_http_call to "localhost:\d+" refused \(BAD_ARGUMENT\): module "testbed" may not call it: a loopback/,
 qr/proxy_http_call to "\[::1\]:\d+" refused \(BAD_ARGUMENT\): module "testbed" may not call it: a loopback/,
 qr/proxy_http_call to "0.0.0.0:\d+" refused \(BAD_ARGUMENT\)/,
 qr/proxy_http_call to "\[::ffff:127.0.0.1\]:\d+" refused \(BAD_ARGUMENT\)/,
 qr/proxy_http_call to "\[fe80::1\]:80" refused \(BAD_ARGUMENT\)/]
--- no_error_log
[alert]
[crit]
testbed call response



=== TEST 7: an explicit pattern allows a loopback target, only on its port
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
proxy_wasm_call_allow testbed 127.0.0.0/8:$TEST_NGINX_SERVER_PORT;
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend; call=127.0.0.1:1 /x; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=200:backend ok
--- error_log eval
qr/proxy_http_call to "127.0.0.1:1" refused \(BAD_ARGUMENT\)/
--- no_error_log
[alert]
[crit]



=== TEST 8: a bad pattern fails nginx -t with the file and line
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
proxy_wasm_call_allow testbed 10.0.0.0/33;
--- config
location /t { empty_gif; }
--- must_die
--- error_log eval
qr/invalid pattern "10.0.0.0\/33" in "proxy_wasm_call_allow": invalid prefix length "\/33" in "10.0.0.0\/33" in .*nginx\.conf:\d+/



=== TEST 9: proxy_wasm_call_allow for an undeclared module fails nginx -t with the file and line
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
proxy_wasm_call_allow tsetbed 127.0.0.1;
--- config
location /t { empty_gif; }
--- must_die
--- error_log eval
qr/proxy_wasm_call_allow: unknown module "tsetbed": declare it with "wasm_module" .* in .*nginx\.conf:\d+/



=== TEST 10: proxy_wasm_call_allow may come before its wasm_module
--- http_config
proxy_wasm_call_allow testbed 127.0.0.1:$TEST_NGINX_SERVER_PORT;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=200:backend ok



=== TEST 11: a queue id is no key: another module cannot dequeue or enqueue by guessing it; by name it may only enqueue; shared data stays per module
--- http_config
wasm_module alpha $TEST_NGINX_FILTERS/shared_state.wasm;
wasm_module beta $TEST_NGINX_FILTERS/shared_state.wasm;
--- config
location /a { proxy_wasm alpha; empty_gif; }
location /b { proxy_wasm beta; empty_gif; }
--- request eval
["GET /a", "GET /b", "GET /a"]
--- more_headers eval
["x-ops: set=k:alpha secret;register=q;enqueue=q:secret 1;enqueue=q:secret 2",
 "x-ops: dequeue_id=1;enqueue_id=1:forged;get=k;dequeue=q;dequeue_vm=alpha:q;enqueue_vm=alpha:q:from beta;dequeue_vm=alpha:q",
 "x-ops: dequeue=q;dequeue=q;dequeue=q;dequeue=q;get=k"]
--- response_body eval
["set k: Ok\nregister q: id=1\nenqueue q: Ok(())\nenqueue q: Ok(())\n",
 "dequeue_id 1: NotFound\nenqueue_id 1: Err(NotFound)\nget k: NOT_FOUND\ndequeue q: NOT_FOUND\ndequeue_vm alpha:q: NotFound\nenqueue_vm alpha:q: Ok(())\ndequeue_vm alpha:q: NotFound\n",
 "dequeue q: secret 1\ndequeue q: secret 2\ndequeue q: from beta\ndequeue q: EMPTY\nget k: alpha secret cas=nonzero\n"]



=== TEST 12: a request's context may make 1024 calls over its life: a plugin chaining calls forever hits the wall and the request goes on
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
proxy_wasm_call_allow testbed 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend; call_forever";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- timeout: 20
--- response_body
app got x-auth=
--- error_log eval
[qr/testbed call response token=1024 status=200/,
 qr/proxy_http_call refused \(INTERNAL_FAILURE\): this request made too many calls, or too many call bytes/]
--- no_error_log eval
[qr/token=1025 status/, "[alert]", "[crit]"]



=== TEST 13: a storm that fans out (two calls dispatched per failure) is paced too: at most one failure per back-off step
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
proxy_wasm_call_allow testbed 127.0.0.1:1;
--- config
location /storm {
    proxy_wasm testbed "call=127.0.0.1:1 /x; call=127.0.0.1:1 /y; call_retry";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/plain;
}
--- init
start_storm();
--- request
GET /plain
--- timeout: 3
--- response_body
plain ok
--- wait: 4
--- error_log eval
qr/testbed call response token=[2-9]\d* status=NONE/
--- no_error_log eval
[qr/call response token=(?:[3-9]\d|\d{3,}) /, "[alert]", "[crit]", "exited on signal"]
--- shutdown_error_log eval
qr/\[notice\] \d+#\d+: exit$/
