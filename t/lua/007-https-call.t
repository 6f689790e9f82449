# HTTPS calls from Lua-driven plugins: the certificate is verified (lua_ssl_trusted_certificate)
# against the call's :authority, unless resty.proxy-wasm's ssl_verify is false.
use lib 't/lib';
use Test::Nginx::Socket;
use ProxyWasmLua;

use TestCerts;
$ENV{TEST_NGINX_LUA_CERTS} = TestCerts::make(($ENV{TEST_NGINX_SERVROOT} // 't/servroot') . "-lua-certs");

add_block_preprocessor(sub {
    my $block = shift;
    my $ca = $block->ca // "ca.crt";
    my $init = $block->init_lua // "";
    my $authority = $block->authority // "localhost";
    $block->set_value("config", <<"EOF3");
location /t {
    access_by_lua_block { require("apisix_like").access("callout", "call=127.0.0.1:\$TEST_NGINX_RAND_PORT_1;scheme=https;authority=$authority") }
    content_by_lua_block { ngx.say("x-call=", ngx.var.http_x_call) }
}
EOF3
    $block->set_value("request", "GET /t");
    $block->set_value("http_config", <<"EOF2");
lua_ssl_trusted_certificate \$TEST_NGINX_LUA_CERTS/$ca;
lua_ssl_verify_depth 2;
proxy_wasm_call_allow callout 127.0.0.1:\$TEST_NGINX_RAND_PORT_1;
init_worker_by_lua_block { $init require("apisix_like").load("callout", "\$TEST_NGINX_FILTERS/lua_callout.wasm") }
server {
    listen 127.0.0.1:\$TEST_NGINX_RAND_PORT_1 ssl;
    ssl_certificate \$TEST_NGINX_LUA_CERTS/server.crt;
    ssl_certificate_key \$TEST_NGINX_LUA_CERTS/server.key;
    location / { return 200 "tls ok \$ssl_server_name\\n"; }
}
EOF2
});

run_tests();

__DATA__

=== TEST 1: verified against the CA, SNI from :authority
--- response_body
x-call=200/tls ok localhost

=== TEST 2: a certificate from an untrusted CA fails the call; the plugin gets no status
--- ca: other.crt
--- response_body
x-call=NONE/
--- error_log
http call failed: TLS handshake with 127.0.0.1:
--- no_error_log
exited on signal

=== TEST 3: a certificate for another name fails the call
--- authority: wrong.example
--- response_body
x-call=NONE/
--- error_log
(wrong.example): certificate host mismatch
--- no_error_log
exited on signal

=== TEST 4: ssl_verify = false accepts any certificate
--- ca: other.crt
--- init_lua: require("resty.proxy-wasm").ssl_verify = false;
--- response_body
x-call=200/tls ok localhost
