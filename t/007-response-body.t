# on_response_body: streaming rewrites, buffering with Pause, held headers, local responses
# from the body, limits.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

run_tests();

__DATA__

=== TEST 1: a proxied body rewritten chunk by chunk; Content-Length is dropped
--- config
location /t {
    proxy_wasm testbed "resp_body_upper";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "hello body\n"; }
--- request
GET /t
--- response_body
HELLO BODY
--- response_headers
!Content-Length
Transfer-Encoding: chunked

=== TEST 2: a 200 KB body rewritten across many chunks
--- user_files eval
">>> big.txt\n" . ("abcdefghij" x 20000)
--- config
location /t {
    proxy_wasm testbed "resp_body_upper;resp_body_log";
    proxy_buffer_size 4k;
    proxy_buffers 4 4k;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/big.txt;
}
--- request
GET /t
--- response_body eval
"ABCDEFGHIJ" x 20000
--- error_log eval
[qr/resp body size=\d+ eos=false/, qr/resp body size=\d+ eos=true/]

=== TEST 3: a static file (sendfile on) reaches the filter in memory
--- user_files
>>> file.txt
static content
--- config
sendfile on;
location /file.txt { proxy_wasm testbed "resp_body_upper"; }
--- request
GET /file.txt
--- response_body
STATIC CONTENT

=== TEST 4: Pause buffers the whole body, then a replacement across chunk boundaries
--- user_files eval
">>> big.txt\n" . ("hello world " x 5000)
--- config
location /t {
    proxy_wasm testbed "resp_body_replace=world:wasm";
    proxy_buffer_size 4k;
    proxy_buffers 4 4k;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/big.txt;
}
--- request
GET /t
--- response_body eval
"hello wasm " x 5000

=== TEST 5: append and prepend
--- config
location /t {
    proxy_wasm testbed "resp_body_prepend=<<;resp_body_append=>>";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "middle"; }
--- request
GET /t
--- response_body chomp
<<middle>>

=== TEST 6: Pause in on_response_headers holds the headers until the body is read
The filter sets a header from on_response_body at end of stream; the body length is known,
so Content-Length is exact.
--- user_files eval
">>> big.txt\n" . ("x" x 30000)
--- config
location /t {
    proxy_wasm testbed "resp_headers_pause";
    proxy_buffer_size 4k;
    proxy_buffers 4 4k;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/big.txt;
}
--- request
GET /t
--- response_headers
x-body-length: 30000
Content-Length: 30000
--- response_body eval
"x" x 30000

=== TEST 7: held headers plus a body rewrite: Content-Length is the new length
--- config
location /t {
    proxy_wasm testbed "resp_headers_pause;resp_body_replace=short:much longer";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "a short body"; }
--- request
GET /t
--- response_headers
Content-Length: 18
--- response_body chomp
a much longer body

=== TEST 8: a local response from on_response_body while headers are held
--- config
location /t {
    proxy_wasm testbed "resp_headers_pause;resp_body_local=418:from the body callback";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "upstream body"; }
--- request
GET /t
--- error_code: 418
--- response_body chomp
from the body callback
--- response_headers
x-local: body

=== TEST 9: a trap in on_response_body while headers are held gives a 500
--- config
location /t {
    proxy_wasm testbed "resp_headers_pause;resp_body_trap";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "upstream body"; }
--- request
GET /t
--- error_code: 500
--- response_body_unlike
upstream body
--- error_log
proxy_on_response_body failed

=== TEST 10: buffering past proxy_wasm_body_buffer_limit fails with 502 and a clear log line
--- user_files eval
">>> big.txt\n" . ("y" x 50000)
--- config
location /t {
    proxy_wasm testbed "resp_headers_pause";
    proxy_wasm_body_buffer_limit 10k;
    proxy_buffer_size 4k;
    proxy_buffers 4 4k;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/big.txt;
}
--- request
GET /t
--- error_code: 502
--- error_log
a filter buffered more than proxy_wasm_body_buffer_limit (10240 bytes) of response body

=== TEST 11: two filters rewrite the body in order
--- config
location /t {
    proxy_wasm testbed "resp_body_append=-first";
    proxy_wasm testbed "resp_body_append=-second";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "body"; }
--- request
GET /t
--- response_body chomp
body-first-second

