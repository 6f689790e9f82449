# Response trailers (nginx has them: add_trailer, chunked HTTP/1.1, HTTP/2); request
# trailers are not kept by nginx: NOT_FOUND.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

run_tests();

__DATA__

=== TEST 1: on_response_trailers sees add_trailer's trailers
--- config
location /t {
    proxy_wasm testbed "trailers_log";
    add_trailer X-Trailer-One one;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/b;
}
location /b { return 200 "body\n"; }
--- request
GET /t
--- response_body
body
--- error_log
response trailers n=1
trailer x-trailer-one: one

=== TEST 2: a filter adds a trailer at the end of the body; the next filter sees it
--- config
location /t {
    proxy_wasm testbed "trailer_add=x-checksum:abc123";
    proxy_wasm testbed "trailers_log";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/b;
}
location /b { return 200 "body\n"; }
--- request
GET /t
--- response_body
body
--- response_headers
Transfer-Encoding: chunked
--- error_log
trailer x-checksum: abc123

=== TEST 3: a filter replaces a trailer in on_response_trailers
--- config
location /t {
    proxy_wasm testbed "trailer_set=x-trailer-one:changed";
    proxy_wasm testbed "trailers_log";
    add_trailer X-Trailer-One one;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/b;
}
location /b { return 200 "body\n"; }
--- request
GET /t
--- error_log
trailer x-trailer-one: changed

=== TEST 4: request trailers are NOT_FOUND (the Rust SDK panics on that status)
--- config
location /t { proxy_wasm testbed "req_trailers_get"; empty_gif; }
--- request
GET /t
--- error_code: 500
--- error_log
unexpected status: 1
