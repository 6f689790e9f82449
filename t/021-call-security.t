# HTTP calls and shared state against a hostile or careless plugin: retry storms do not take
# the worker, targets are refused at dispatch (unresolvable, not allowed by
# proxy_wasm_call_allow), queues and shared data are scoped to their module, and calls are
# bounded.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

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