=== TEST 12: HEAD gets no body and the chain does not hang on held headers
--- config
location /t {
    proxy_wasm testbed "resp_headers_pause";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
}
location /backend { return 200 "body"; }
--- request
HEAD /t
--- error_code: 200
--- response_body chomp

=== TEST 13: a filter that reads a static file's chunks but changes nothing passes them on as they came (sendfile on), and the next filter still sees them
--- user_files eval
">>> big.txt\n" . ("0123456789abcdef" x 20000)
--- config
sendfile on;
location /big.txt {
    proxy_wasm testbed "resp_body_at=0:16";
    proxy_wasm testbed "resp_body_at=16:4";
}
--- request
GET /big.txt
--- response_body eval
"0123456789abcdef" x 20000
--- error_log
resp_body_at 0:16 size=262144 -> Ok [0123456789abcdef]
resp_body_at 16:4 size=262144 -> Ok [0123]
resp_body_at 0:16 size=57856 -> Ok [0123456789abcdef]

=== TEST 14: a filter that does not read the body, then one that rewrites it: the rewrite sees the file's bytes (sendfile on)
--- user_files eval
">>> big.txt\n" . ("abcd" x 50000)
--- config
sendfile on;
location /big.txt {
    proxy_wasm testbed "resp_body_log";
    proxy_wasm testbed "resp_body_upper";
    proxy_wasm testbed "resp_body_at=0:8";
}
--- request
GET /big.txt
--- response_body eval
"ABCD" x 50000
--- error_log
resp_body_at 0:8 size=200000 -> Ok [ABCDABCD]

=== TEST 15: a static file held whole (Pause) by the second filter after a reader: nothing of the file is lost
--- user_files eval
">>> big.txt\n" . ("xy" x 100000)
--- config
sendfile on;
location /big.txt {
    proxy_wasm testbed "resp_body_at=0:2";
    proxy_wasm testbed "resp_body_replace=y:Z";
}
--- request
GET /big.txt
--- response_body eval
"xZ" x 100000

=== TEST 16: a big static file reaches the filters in pieces of 256 KiB (what a filter reads or holds per call stays bounded), rewritten whole
--- user_files eval
">>> big.txt\n" . ("abcdefghij" x 60000)
--- config
sendfile on;
location /big.txt { proxy_wasm testbed "resp_body_log;resp_body_upper"; }
--- request
GET /big.txt
--- response_body eval
"ABCDEFGHIJ" x 60000
--- error_log
resp body size=262144 eos=false
resp body size=75712 eos=true

=== TEST 17: a big static file held whole (Pause) arrives whole at the end
--- user_files eval
">>> big.txt\n" . ("ab" x 300000)
--- config
sendfile on;
location /big.txt { proxy_wasm testbed "resp_body_replace=b:C"; }
--- request
GET /big.txt
--- response_body eval
"aC" x 300000

=== TEST 18: under directio a file reaches the filters read into memory (nginx's copy filter reads O_DIRECT files itself, aligned), whatever its size
--- user_files eval
">>> big.txt\n" . ("abcdefgh" x 40000) . "z"
--- config
sendfile on;
location /big.txt {
    directio 4k;
    proxy_wasm testbed "resp_body_upper";
}
--- request
GET /big.txt
--- response_body eval
("ABCDEFGH" x 40000) . "Z"
--- no_error_log
cannot read the body chunk

=== TEST 19: a filter reads ranges of a chunk that nginx holds in several memory buffers (a proxied response through small proxy buffers); a range across two buffers comes out whole and in order, and the chunk passes on unchanged
--- user_files eval
">>> abc.txt\n" . ("abcdefghijklmnopqrstuvwxyz" x 100)
--- config
location /t {
    proxy_buffer_size 1k;
    proxy_buffers 8 1k;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/abc.txt;
    proxy_wasm testbed "resp_body_at=1020:8;resp_body_at=2040:8";
    proxy_wasm testbed "resp_body_at=0:3";
}
--- request
GET /t
--- response_body eval
"abcdefghijklmnopqrstuvwxyz" x 100
--- error_log eval
[qr/resp_body_at 1020:8 size=\d+ -> Ok \[ghijklmn\]/,
 qr/resp_body_at 2040:8 size=\d+ -> Ok \[mnopqrst\]/,
 qr/resp_body_at 0:3 size=\d+ -> Ok \[abc\]/]
--- no_error_log
cannot read the body chunk
