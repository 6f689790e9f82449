# Request header maps from on_request_headers: reads, pseudo-headers, edits that nginx and
# the upstream really see.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

run_tests();

__DATA__

=== TEST 1: get a request header, and NOT_FOUND for a missing one
--- config
location /t {
    proxy_wasm testbed "req_get=x-foo;req_get=x-missing";
    empty_gif;
}
--- request
GET /t
--- more_headers
X-Foo: bar
--- error_code: 200
--- error_log
req_get x-foo=bar
req_get x-missing=NONE

=== TEST 2: header names are matched case-insensitively
--- config
location /t { proxy_wasm testbed "req_get=X-MiXeD"; empty_gif; }
--- request
GET /t
--- more_headers
x-mixed: Value
--- error_log
req_get X-MiXeD=Value

=== TEST 3: pseudo-headers :method :path :authority :scheme
--- config
location /t {
    proxy_wasm testbed "req_get=:method;req_get=:path;req_get=:authority;req_get=:scheme";
    empty_gif;
}
--- request
GET /t?a=1&b=2
--- more_headers
Host: example.test:8080
--- error_log
req_get :method=GET
req_get :path=/t?a=1&b=2
req_get :authority=example.test:8080
req_get :scheme=http

=== TEST 4: all pairs, pseudo-headers first, names lower-cased
--- config
location /t { proxy_wasm testbed "echo_headers"; empty_gif; }
--- request
GET /t
--- more_headers
X-One: 1
X-Two: two
--- response_body_like chomp
\A:authority: localhost\n:method: GET\n:path: /t\n:scheme: http\nhost: localhost\n(.*\n)*x-one: 1\nx-two: two\n\z

=== TEST 5: added, replaced and removed headers reach the upstream
--- config
location /t {
    proxy_wasm testbed "req_add=x-added:a1;req_set=x-replace:new;req_remove=x-gone";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend {
    return 200 "added=$http_x_added replace=$http_x_replace gone=[$http_x_gone]\n";
}
--- request
GET /t
--- more_headers
X-Replace: old
X-Gone: bye
--- response_body
added=a1 replace=new gone=[]

=== TEST 6: a removed header is not forwarded by proxy_pass
--- config
location /t {
    proxy_wasm testbed "req_remove=x-secret";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { proxy_wasm testbed "echo_headers"; empty_gif; }
--- request
GET /t
--- more_headers
X-Secret: s3cr3t
X-Kept: k
--- response_body_unlike
x-secret
--- response_body_like
x-kept: k

=== TEST 7: replacing User-Agent updates nginx's own shortcut ($http_user_agent)
--- config
location /t {
    proxy_wasm testbed "req_set=user-agent:wasm-agent/1.0";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "ua=$http_user_agent\n"; }
--- request
GET /t
--- more_headers
User-Agent: curl/8
--- response_body
ua=wasm-agent/1.0

=== TEST 8: setting :authority changes Host and $host
--- config
location /t {
    proxy_wasm testbed "req_set=:authority:rewritten.test";
    proxy_set_header Host $host;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "host=$http_host\n"; }
--- request
GET /t
--- response_body
host=rewritten.test

=== TEST 9: setting :path rewrites the URI sent upstream, query string included
--- config
location /t {
    proxy_wasm testbed "req_set=:path:/backend?via=wasm";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT;
}
location /backend { return 200 "uri=$uri args=$args\n"; }
--- request
GET /t?x=1
--- response_body
uri=/backend args=via=wasm

=== TEST 10: setting :method changes the upstream method
--- config
location /t {
    proxy_wasm testbed "req_set=:method:PUT";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "method=$request_method\n"; }
--- request
GET /t
--- response_body
method=PUT

=== TEST 11: set_http_request_headers replaces the whole map
--- config
location /t {
    proxy_wasm testbed "req_set_pairs=x-only:1,host:localhost";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "only=$http_x_only other=[$http_x_other]\n"; }
--- request
GET /t
--- more_headers
X-Other: gone
--- response_body
only=1 other=[]

=== TEST 12: a header value with CR is refused (no header injection)
The Rust SDK panics on the BAD_ARGUMENT (2) status, so the filter traps and the request fails
closed with 500; the injected header never exists.
--- config
location /t {
    proxy_wasm testbed "req_add=x-evil:a\rx-injected: 1";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "injected=[$http_x_injected]\n"; }
--- request
GET /t
--- error_code: 500
--- error_log
unexpected status: 2
proxy_on_request_headers failed
