# Response header maps from on_response_headers.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

run_tests();

__DATA__

=== TEST 1: add, replace and remove response headers
--- config
location /t {
    proxy_wasm testbed "resp_add=x-added:1;resp_set=x-set:two;resp_remove=x-drop";
    add_header X-Drop dropme;
    add_header X-Set one;
    empty_gif;
}
--- request
GET /t
--- error_code: 200
--- response_headers
x-added: 1
x-set: two
!X-Drop

=== TEST 2: :status, content-type and content-length are visible
--- config
location /t { proxy_wasm testbed "resp_get=:status;resp_get=content-type;resp_get=content-length;resp_get=x-none"; empty_gif; }
--- request
GET /t
--- error_log
resp_get :status=200
resp_get content-type=image/gif
resp_get content-length=43
resp_get x-none=NONE

=== TEST 3: setting :status changes the response status
--- config
location /t { proxy_wasm testbed "resp_set=:status:202"; empty_gif; }
--- request
GET /t
--- error_code: 202

=== TEST 4: setting content-type
--- config
location /t { proxy_wasm testbed "resp_set=content-type:application/x-test"; empty_gif; }
--- request
GET /t
--- response_headers
Content-Type: application/x-test

=== TEST 5: removing content-length makes the response chunked
--- config
location /t { proxy_wasm testbed "resp_remove=content-length"; empty_gif; }
--- request
GET /t
--- response_headers
!Content-Length
Transfer-Encoding: chunked

=== TEST 6: headers from the upstream are visible and editable
--- config
location /t {
    proxy_wasm testbed "resp_get=x-from-upstream;resp_remove=x-from-upstream;resp_add=x-seen:yes";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { add_header X-From-Upstream up; return 200 "ok\n"; }
--- request
GET /t
--- response_headers
!X-From-Upstream
x-seen: yes
--- response_body
ok
--- error_log
resp_get x-from-upstream=up

=== TEST 7: Server and Date set by a filter replace nginx's own
--- config
location /t { proxy_wasm testbed "resp_set=server:wasm-server"; empty_gif; }
--- request
GET /t
--- response_headers
Server: wasm-server

=== TEST 8: all response pairs start with :status
--- config
location /t { proxy_wasm testbed "resp_log_pairs"; add_header X-Extra e; empty_gif; }
--- request
GET /t
--- error_log
resp header :status: 200
resp header content-type: image/gif
resp header x-extra: e

=== TEST 9: :status is in the response map, not in the request map
--- config
location /t { proxy_wasm testbed "resp_get=:status"; proxy_wasm testbed "req_get=:status"; empty_gif; }
--- request
GET /t
--- error_log
resp_get :status=200
req_get :status=NONE
