# HTTP calls from the response phases: on_response_headers (headers held until the answer)
# and on_response_body (the body held at the filter), answered, failed, timed out, denied
# with a local response, several at once, on proxied and static responses.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

our $Backend = <<'_EOC_';
location /backend {
    add_header x-call-echo "$request_method $http_x_echo";
    return 200 "backend saw $uri?$args\n";
}
location /deny { return 401 "no\n"; }
location /slow { limit_rate 50; alias $TEST_NGINX_HTML_DIR/big.txt; }
location /app { return 200 "app body\n"; }
location /big { alias $TEST_NGINX_HTML_DIR/big.txt; }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    if (defined $block->config) {
        $block->set_value("config", $block->config . $Backend);
    }
    if (!defined $block->http_config) {
        $block->set_value("http_config", "wasm_module testbed \$TEST_NGINX_FILTERS/testbed.wasm;\n"
            . "proxy_wasm_call_allow testbed 127.0.0.1;\n");
    }
    if (!defined $block->user_files) {
        $block->set_value("user_files", ">>> big.txt\n" . ("x" x 300000) . "\n");
    }
});

run_tests();

__DATA__

=== TEST 1: on a static response: the headers wait for the call; its answer adds a response header
--- config
location /t {
    proxy_wasm testbed "resp_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?r=1; call_to_resp_header=x-auth";
    return 200 "fine\n";
}
--- request
GET /t
--- response_body
fine
--- response_headers
x-auth: 200:backend saw /backend?r=1
--- error_log eval
qr/call response token=\d+ status=200 headers=\d+ body=backend saw \/backend\?r=1/

=== TEST 2: on a proxied response larger than a buffer: held whole meanwhile, sent intact after the answer
--- config
location /t {
    proxy_wasm testbed "resp_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?r=2; call_to_resp_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/big;
}
--- request
GET /t
--- response_body eval
("x" x 300000) . "\n"
--- response_headers
x-auth: 200:backend saw /backend?r=2

=== TEST 3: the answer denies: a local response replaces the held response
--- config
location /t {
    proxy_wasm testbed "resp_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /deny; call_deny=403";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- error_code: 403
--- response_body
denied by call: 401
--- response_headers
x-denied: 1

=== TEST 4: several calls: the response goes on once the last is answered (one failed)
--- config
location /t {
    proxy_wasm testbed "resp_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?n=1; resp_call=127.0.0.1:1 /x; resp_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?n=3; call_to_resp_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app body
--- grep_error_log eval
qr/call response token=\d+ status=(200|NONE)/
--- grep_error_log_out eval
qr/\A(call response token=\d+ status=(200|NONE)\n){3}\z/
--- no_error_log
[crit]
[alert]

=== TEST 5: the answer resumes the response itself (resume_http_response) before the other call is back
--- config
location /t {
    proxy_wasm testbed "resp_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?fast; resp_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /slow timeout=3000; call_resume_response; call_to_resp_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app body
--- response_headers
x-auth: 200:backend saw /backend?fast

=== TEST 6: a call from on_response_body at the end of the body: the body waits at the filter, then goes on whole
--- config
location /t {
    proxy_wasm testbed "body_resp_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?b=1";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/big;
}
--- request
GET /t
--- response_body eval
("x" x 300000) . "\n"
--- error_log eval
qr/call response token=\d+ status=200 headers=\d+ body=backend saw \/backend\?b=1/

=== TEST 7: a call that times out: the response goes on after the failure
--- config
location /t {
    proxy_wasm testbed "resp_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /slow timeout=300; call_to_resp_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app body
--- response_headers
x-auth: NONE:
--- error_log
timed out after 300 ms
--- no_error_log
[crit]
[alert]

=== TEST 8: a second filter after the waiting one sees the headers and body once the first goes on
--- config
location /t {
    proxy_wasm testbed "name=first; resp_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?c=1; call_to_resp_header=x-auth";
    proxy_wasm testbed "name=second; resp_body_upper";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
APP BODY
--- response_headers
x-auth: 200:backend saw /backend?c=1

=== TEST 9: a response without a body (HEAD) cannot wait: a warning, the call still answered
--- config
location /t {
    proxy_wasm testbed "resp_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?h=1";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
HEAD /t
--- response_body
--- error_log
on_response_headers returned Pause on a response without a body: continuing
--- no_error_log
[error]
