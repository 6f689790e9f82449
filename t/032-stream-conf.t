# The stream module's configuration: every error fails `nginx -t` naming the file and line;
# chains and policies are inherited from the stream block by servers without their own; an
# upstream {} block; what stream plugins cannot do (HTTP calls) answers an honest status.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmStream;

run_tests();

__DATA__

=== TEST 1: proxy_wasm naming an unknown module
--- stream_server_config
    proxy_wasm nosuch;
    return "x";
--- must_die
--- error_log eval
qr/proxy_wasm: unknown module "nosuch": declare it first with "wasm_module nosuch \/path\/to\/filter\.wasm;" in the stream block in .*nginx\.conf:\d+/

=== TEST 2: wasm_module with a file that cannot be read
--- stream_config
    wasm_module m /nonexistent/m.wasm;
--- stream_server_config
    return "x";
--- must_die
--- error_log eval
qr/wasm_module "m": cannot read "\/nonexistent\/m\.wasm": .* in .*nginx\.conf:\d+/

=== TEST 3: a module that is not WebAssembly
--- stream_config
    wasm_module m $TEST_NGINX_FILTERS/not_wasm.wat;
--- stream_server_config
    proxy_wasm m;
    return "x";
--- must_die
--- error_log eval
qr/wasm_module "m": ".*not_wasm\.wat" .* in .*nginx\.conf:\d+/

=== TEST 4: the same module name twice
--- stream_config
    wasm_module stream_testbed $TEST_NGINX_FILTERS/stream_testbed.wasm;
    wasm_module stream_testbed $TEST_NGINX_FILTERS/stream_testbed.wasm;
--- stream_server_config
    return "x";
--- must_die
--- error_log eval
qr/wasm_module "stream_testbed" is already defined in .*nginx\.conf:\d+/

=== TEST 5: wasm_module is a stream-block directive, not a server one
--- stream_config
--- stream_server_config
    wasm_module m $TEST_NGINX_FILTERS/stream_testbed.wasm;
    return "x";
--- must_die
--- error_log eval
qr/"wasm_module" directive is not allowed here in .*nginx\.conf:\d+/

=== TEST 6: a bad failure policy and a bad buffer limit
--- stream_server_config
    proxy_wasm_failure_policy sometimes;
    return "x";
--- must_die
--- error_log eval
qr/invalid "proxy_wasm_failure_policy" "sometimes": use "closed \[status\]" or "open" in .*nginx\.conf:\d+/

=== TEST 7: proxy_wasm_buffer_limit takes a size, once
--- stream_server_config
    proxy_wasm_buffer_limit 1m;
    proxy_wasm_buffer_limit 2m;
    return "x";
--- must_die
--- error_log eval
qr/"proxy_wasm_buffer_limit" directive is duplicate in .*nginx\.conf:\d+/

=== TEST 8: a plugin that rejects its configuration fails nginx -t, naming the proxy_wasm line
--- stream_config
    wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- stream_server_config
    proxy_wasm testbed "configure_fail";
    return "x";
--- must_die
--- error_log eval
qr/proxy_wasm "testbed": proxy_on_configure returned false \(plugin configuration: "configure_fail"\) in .*nginx\.conf:\d+/

=== TEST 9: the stream module's directives are not http ones (each module has its own block)
--- stream_server_config
    return "x";
--- http_config
    wasm_module m $TEST_NGINX_FILTERS/stream_testbed.wasm;
--- main_config eval
($ENV{TEST_NGINX_STREAM_MODULE} ? "load_module $ENV{TEST_NGINX_STREAM_MODULE};\n" : "")
. "load_module $ENV{TEST_NGINX_STREAM_WASM_MODULE};"
--- must_die
--- error_log eval
qr/"wasm_module" directive is not allowed here in .*nginx\.conf:\d+/

=== TEST 10: a chain at stream level applies to servers without their own; a server with its own replaces it
--- stream_config
    wasm_module stream_testbed $TEST_NGINX_FILTERS/stream_testbed.wasm;
    proxy_wasm stream_testbed upper;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        proxy_wasm stream_testbed show-down;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
    }
--- stream_server_config
    proxy_pass 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
--- config
    location = /T { return 200 "upper\n"; }
--- stream_request eval
"get /t http/1.0\r\n\r\n"
--- stream_response_like chomp
\r\n\r\nupper\n$
--- error_log
stream: downstream="GET /T HTTP/1.0\r\n\r\n"

=== TEST 11: proxy_pass to an upstream {} block
--- stream_config
    wasm_module stream_testbed $TEST_NGINX_FILTERS/stream_testbed.wasm;
    upstream backend { server 127.0.0.1:$TEST_NGINX_SERVER_PORT; }
--- stream_server_config
    proxy_wasm stream_testbed trace;
    proxy_pass backend;
--- config
    location = /t { return 200 "via upstream block\n"; }
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_like chomp
\r\n\r\nvia upstream block\n$
--- error_log
stream: upstream_data size=
stream: upstream_close peer=2

=== TEST 12: HTTP calls from a stream plugin: BAD_ARGUMENT (as Envoy answers a call to no cluster), said in the log, the connection goes on
--- stream_server_config
    proxy_wasm stream_testbed http-call;
    return "still here\n";
--- stream_request eval
""
--- stream_response
still here
--- error_log
stream: http call status=BadArgument
proxy_http_call refused (BAD_ARGUMENT): the nginx stream module sends no HTTP calls

=== TEST 13: a failure in on_new_connection under "closed 403" ends the session with $status 403
--- stream_config
    wasm_module stream_hostile $TEST_NGINX_FILTERS/stream_hostile.wat;
--- stream_server_config
    proxy_wasm_failure_policy closed 403;
    proxy_wasm stream_hostile tn;
    return "never\n";
--- stream_request eval
""
--- stream_response:
--- error_log
proxy_on_new_connection failed:
finalize stream session: 403
