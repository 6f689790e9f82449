# proxy_http_call through nginx's upstream machinery: host:port, upstream{} blocks, TLS with
# verification, concurrency, timeouts, failures, chaining, local responses, root contexts.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

our $Backend = <<'_EOC_';
location /backend {
    add_header x-call-echo "$request_method $http_x_echo $http_host";
    return 200 "backend saw $request_method $uri?$args len=$content_length\n";
}
location /deny { return 401 "no\n"; }
location /slow { limit_rate 50; alias $TEST_NGINX_HTML_DIR/big.txt; }
location /app { return 200 "app got x-auth=$http_x_auth\n"; }
location /large { alias $TEST_NGINX_HTML_DIR/large.txt; }
location /redirect { add_header X-Accel-Redirect /app; return 200 "not redirected\n"; }
_EOC_

# A CA, a server certificate for "localhost" signed by it, and an unrelated CA, made now.
use TestCerts;
$ENV{TEST_NGINX_CERTS} = TestCerts::make(($ENV{TEST_NGINX_SERVROOT} // 't/servroot') . "-certs");

our $TlsServer = <<'_EOC_';
server {
    listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1 ssl;
    ssl_certificate $TEST_NGINX_CERTS/server.crt;
    ssl_certificate_key $TEST_NGINX_CERTS/server.key;
    location / { return 200 "tls ok $ssl_server_name\n"; }
}
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    if (defined $block->config) {
        $block->set_value("config", $block->config . $Backend);
    }
    if (defined $block->tls) {
        $block->set_value("http_config", "wasm_module testbed \$TEST_NGINX_FILTERS/testbed.wasm;\n"
            . $block->tls . $TlsServer);
    }
    # Calls to 127.0.0.1 (this server, the TLS server, a refused port) need an explicit allow:
    # by default a module may call upstream{} blocks only (t/021-call-security.t).
    my $allow = "proxy_wasm_call_allow testbed 127.0.0.1;\n";
    if (!defined $block->http_config) {
        $block->set_value("http_config", "wasm_module testbed \$TEST_NGINX_FILTERS/testbed.wasm;\n$allow");
    } elsif ($block->http_config =~ /^wasm_module testbed .*\n/m) {
        $block->set_value("http_config", $block->http_config =~ s/^(wasm_module testbed .*\n)/$1$allow/mr);
    }
    if (!defined $block->user_files) {
        $block->set_value("user_files", ">>> big.txt\n" . ("x" x 4000) . "\n"
            . ">>> large.txt\n" . ("0123456789abcdef" x 20000) . "\n");
    }
});

run_tests();

__DATA__

=== TEST 1: a call to host:port carries the method, path, headers and body; the request waits for it
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?a=1 method=POST body=hello h=x-echo:abc; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=200:backend saw POST /backend?a=1 len=5
--- error_log eval
qr/testbed call response token=\d+ status=200 headers=\d+ body=backend saw POST \/backend\?a=1 len=5 hdr=POST abc 127.0.0.1:\d+/

