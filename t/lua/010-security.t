# The Lua path (resty.proxy-wasm) keeps the native path's request-rewriting checks (issue 12):
# nginx variables a plugin writes cannot split a header or the upstream request line.
use lib 't/lib';
use Test::Nginx::Socket;
use ProxyWasmLua;
ProxyWasmLua::load_by_default("testbed", "testbed.wasm");

run_tests();

__DATA__

=== TEST 1: args (api7's one-segment names and ngx.args) refuse CR/LF and spaces: no request splitting
--- http_config
init_worker_by_lua_block { require("apisix_like").load("testbed", "$TEST_NGINX_FILTERS/testbed.wasm") }
server {
    listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    location / { return 200 "args=$args injected=$http_x_injected\n"; }
}
--- config
location /t {
    access_by_lua_block {
        require("apisix_like").access("testbed",
            "prop_set_raw=args:a%20b;prop_set_raw=ngx.args:a=b%0d%0aX-Injected:%201;prop_set_raw=args:a=b%20HTTP/1.1%0d%0aX-Injected:%201%0d%0aX:%20y")
    }
    proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
}
--- request
GET /t?old=1
--- response_body
args=old=1 injected=
--- grep_error_log eval
qr/prop_set_raw [a-z.]+=\w+/
--- grep_error_log_out
prop_set_raw args=BadArgument
prop_set_raw ngx.args=BadArgument
prop_set_raw args=BadArgument
--- no_error_log
[error]

=== TEST 2: a `set` variable written from Lua refuses CR/LF: no header injection via proxy_set_header
--- http_config
init_worker_by_lua_block { require("apisix_like").load("testbed", "$TEST_NGINX_FILTERS/testbed.wasm") }
server {
    listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    location / { return 200 "v=$http_x_v injected=$http_x_injected\n"; }
}
--- config
location /t {
    set $v "original";
    access_by_lua_block {
        require("apisix_like").access("testbed", "prop_set_raw=ngx.v:x%0aX-Injected:%201;prop_set_raw=v:x%0d%0aX-Injected:%201")
    }
    proxy_set_header X-V $v;
    proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
}
--- request
GET /t
--- response_body
v=original injected=
--- grep_error_log eval
qr/prop_set_raw [a-z.]+=\w+/
--- grep_error_log_out
prop_set_raw ngx.v=BadArgument
prop_set_raw v=BadArgument
--- no_error_log
[error]
