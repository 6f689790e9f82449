# gRPC calls (proxy_grpc_call, proxy_grpc_stream) through nginx's grpc module, against a
# real gRPC server (t/lib/grpc_server.py, Python grpcio): unary OK and error statuses,
# deadlines, an unavailable upstream, metadata both ways (-bin too), a large message, server
# and client streaming, cancel, concurrent calls, TLS with a test CA, a root context's call,
# all from the Rust SDK filter t/filters/grpc_testbed.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use TestCerts;
use GrpcServer;

BEGIN {
    $ENV{TEST_NGINX_CERTS} = TestCerts::make(($ENV{TEST_NGINX_SERVROOT} // 't/servroot') . "-grpc-certs");
}
use ProxyWasmTest 'grpc_testbed';
$ENV{TEST_NGINX_GRPC_PORT} = GrpcServer::start();
$ENV{TEST_NGINX_GRPCS_PORT} = GrpcServer::start(cert => "$ENV{TEST_NGINX_CERTS}/server.crt",
                                                key => "$ENV{TEST_NGINX_CERTS}/server.key");

our $App = <<'_EOC_';
location /app { return 200 "app got $http_x_grpc_result\n"; }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    if (defined $block->config) {
        $block->set_value("config", $block->config . $App);
    }
    # 127.0.0.1 and localhost need an explicit allow (upstream{} names are always allowed).
    my $allow = "proxy_wasm_call_allow grpc_testbed 127.0.0.1 localhost;\n"
        . "wasm_call_ssl_trusted_certificate $ENV{TEST_NGINX_CERTS}/ca.crt;\n";
    if (!defined $block->http_config) {
        $block->set_value("http_config", "wasm_module grpc_testbed \$TEST_NGINX_FILTERS/grpc_testbed.wasm;\n$allow");
    } elsif ($block->http_config !~ /proxy_wasm_call_allow|wasm_call_ssl_trusted/) {
        $block->set_value("http_config", $block->http_config =~ s/^(wasm_module grpc_testbed .*\n)/$1$allow/mr);
    }
});

run_tests();

__DATA__

