# proxy_continue_stream, proxy_close_stream, proxy_done with on_done returning false.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

run_tests();

__DATA__

=== TEST 1: proxy_close_stream on the request closes the connection without a response
--- config
location /t { proxy_wasm testbed "close_request"; empty_gif; }
--- request
GET /t
--- ignore_response
--- error_log
closed the stream (proxy_close_stream)
--- no_error_log
[error]

=== TEST 2: proxy_close_stream on the response closes the connection, nothing of the upstream leaks
--- config
location /t {
    proxy_wasm testbed "rclose_response";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/b;
}
location /b { return 200 "upstream secret"; }
--- request
GET /t
--- ignore_response
--- error_log
closed the stream (proxy_close_stream)

=== TEST 3: proxy_continue_stream during a callback turns its Pause into Continue
--- config
location /t { proxy_wasm testbed "resume_then_pause;resp_add=x-after:1"; empty_gif; }
--- request
GET /t
--- error_code: 200
--- response_headers
x-after: 1
--- no_error_log
returned Pause with no local response

=== TEST 4: the worker serves the next request after a closed stream
--- config
location /close { proxy_wasm testbed "close_request"; empty_gif; }
location /ok { proxy_wasm testbed "resp_add=x-ok:1"; empty_gif; }
--- request eval
["GET /close", "GET /ok"]
--- error_code eval
["", 200]
--- ignore_response
--- no_error_log
exited on signal

=== TEST 5: on_done returning false: on_log still runs (when the context is deleted)
--- config
location /t { proxy_wasm testbed "log_done;done_false;name=waiter"; empty_gif; }
--- request
GET /t
--- grep_error_log eval
qr/waiter on_(done|log|delete)/
--- grep_error_log_out
waiter on_done
waiter on_log
waiter on_delete

=== TEST 6: proxy_done from on_done: on_log runs at once
--- config
location /t { proxy_wasm testbed "log_done;done_call;name=caller"; empty_gif; }
--- request
GET /t
--- grep_error_log eval
qr/caller (on_done|proxy_done=\S+|on_log|on_delete)/
--- grep_error_log_out
caller on_done
caller proxy_done=Ok(())
caller on_log
caller on_delete
