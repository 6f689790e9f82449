# proxy_get_property / proxy_set_property: Envoy's attribute paths and encodings.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

run_tests();

__DATA__

=== TEST 1: request attributes as strings
--- config
location /t {
    proxy_wasm testbed "prop=request.path;prop=request.url_path;prop=request.host;prop=request.scheme;prop=request.method;prop=request.query;prop=request.protocol";
    empty_gif;
}
--- request
GET /t?x=1&y=2
--- more_headers
Host: example.test
--- error_log
prop request.path=/t?x=1&y=2
prop request.url_path=/t
prop request.host=example.test
prop request.scheme=http
prop request.method=GET
prop request.query=x=1&y=2
prop request.protocol=HTTP/1.1

=== TEST 2: referer, user agent and request.id from the headers
--- config
location /t { proxy_wasm testbed "prop=request.referer;prop=request.useragent;prop=request.id"; empty_gif; }
--- request
GET /t
--- more_headers
Referer: http://ref.test/
User-Agent: agent/2
X-Request-Id: abc-123
--- error_log
prop request.referer=http://ref.test/
prop request.useragent=agent/2
prop request.id=abc-123

=== TEST 3: request.id falls back to nginx's $request_id
--- config
location /t { proxy_wasm testbed "prop=request.id"; empty_gif; }
--- request
GET /t
--- error_log eval
qr/prop request\.id=[0-9a-f]{32}/

