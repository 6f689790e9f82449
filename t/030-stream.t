# The stream {} (L4) side: ngx_stream_proxy_wasm_module runs StreamContext filters
# (t/filters/stream_testbed, behaviours chosen by its configuration words). Upstreams are this
# block's http server (location /t) or a second stream server in stream_config.
# TEST_NGINX_STREAM_WASM_MODULE (and TEST_NGINX_STREAM_MODULE for a dynamic stream) must be set
# unless they are built in; see t/lib/ProxyWasmStream.pm.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmStream;
use TestCerts;

$ENV{TEST_NGINX_CERTS} = TestCerts::make(($ENV{TEST_NGINX_SERVROOT} // 't/servroot') . "-certs");

run_tests();

__DATA__

=== TEST 1: every callback of a proxied connection, in order; the upstream closes first
--- config
    location = /t { return 200 "hi\n"; }
--- stream_server_config
    proxy_wasm stream_testbed trace;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_like chomp
^HTTP/1\.1 200 OK\r\n.*\r\n\r\nhi\n$
--- grep_error_log eval
qr/stream: (?:new_connection|downstream_close peer=\d|upstream_close peer=\d|log)\b/
--- grep_error_log_out
stream: new_connection
stream: downstream_close peer=1
stream: upstream_close peer=2
stream: log
--- error_log eval
[qr/stream: downstream_data size=19 eos=false/,
 qr/stream: upstream_data size=\d+ eos=false/,
 qr/stream: upstream_data size=\d+ eos=true/]
--- no_error_log
[error]
[crit]
[alert]
[emerg]



=== TEST 2: the client half-closes: end_of_stream downstream, downstream close peer=2
--- config
    location = /t { return 200 "half\n"; }
--- stream_server_config
    proxy_half_close on;
    proxy_wasm stream_testbed trace;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /t HTTP/1.1\r\nHost: x\r\n\r\n"
--- stream_half_close
--- stream_response_like chomp
\r\n\r\nhalf\n$
--- error_log eval
[qr/stream: downstream_data size=\d+ eos=true/,
 qr/stream: downstream_close peer=2/,
 qr/stream: upstream_close peer=\d/]
--- no_error_log
[error]
[crit]
[alert]



=== TEST 3: data in pieces reaches on_downstream_data chunk by chunk
--- config
    location = /t { return 200 "hi\n"; }
--- stream_server_config
    proxy_wasm stream_testbed trace;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
["GET /t HTTP/1.0\r\n", "\r\n"]
--- stream_response_like chomp
\r\n\r\nhi\n$
--- grep_error_log eval
qr/stream: downstream_data size=\d+ eos=\w+/
--- grep_error_log_out
stream: downstream_data size=17 eos=false
stream: downstream_data size=2 eos=false



=== TEST 4: upper: downstream data rewritten in place (the lowercase request is upper-cased)
--- config
    location = /T { return 200 "upper\n"; }
--- stream_server_config
    proxy_wasm stream_testbed upper;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"get /t http/1.0\r\n\r\n"
--- stream_response_like chomp
^HTTP/1\.1 200 OK\r\n.*\r\n\r\nupper\n$



=== TEST 5: grow: a length-changing rewrite; the next filter of the chain sees it
--- config
    location = /t { return 200 "hi\n"; }
--- stream_server_config
    proxy_wasm stream_testbed grow;
    proxy_wasm stream_testbed show-down;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_like chomp
^HTTP/1\.1 400 Bad Request\r\n
--- error_log
stream: downstream="[GET /t HTTP/1.0\r\n\r\n]"
--- no_error_log
[error]
[crit]
[alert]



=== TEST 6: prepend and append on upstream data (insertions at 0 and at the end)
--- config
    location = /t { return 200 "hi\n"; }
--- stream_server_config
    proxy_wasm stream_testbed prepend,append;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_like chomp
^>>HTTP/1\.1 200 OK\r\n.*\r\n\r\nhi\n<<$



=== TEST 7: drop: the upstream gets nothing, answers nothing
--- config
    location = /t { return 200 "hi\n"; }
--- stream_server_config
    proxy_half_close on;
    proxy_wasm stream_testbed drop,trace;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /t HTTP/1.1\r\nHost: x\r\n\r\n"
--- stream_half_close
--- stream_response:
--- error_log eval
qr/stream: downstream_data size=\d+ eos=false/
--- no_error_log eval
["[error]", "[crit]", "[alert]", qr/stream: upstream_data size=[1-9]/]



=== TEST 8: pause:N holds data until N bytes are buffered, then continues with all of it
--- config
    location = /t { return 200 "paused\n"; }
--- stream_server_config
    proxy_wasm stream_testbed pause:19,show-down;
    proxy_wasm stream_testbed show-down;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
["GET /t HTT", "P/1.0\r\n\r\n"]
--- stream_response_like chomp
\r\n\r\npaused\n$
--- grep_error_log eval
qr/stream: (?:pausing at \d+ bytes|released \d+ bytes|downstream="[^"]*")/
--- grep_error_log_out
stream: downstream="GET /t HTT"
stream: pausing at 10 bytes
stream: downstream="GET /t HTTP/1.0\r\n\r\n"
stream: released 19 bytes
stream: downstream="GET /t HTTP/1.0\r\n\r\n"



=== TEST 9: a paused filter over proxy_wasm_buffer_limit: the connection is closed, logged
--- config
    location = /t { return 200 "hi\n"; }
--- stream_server_config
    proxy_wasm_buffer_limit 8;
    proxy_wasm stream_testbed pause:1000;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response:
--- error_log
proxy_wasm_buffer_limit
--- no_error_log
[crit]
[alert]
released



=== TEST 10: close-down: the filter closes the downstream when it sees a word
--- config
    location = /t { return 200 "hi\n"; }
--- stream_server_config
    proxy_wasm stream_testbed close-down:QUIT,trace;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"QUIT\r\n"
--- stream_response:
--- error_log
stream: close downstream status=0
stream: downstream_close peer=1
stream: log
--- no_error_log
[error]
[crit]
[alert]



=== TEST 11: close-up: the filter closes the upstream when the response has a word
--- config
    location = /t { return 200 "secret\n"; }
--- stream_server_config
    proxy_wasm stream_testbed close-up:secret,trace;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_unlike chomp
secret
--- error_log
stream: close upstream status=0
stream: upstream_close peer=1
stream: log
--- no_error_log
[error]
[crit]
[alert]



=== TEST 12: deny-new: closing the downstream in on_new_connection; no upstream, no data
--- config
    location = /t { return 200 "hi\n"; }
--- stream_server_config
    proxy_wasm stream_testbed deny-new,trace;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response:
--- error_log
stream: denied (close downstream status=0)
stream: downstream_close peer=1
--- no_error_log
[error]
[crit]
stream: downstream_data
stream: upstream_close



=== TEST 13: connection properties in on_new_connection, upstream.address and upstream.port at on_log
--- config
    location = /t { return 200 "hi\n"; }
--- stream_server_config
    proxy_wasm stream_testbed trace,prop:plugin_name,prop:plugin_root_id,prop:upstream.address,lprop:upstream.address,lprop:upstream.port;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_like chomp
\r\n\r\nhi\n$
--- error_log eval
[qr/stream: prop source.address=127\.0\.0\.1:\d+\b/,
 qr/stream: prop source.port=\d+\b/,
 qr/stream: prop destination.address=127\.0\.0\.1:\d+\b/,
 qr/stream: prop destination.port=\d+\b/,
 qr/stream: prop connection.id=\d+\b/,
 qr/stream: prop plugin_name=stream_testbed\b/,
 qr/stream: prop plugin_root_id=/,
 qr/stream: prop upstream.address=<none>/,
 qr/stream: prop upstream.address=127\.0\.0\.1:\d+\b/,
 qr/stream: prop upstream.port=\d+\b/]
--- no_error_log
[error]
[crit]
[alert]



=== TEST 14: the ports are the real ones (destination.port = the stream port)
--- config
    location = /t { return 200 "hi\n"; }
--- stream_server_config
    proxy_wasm stream_testbed prop:destination.port,var:server_port;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_like chomp
\r\n\r\nhi\n$
--- grep_error_log eval
qr/stream: (?:prop destination\.port|var server_port)=\d+/
--- grep_error_log_out
stream: prop destination.port=$TEST_NGINX_STREAM_PORT
stream: var server_port=$TEST_NGINX_STREAM_PORT



=== TEST 15: stream variables as ngx.* properties, at new connection and at log
--- config
    location = /t { return 200 "hi\n"; }
--- stream_server_config
    set $greeting "hello-var";
    proxy_wasm stream_testbed var:remote_addr,var:greeting,var:no_such_var,lvar:upstream_addr,lvar:bytes_received;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_like chomp
\r\n\r\nhi\n$
--- error_log eval
[qr/stream: var remote_addr=127\.0\.0\.1\b/,
 qr/stream: var greeting=hello-var\b/,
 qr/stream: var no_such_var=<none>/,
 qr/stream: var upstream_addr=127\.0\.0\.1:\d+\b/,
 qr/stream: var bytes_received=19\b/]
--- no_error_log
[crit]
[alert]



=== TEST 16: the root context of a stream filter ticks
--- stream_server_config
    proxy_wasm stream_testbed tick;
    return "x";
--- stream_response chomp
x
--- error_log
stream: tick



=== TEST 17: shared data: set by one connection, seen by the next (a second server behind)
--- config
    location = /t { return 200 "hi\n"; }
--- stream_config
    wasm_module stream_testbed $TEST_NGINX_FILTERS/stream_testbed.wasm;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        proxy_wasm stream_testbed shared;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
    }
--- stream_server_config
    proxy_wasm stream_testbed shared;
    proxy_pass 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_like chomp
\r\n\r\nhi\n$
--- grep_error_log eval
qr/stream: shared (?:get=(?:none|"[^"]*")|set)/
--- grep_error_log_out
stream: shared get=none
stream: shared set
stream: shared get="GET /t HTTP/1.0\r\n\r\n"
stream: shared set



=== TEST 18: a counter metric counts connections (two, through the second server)
--- config
    location = /t { return 200 "hi\n"; }
--- stream_config
    wasm_module stream_testbed $TEST_NGINX_FILTERS/stream_testbed.wasm;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        proxy_wasm stream_testbed metric;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
    }
--- stream_server_config
    proxy_wasm stream_testbed metric;
    proxy_pass 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_like chomp
\r\n\r\nhi\n$
--- grep_error_log eval
qr/stream: metric stream_connections=\d+/
--- grep_error_log_out
stream: metric stream_connections=1
stream: metric stream_connections=2



=== TEST 19: with the return content handler: its data is upstream data to the filter
--- stream_server_config
    proxy_wasm stream_testbed trace,prepend,append;
    return "hello\n";
--- stream_response eval
">>hello\n<<"
--- error_log eval
[qr/stream: new_connection/,
 qr/stream: upstream_data size=6 /,
 qr/stream: downstream_close peer=1/,
 qr/stream: log/]
--- no_error_log
[error]
[crit]
stream: upstream_close



=== TEST 20: TLS termination: the filter sees plaintext, SNI and the TLS version
--- config
    location = /t {
        proxy_pass https://127.0.0.1:$TEST_NGINX_STREAM_PORT/inner;
        proxy_ssl_server_name on;
        proxy_ssl_name sni.example;
    }
    location = /INNER { return 200 "inner\n"; }
--- steam_listen_option: ssl
--- stream_server_config
    ssl_certificate $TEST_NGINX_CERTS/server.crt;
    ssl_certificate_key $TEST_NGINX_CERTS/server.key;
    proxy_wasm stream_testbed sni,prop:connection.tls_version,var:ssl_server_name,upper;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request
GET /t
--- response_body
inner
--- error_log eval
[qr/stream: sni=sni\.example/,
 qr/stream: prop connection\.tls_version=TLSv1\.[23]/,
 qr/stream: var ssl_server_name=sni\.example/]
--- no_error_log
[error]
[crit]
[alert]



=== TEST 21: without TLS there is no SNI
--- stream_server_config
    proxy_wasm stream_testbed sni,prop:connection.tls_version;
    return "x";
--- stream_response chomp
x
--- error_log
stream: sni=<none>
stream: prop connection.tls_version=<none>



=== TEST 22: ssl_preread gives the SNI of a TLS connection that is passed through
--- config
    location = /t {
        proxy_pass https://127.0.0.1:$TEST_NGINX_STREAM_PORT/t2;
        proxy_ssl_server_name on;
        proxy_ssl_name pre.example;
    }
    location = /t2 { return 200 "pre\n"; }
--- stream_config
    wasm_module stream_testbed $TEST_NGINX_FILTERS/stream_testbed.wasm;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1 ssl;
        ssl_certificate $TEST_NGINX_CERTS/server.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/server.key;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
    }