=== TEST 2: the upstream may name an upstream{} block
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
upstream auth_cluster { server 127.0.0.1:$TEST_NGINX_SERVER_PORT; keepalive 4; }
--- config
location /t {
    proxy_wasm testbed "call=auth_cluster /backend authority=auth.local; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=200:backend saw GET /backend? len=
--- error_log eval
qr/call response token=\d+ status=200 .* hdr=GET  auth.local/

=== TEST 3: concurrent calls from one context: the request goes on once all are answered
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?n=1; call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?n=2; call=127.0.0.1:$TEST_NGINX_SERVER_PORT /deny; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body_like
^app got x-auth=(?=.*200:backend saw GET /backend\?n=1)(?=.*200:backend saw GET /backend\?n=2)(?=.*401:no).*$
--- grep_error_log eval
qr/call response token=\d+ status=\d+/
--- grep_error_log_out eval
qr/\A(call response token=\d+ status=(200|401)\n){3}\z/

=== TEST 4: a call that times out reaches the callback with no headers and a clear log line
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /slow timeout=300; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=NONE:
--- error_log eval
[qr/http call to "127.0.0.1:\d+" \(http:\/\/127.0.0.1:\d+\/slow\): timed out after 300 ms/,
 qr/testbed call response token=\d+ status=NONE headers=0 body=(?:[ ,]|$)/m]
--- no_error_log
[alert]
[crit]
exited on signal

=== TEST 5: connection refused: the callback runs with zero headers
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:1 /x; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=NONE:
--- error_log eval
[qr/connect\(\) failed \(111: Connection refused\)/,
 qr/http call to "127.0.0.1:1" \(http:\/\/127.0.0.1:1\/x\): failed: no response/,
 qr/testbed call response token=\d+ status=NONE headers=0/]
--- no_error_log
[alert]
[crit]

=== TEST 6: a local response from on_http_call_response answers the request
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /deny; call_deny=403";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- error_code: 403
--- response_headers
x-denied: 1
--- response_body
denied by call: 401
--- no_error_log
[error]

=== TEST 7: chained calls: a call dispatched from on_http_call_response
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?step=1; call_chain=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?step=2; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=200:backend saw GET /backend?step=1 len=, 200:backend saw GET /backend?step=2 len=
--- grep_error_log eval
qr/body=backend saw GET \/backend\?step=\d/
--- grep_error_log_out
body=backend saw GET /backend?step=1
body=backend saw GET /backend?step=2

=== TEST 8: a root context calls from on_tick, with no request at all
--- config
location /t {
    proxy_wasm testbed "name=ticker; tick=50; tick_max=1; tick_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?from=tick";
    empty_gif;
}
--- request
GET /t
--- wait: 1
--- error_log eval
qr/root ticker call response token=\d+ status=200 headers=\d+ body=backend saw GET \/backend\?from=tick len=/

=== TEST 9: a root context calls from on_configure (each worker sends it once it runs)
--- config
location /t {
    proxy_wasm testbed "name=boot; configure_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?from=configure";
    empty_gif;
}
--- request
GET /t
--- wait: 0.5
--- error_log eval
qr/root boot call response token=\d+ status=200 .*from=configure/

=== TEST 10: a root call that fails (connection refused) still reaches the root's callback
--- config
location /t {
    proxy_wasm testbed "name=ticker; tick=50; tick_max=1; tick_call=127.0.0.1:1 /x";
    empty_gif;
}
--- request
GET /t
--- wait: 1
--- error_log eval
[qr/root ticker call response token=\d+ status=NONE headers=0/,
 qr/http call to "127.0.0.1:1" .*failed/]
--- no_error_log
[alert]
[crit]

=== TEST 11: a name that is neither an upstream{} nor allowed is refused at dispatch, clearly
--- config
location /t {
    proxy_wasm testbed "call=no-such-cluster /x; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=
--- error_log eval
[qr/proxy_http_call to "no-such-cluster" refused \(BAD_ARGUMENT\): module "testbed" may not call it: it is not an upstream \{\} block/,
 qr/call dispatch failed: BadArgument/]
--- no_error_log
[alert]

=== TEST 12: a local response sent with the calls answers at once and cancels them
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /slow timeout=3000; call_then_local=429:busy";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- error_code: 429
--- response_body chomp
busy
--- no_error_log
call response token
timed out
[alert]

=== TEST 13: a plugin may resume after the first answer; later answers still arrive
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?fast; call=127.0.0.1:$TEST_NGINX_SERVER_PORT /slow timeout=500; call_resume";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=
--- wait: 1
--- error_log eval
[qr/call response token=\d+ status=200 .*backend\?fast/,
 qr/timed out after 500 ms/,
 qr/call response token=\d+ status=NONE headers=0/]
--- no_error_log
[alert]
[crit]

=== TEST 14: calls from response phases are sent (t/041-response-calls.t): the response waits for the answer
--- config
location /u {
    proxy_wasm testbed "resp_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?r=2; call_to_resp_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /u
--- response_body
app got x-auth=
--- response_headers
x-auth: 200:backend saw GET /backend?r=2 len=

=== TEST 15: a bad call (no :path, empty upstream) is refused with BAD_ARGUMENT, nothing waits
--- config
location /t {
    proxy_wasm testbed "call= /x; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=
--- error_log
call dispatch failed: BadArgument
proxy_http_call refused (BAD_ARGUMENT): empty or malformed upstream

=== TEST 16: a call from on_request_body (at end of stream) holds the request until answered
--- config
location /t {
    proxy_wasm testbed "body_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?from=body; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
POST /t
some body
--- response_body
app got x-auth=200:backend saw GET /backend?from=body len=

=== TEST 17: the client going away while a call is pending harms nothing
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /slow timeout=400";
    empty_gif;
}
--- request
GET /t
--- timeout: 0.2
--- abort
--- ignore_response
--- wait: 0.6
--- no_error_log
[alert]
[crit]
exited on signal

=== TEST 18: many requests with calls in a row (keepalive upstream) stay correct
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
upstream auth_cluster { server 127.0.0.1:$TEST_NGINX_SERVER_PORT; keepalive 4; }
--- config
location /t {
    proxy_wasm testbed "call=auth_cluster /backend?k=$arg_k; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request eval
[map { "GET /t?k=$_" } 1..5]
--- response_body eval
[map { "app got x-auth=200:backend saw GET /backend?k=\$arg_k len=\n" } 1..5]

=== TEST 19: HTTPS with certificate verification against a CA made for this test
--- tls
wasm_call_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_RAND_PORT_1 /x scheme=https authority=localhost; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=200:tls ok localhost

=== TEST 20: a server certificate from an untrusted CA fails the call
--- tls
wasm_call_ssl_trusted_certificate $TEST_NGINX_CERTS/other.crt;
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_RAND_PORT_1 /x scheme=https authority=localhost; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=NONE:
--- error_log eval
[qr/upstream SSL certificate verify error/,
 qr/http call to "127.0.0.1:\d+" \(https:\/\/127.0.0.1:\d+\/x\): failed/]
--- no_error_log
[alert]
[crit]

=== TEST 21: a certificate for another name fails the call (the name is the call's :authority)
--- tls
wasm_call_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_RAND_PORT_1 /x scheme=https authority=wrong.example; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=NONE:
--- error_log
upstream SSL certificate does not match "wrong.example"
--- no_error_log
[alert]
[crit]

=== TEST 22: wasm_call_ssl_verify off accepts any certificate
--- tls
wasm_call_ssl_verify off;
wasm_call_ssl_trusted_certificate $TEST_NGINX_CERTS/other.crt;
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_RAND_PORT_1 /x scheme=https authority=localhost; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=200:tls ok localhost

=== TEST 23: wasm_call_timeout applies to calls made with timeout 0
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
wasm_call_timeout 200ms;
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /slow timeout=0; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=NONE:
--- error_log
timed out after 200 ms
--- no_error_log
[alert]

=== TEST 24: bad wasm_call_* values fail nginx -t with the file and line
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
wasm_call_timeout soon;
--- config
location /t { empty_gif; }
--- must_die
--- error_log eval
qr/invalid time "soon" in "wasm_call_timeout" in .*nginx\.conf:\d+/

=== TEST 25: a missing trusted-certificate file fails nginx -t
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
wasm_call_ssl_trusted_certificate /nonexistent/ca.pem;
--- config
location /t { empty_gif; }
--- must_die
--- error_log eval
qr/wasm_call_ssl_trusted_certificate: "\/nonexistent\/ca.pem" is not a readable file in .*nginx\.conf:\d+/

=== TEST 26: a large response (320 KB, more than nginx's proxy buffers) arrives whole
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /large";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=
--- error_log eval
qr/call response token=\d+ status=200 headers=\d+ body=0123456789abcdef.* size=320001/

=== TEST 27: X-Accel-Redirect from a call's target is not followed (the plugin gets what it sent)
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /redirect; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=200:not redirected

=== TEST 28: a call chained from the answer to a timed-out call still goes out
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /slow timeout=200; call_chain=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend?after=timeout; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=NONE:, 200:backend saw GET /backend?after=timeout len=
--- error_log
timed out after 200 ms

=== TEST 29: a body held for calls longer than client_body_timeout is not timed out
--- config
client_body_timeout 300ms;
location /t {
    proxy_wasm testbed "body_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /slow timeout=800; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
POST /t
hello
--- response_body
app got x-auth=NONE:
--- error_log
timed out after 800 ms
--- no_error_log
client timed out
[alert]

=== TEST 30: root calls are not subject to limit_req at http{} level
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
limit_req_zone $binary_remote_addr zone=fast:1m rate=1000r/s;
limit_req zone=one burst=5;
--- config
location /t {
    proxy_wasm testbed "name=ticker; tick=50; tick_max=3; tick_call=127.0.0.1:$TEST_NGINX_SERVER_PORT /free";
    empty_gif;
}
location /free { limit_req zone=fast burst=100 nodelay; return 200 "free\n"; }
--- request
GET /t
--- wait: 1
--- error_log
root ticker call response token=1 status=200
root ticker call response token=2 status=200
root ticker call response token=3 status=200
--- no_error_log eval
[qr/root ticker call response token=\d+ status=(?!200)/, "[alert]", "[crit]", "exited on signal"]

=== TEST 31: the native path keeps Envoy's rule: a call without :method or without :path is refused (the Lua path sends GET and /, as api7's module does: t/lua/009)
--- config
location /t {
    proxy_wasm testbed "call=127.0.0.1:$TEST_NGINX_SERVER_PORT /x method=-; call=127.0.0.1:$TEST_NGINX_SERVER_PORT -; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
--- request
GET /t
--- response_body
app got x-auth=
--- grep_error_log eval
qr/proxy_http_call refused \(BAD_ARGUMENT\): missing :method or :path|call dispatch failed: BadArgument/
--- grep_error_log_out
proxy_http_call refused (BAD_ARGUMENT): missing :method or :path
call dispatch failed: BadArgument
proxy_http_call refused (BAD_ARGUMENT): missing :method or :path
call dispatch failed: BadArgument