=== TEST 1: a unary call: the message, metadata both ways (-bin base64 on the wire), trailing metadata; the request waits for it
--- config
location /t {
    proxy_wasm grpc_testbed "grpc=127.0.0.1:$TEST_NGINX_GRPC_PORT test.Echo Unary msg=ping md=x-echo:abc mdbin=x-data-bin:00ff0a";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got 0:echo:ping
--- error_log eval
qr/grpc response token=\d+ status=0 size=9 msg=echo:ping grpc_message=- md=abc bin=00ff0a trailer=done/

=== TEST 2: what the server saw: POST /service/method, content-type, te, grpc-timeout, the plugin's metadata
--- config
location /t {
    proxy_wasm grpc_testbed "grpc=127.0.0.1:$TEST_NGINX_GRPC_PORT test.Echo Headers timeout=4000 md=x-one:1 mdbin=x-two-bin:ff";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body_like
^app got 0:.*x-one=1\|.*x-two-bin=ff
--- error_log eval
qr/grpc response token=\d+ status=0 /

=== TEST 3: an error status with its message reaches proxy_on_grpc_close; the filter answers 403
--- config
location /t {
    proxy_wasm grpc_testbed "grpc=127.0.0.1:$TEST_NGINX_GRPC_PORT test.Echo Fail md=x-code:7 md=x-details:not%20you; deny_on_error";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- error_code: 403
--- response_body
grpc status 7: not%20you
--- error_log eval
qr/grpc response token=\d+ status=7 size=0 msg= grpc_message=not%20you/

=== TEST 4: a call past its deadline: DEADLINE_EXCEEDED
--- config
location /t {
    proxy_wasm grpc_testbed "grpc=127.0.0.1:$TEST_NGINX_GRPC_PORT test.Echo Slow timeout=300 md=x-sleep-ms:3000";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got 4:
--- error_log eval
[qr/grpc response token=\d+ status=4 size=0 msg= grpc_message=timed out after 300 ms/, qr/timed out after 300 ms/]
--- no_error_log
[crit]
[alert]

=== TEST 5: an unavailable upstream (connection refused): UNAVAILABLE, and the request goes on
--- config
location /t {
    proxy_wasm grpc_testbed "grpc=127.0.0.1:1 test.Echo Unary msg=x";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got 14:
--- error_log eval
qr/grpc response token=\d+ status=14 size=0/
--- no_error_log
[crit]
[alert]

=== TEST 6: a large answer (> 64 KiB) arrives whole
--- config
location /t {
    proxy_wasm grpc_testbed "grpc=127.0.0.1:$TEST_NGINX_GRPC_PORT test.Echo Big msg=200000";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body_like eval
qr/^app got 0:0123456789abcdef[0-9a-f]+\n\z/
--- error_log eval
qr/grpc response token=\d+ status=0 size=200000 msg=0123456789abcdef/

=== TEST 7: server streaming: initial metadata, each message as it arrives, trailing metadata, the close
--- config
location /t {
    proxy_wasm grpc_testbed "stream=127.0.0.1:$TEST_NGINX_GRPC_PORT test.Echo Count msg=3 md=x-gap-ms:50";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got 0:msg-0,msg-1,msg-2
--- grep_error_log eval
qr/grpc stream (?:initial metadata|message|trailing metadata|close) token=\d+ [^\s,]+(?: grpc_message=[^\s,]+)?/
--- grep_error_log_out eval
qr/\Agrpc stream initial metadata token=\d+ x-stream=yes
grpc stream message token=\d+ body=msg-0
grpc stream message token=\d+ body=msg-1
grpc stream message token=\d+ body=msg-2
grpc stream trailing metadata token=\d+ x-count=3
grpc stream close token=\d+ status=0 grpc_message=-
\z/

=== TEST 8: client streaming: several messages, one answer
--- config
location /t {
    proxy_wasm grpc_testbed "stream=127.0.0.1:$TEST_NGINX_GRPC_PORT test.Echo Collect msgs=a,b,c";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got 0:a+b+c

=== TEST 9: a stream ended by proxy_grpc_close; a send after the end says BAD_ARGUMENT
--- config
location /t {
    proxy_wasm grpc_testbed "stream=127.0.0.1:$TEST_NGINX_GRPC_PORT test.Echo Collect msgs=x,y close; send_after_end";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got 0:x+y
--- error_log
grpc late send result=Err(BadArgument)
proxy_grpc_send refused (BAD_ARGUMENT)

=== TEST 10: cancel a stream after two messages: nothing more is delivered, the request goes on
--- config
location /t {
    proxy_wasm grpc_testbed "stream=127.0.0.1:$TEST_NGINX_GRPC_PORT test.Echo Count msg=6 md=x-gap-ms:200; cancel_after=2";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got msg-0,msg-1
--- no_error_log
grpc stream close
body=msg-2
[error]

=== TEST 11: cancel a unary call right after dispatch: no callback, the request goes on at once
--- config
location /t {
    proxy_wasm grpc_testbed "grpc=127.0.0.1:$TEST_NGINX_GRPC_PORT test.Echo Slow md=x-sleep-ms:1000; cancel";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got 
--- error_log eval
qr/grpc cancelled token=\d+ result=Ok/
--- no_error_log
grpc response
[error]

=== TEST 12: concurrent calls from one context: the request goes on once all are answered (nginx 1.22's $http_ shows the first header only)
--- config
location /t {
    proxy_wasm grpc_testbed "grpc=127.0.0.1:$TEST_NGINX_GRPC_PORT test.Echo Unary msg=a; grpc=127.0.0.1:$TEST_NGINX_GRPC_PORT test.Echo Slow md=x-sleep-ms:200; grpc=127.0.0.1:$TEST_NGINX_GRPC_PORT test.Echo Unary msg=b";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body_like
^app got 0:(echo:a|echo:b|slow)(, 0:(echo:a|echo:b|slow)){0,2}$
--- grep_error_log eval
qr/grpc response token=\d+ status=0/
--- grep_error_log_out eval
qr/\A(grpc response token=\d+ status=0\n){3}\z/

=== TEST 13: TLS (grpcs://) to an upstream{} block, verified against the test CA (the name checked is the block's)
--- http_config
wasm_module grpc_testbed $TEST_NGINX_FILTERS/grpc_testbed.wasm;
upstream localhost { server 127.0.0.1:$TEST_NGINX_GRPCS_PORT; }
--- config
location /t {
    proxy_wasm grpc_testbed "grpc=grpcs://localhost test.Echo Unary msg=secure";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got 0:echo:secure

=== TEST 14: TLS with a certificate the CA did not sign: UNAVAILABLE, the verification error logged
--- http_config
wasm_module grpc_testbed $TEST_NGINX_FILTERS/grpc_testbed.wasm;
upstream localhost { server 127.0.0.1:$TEST_NGINX_GRPCS_PORT; }
wasm_call_ssl_trusted_certificate $TEST_NGINX_CERTS/other.crt;
--- config
location /t {
    proxy_wasm grpc_testbed "grpc=grpcs://localhost test.Echo Unary msg=x";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got 14:
--- error_log
upstream SSL certificate verify error
--- no_error_log
[crit]
[alert]

=== TEST 15: an upstream{} block with keepalive; a root context's call from on_tick
--- http_config
wasm_module grpc_testbed $TEST_NGINX_FILTERS/grpc_testbed.wasm;
upstream echo_grpc { server 127.0.0.1:$TEST_NGINX_GRPC_PORT; keepalive 4; }
--- config
location /t {
    proxy_wasm grpc_testbed "grpc=echo_grpc test.Echo Unary msg=pooled; tick_grpc=echo_grpc test.Echo Unary msg=tick";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got 0:echo:pooled
--- wait: 0.5
--- error_log eval
qr/root grpc response token=\d+ status=0 msg=echo:tick/

=== TEST 16: a target the allow-list does not name: INTERNAL_FAILURE at dispatch, logged once
--- http_config
wasm_module grpc_testbed $TEST_NGINX_FILTERS/grpc_testbed.wasm;
proxy_wasm_call_allow grpc_testbed 127.0.0.2;
--- config
location /t {
    proxy_wasm grpc_testbed "grpc=127.0.0.1:$TEST_NGINX_GRPC_PORT test.Echo Unary msg=x";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got dispatch-failed:InternalFailure
--- error_log eval
qr/proxy_grpc_call to "127.0.0.1:\d+" refused \(INTERNAL_FAILURE\)/
--- no_error_log
[crit]

=== TEST 17: a root context cancels its call in flight (next tick): no callback, the call's upstream connection is closed
--- config
location /t {
    proxy_wasm grpc_testbed "tick_grpc=127.0.0.1:$TEST_NGINX_GRPC_PORT test.Echo Slow md=x-sleep-ms:2000; tick_cancel";
    return 200 "ok\n";
}
--- request
GET /t
--- response_body
ok
--- wait: 1
--- error_log eval
[qr/root grpc dispatched token=(\d+)/, qr/root grpc cancelled token=\d+ result=Ok/]
--- no_error_log
root grpc response
[error]

=== TEST 18: a large request message (> 64 KiB) goes out whole
--- config
location /t {
    proxy_wasm grpc_testbed "grpc=127.0.0.1:$TEST_NGINX_GRPC_PORT test.Echo Unary msgsize=150000";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body_like eval
qr/^app got 0:echo:0123456789/
--- error_log eval
qr/grpc response token=\d+ status=0 size=150005 msg=echo:0123456789/

=== TEST 19: grpc_set_header at http{} level applies to calls (TE stays the call's own)
--- http_config
wasm_module grpc_testbed $TEST_NGINX_FILTERS/grpc_testbed.wasm;
proxy_wasm_call_allow grpc_testbed 127.0.0.1;
grpc_set_header x-from-conf yes;
--- config
location /t {
    proxy_wasm grpc_testbed "grpc=127.0.0.1:$TEST_NGINX_GRPC_PORT test.Echo Headers";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body_like
^app got 0:.*x-from-conf=yes
--- error_log
grpc header: "te: trailers"