--- stream_server_config
    ssl_preread on;
    proxy_wasm stream_testbed sni,var:ssl_preread_server_name;
    proxy_pass 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
--- request
GET /t
--- response_body
pre
--- error_log
stream: sni=pre.example
stream: var ssl_preread_server_name=pre.example
--- no_error_log
[crit]
[alert]


=== TEST 23: proxy_continue_stream(UPSTREAM) from on_downstream_data releases the upstream data the filter held (keep-alive: the first response is held until the client sends the second request)
--- config
    location = /t { return 200 "hi\n"; }
--- stream_server_config
    proxy_wasm stream_testbed hold-up;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
["GET /t HTTP/1.1\r\nHost: x\r\n\r\n", "GET /t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]
--- stream_response_like chomp
^HTTP/1.1 200 OK\r\n.*\r\n\r\nhi\nHTTP/1.1 200 OK\r\n.*\r\n\r\nhi\n$
--- grep_error_log eval
qr/stream: (?:holding upstream|continue upstream status=\d+)|proxy_continue_stream: \d+ bytes of held upstream data go on/
--- grep_error_log_out eval
qr/\Astream: holding upstream\nstream: continue upstream status=0\nproxy_continue_stream: \d+ bytes of held upstream data go on\n\z/


=== TEST 24: the http module's proxy_wasm_metrics serves the stream module's metrics too (its own zone), with the per-filter figures
--- main_config eval
($ENV{TEST_NGINX_STREAM_MODULE} ? "load_module $ENV{TEST_NGINX_STREAM_MODULE};\n" : "")
. ($ENV{TEST_NGINX_WASM_MODULE} ? "load_module $ENV{TEST_NGINX_WASM_MODULE};\n" : "")
. "load_module $ENV{TEST_NGINX_STREAM_WASM_MODULE};"
--- http_config
    wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
    location = /t { return 200 "hi\n"; }
    location = /via-stream { proxy_pass http://127.0.0.1:$TEST_NGINX_STREAM_PORT/t; }
    location = /metrics { proxy_wasm_metrics; }
--- stream_config
    wasm_module stream_testbed $TEST_NGINX_FILTERS/stream_testbed.wasm;
    proxy_wasm_filter_metrics on;
--- stream_server_config
    proxy_wasm stream_testbed metric name=l4;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- request eval
["GET /via-stream", "GET /via-stream", "GET /metrics"]
--- response_body_like eval
["^hi\n\$", "^hi\n\$", "(?s)proxy_wasm_filter_callbacks_total\\{module=\"stream_testbed\",filter=\"l4\"\\} \\d+.*# TYPE stream_connections counter\nstream_connections 2\n"]


=== TEST 25: shared queues from stream plugins: a stream context enqueues, its root context's on_queue_ready dequeues
--- config
    location = /t { return 200 "hi\n"; }
--- stream_server_config
    proxy_wasm stream_testbed queue;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_like chomp
\r\n\r\nhi\n$
--- wait: 0.5
--- error_log
stream: enqueued
stream: queue item "GET /t HTTP/1.0\r\n\r\n"