=== TEST 4: integers are 8-byte little-endian (Envoy's encoding), not decimal strings
--- config
location /t { proxy_wasm testbed "prop_int=source.port;prop_int=destination.port;prop_int=connection.id;prop_int=request.size;prop_int=request.total_size"; proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/b; }
location /b { return 200; }
--- request
POST /t
12345
--- error_log eval
[qr/prop_int source\.port=\d+,/,
 qr/prop_int destination\.port=\d+,/,
 qr/prop_int connection\.id=\d+,/,
 qr/prop_int request\.size=5,/,
 qr/prop_int request\.total_size=\d+,/]

=== TEST 5: addresses include the port, as in Envoy
--- config
location /t { proxy_wasm testbed "prop=source.address;prop=destination.address"; empty_gif; }
--- request
GET /t
--- error_log eval
[qr/prop source\.address=127\.0\.0\.1:\d+/,
 qr/prop destination\.address=127\.0\.0\.1:\d+/]

=== TEST 6: request.time is a timestamp in nanoseconds, request.duration a duration
--- config
location /t { proxy_wasm testbed "prop_int=request.time;prop_int=request.duration"; empty_gif; }
--- request
GET /t
--- error_log eval
[qr/prop_int request\.time=1[7-9]\d{17},/, qr/prop_int request\.duration=\d+,/]

=== TEST 7: request.headers is a serialized map; request.headers.<name> one value
--- config
location /t { proxy_wasm testbed "prop_map=request.headers;prop=request.headers.x-custom"; empty_gif; }
--- request
GET /t
--- more_headers
X-Custom: yes
--- error_log eval
[qr/prop_map request\.headers=pairs=\d+ host=localhost/, qr/prop request\.headers\.x-custom=yes/]

=== TEST 8: response attributes in on_response_headers
--- config
location /t {
    proxy_wasm testbed "rprop_int=response.code;rprop=response.headers.x-up;rprop=upstream.address;rprop_int=upstream.port;rprop=response.code_details";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/b;
}
location /b { add_header X-Up up-value; return 201 "created\n"; }
--- request
GET /t
--- error_code: 201
--- error_log eval
[qr/rprop_int response\.code=201 /,
 qr/rprop response\.headers\.x-up=up-value/,
 qr/rprop upstream\.address=127\.0\.0\.1:\d+/,
 qr/rprop_int upstream\.port=\d+ /,
 qr/rprop response\.code_details=via_upstream/]

=== TEST 9: response sizes in on_log
--- config
location /t { proxy_wasm testbed "lprop_int=response.size;lprop_int=response.total_size;lprop_int=response.code"; proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/b; }
location /b { return 200 "0123456789"; }
--- request
GET /t
--- error_log eval
[qr/lprop_int response\.size=10 /, qr/lprop_int response\.total_size=\d{3} /, qr/lprop_int response\.code=200 /]

=== TEST 10: response attributes do not exist before the response
--- config
location /t { proxy_wasm testbed "prop_int=response.code;prop=upstream.address"; empty_gif; }
--- request
GET /t
--- error_log
prop_int response.code=NONE
prop upstream.address=NONE

=== TEST 11: plugin_name, plugin_vm_id and plugin_root_id
--- http_config
wasm_module my_plugin $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t { proxy_wasm my_plugin "prop=plugin_name;prop=plugin_vm_id;prop=plugin_root_id"; empty_gif; }
--- request
GET /t
--- error_log
prop plugin_name=my_plugin
prop plugin_vm_id=my_plugin
prop plugin_root_id=

=== TEST 12: connection.mtls is a one-byte boolean, false without TLS; TLS attributes absent
--- config
location /t { proxy_wasm testbed "prop_bool=connection.mtls;prop=connection.tls_version;prop=connection.requested_server_name"; empty_gif; }
--- request
GET /t
--- error_log
prop_bool connection.mtls=0
prop connection.tls_version=NONE
prop connection.requested_server_name=NONE

=== TEST 13: nginx variables under ngx.<name>
--- config
location /t {
    set $my_var "from nginx";
    proxy_wasm testbed "prop=ngx.my_var;prop=ngx.uri;prop=ngx.arg_q;prop=ngx.http_x_h;prop=ngx.no_such_variable";
    empty_gif;
}
--- request
GET /t?q=query-arg
--- more_headers
X-H: header-var
--- error_log
prop ngx.my_var=from nginx
prop ngx.uri=/t
prop ngx.arg_q=query-arg
prop ngx.http_x_h=header-var
prop ngx.no_such_variable=NONE
--- no_error_log
unknown "no_such_variable" variable

=== TEST 14: writing a changeable nginx variable reaches nginx
--- config
location /t {
    set $target "original";
    proxy_wasm testbed "prop_set=ngx.target:from-wasm";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/b?t=$target;
}
location /b { return 200 "t=$arg_t\n"; }
--- request
GET /t
--- response_body
t=from-wasm
--- error_log
prop_set ngx.target=Ok(())

=== TEST 15: writing $args changes the query string
--- config
location /t {
    proxy_wasm testbed "prop_set=ngx.args:a=b";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/b;
}
location /b { return 200 "args=$args\n"; }
--- request
GET /t?old=1
--- response_body
args=a=b

=== TEST 16: a read-only nginx variable refuses writes (BAD_ARGUMENT: the Rust SDK panics on it)
--- config
location /t { proxy_wasm testbed "prop_set=ngx.remote_addr:1.2.3.4"; empty_gif; }
--- request
GET /t
--- error_code: 500
--- error_log
unexpected status: 2

=== TEST 17: a well-known attribute refuses writes
--- config
location /t { proxy_wasm testbed "prop_set=request.path:/x"; empty_gif; }
--- request
GET /t
--- error_code: 500
--- error_log
unexpected status: 2

=== TEST 18: the plugin's identity refuses writes
--- config
location /t { proxy_wasm testbed "prop_set=plugin_name:x"; empty_gif; }
--- request
GET /t
--- error_code: 500
--- error_log
unexpected status: 2

=== TEST 19: a property set by one filter is visible to the next filter of the request
--- config
location /t {
    proxy_wasm testbed "prop_set=my.shared.key:value-1";
    proxy_wasm testbed "prop=my.shared.key;rprop=my.shared.key";
    empty_gif;
}
--- request
GET /t
--- error_log
prop_set my.shared.key=Ok(())
prop my.shared.key=value-1
rprop my.shared.key=value-1

=== TEST 20: request properties do not leak into the next request
--- config
location /set { proxy_wasm testbed "prop_set=leak.key:secret"; empty_gif; }
location /get { proxy_wasm testbed "prop=leak.key"; empty_gif; }
--- request eval
["GET /set", "GET /get"]
--- error_code eval
[200, 200]
--- error_log
prop leak.key=NONE

=== TEST 21: node.id is the host name
--- config
location /t { proxy_wasm testbed "prop=node.id"; empty_gif; }
--- request
GET /t
--- error_log eval
qr/prop node\.id=\S+/

=== TEST 22: an unknown attribute is NOT_FOUND
--- config
location /t { proxy_wasm testbed "prop=no.such.thing;prop=request.nope"; empty_gif; }
--- request
GET /t
--- error_log
prop no.such.thing=NONE
prop request.nope=NONE
