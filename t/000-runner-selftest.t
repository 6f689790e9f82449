# Exercises the t/lib Test::Nginx::Socket runner itself against a plain nginx
# (no wasm module): TEST_NGINX_BINARY=/usr/sbin/nginx prove -I t/lib t/000-runner-selftest.t
# Only stock directives of the http core/ssi/proxy modules are used.
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
master_on();    # the real Test::Nginx defaults to master_process off
log_level('info');

# stream {} support: built in (--with-stream), or TEST_NGINX_STREAM_MODULE = nginx's own
# ngx_stream_module.so (Debian: libnginx-mod-stream); without either the stream blocks skip.
my $nginx_v = `\Q${\($ENV{TEST_NGINX_BINARY} || 'nginx')}\E -V 2>&1` // '';
my $stream_module = $ENV{TEST_NGINX_STREAM_MODULE} // '';
my $have_stream = $nginx_v =~ /--with-stream(?:\s|$)/ ? 'builtin'
                : ($stream_module ne '' && -f $stream_module) ? 'module' : '';

add_block_preprocessor(sub {
    my $block = shift;
    if (grep { defined $block->$_ } qw(stream_config stream_server_config stream_request)) {
        if (!$have_stream) {
            $block->set_value(skip_eval => "1: 1");    # "no stream module in this nginx"
        } elsif ($have_stream eq 'module') {
            $block->set_value(main_config => "load_module $stream_module;\n"
                                             . ($block->main_config // ''));
        }
    }
    # a default like this project's suites use: no unexpected [error] lines
    if (!defined $block->error_log && !defined $block->no_error_log
        && !defined $block->must_die)
    {
        $block->set_value("no_error_log", "[error]\n[crit]\n[alert]\n[emerg]");
    }
});

run_tests();

__DATA__

=== TEST 1: return, body, status, headers (present, absent, regex)
--- config
    location /t {
        add_header X-Foo bar;
        return 200 "ok\n";
    }
--- request
GET /t
--- error_code: 200
--- response_body
ok
--- response_headers
Content-Type: text/plain
Content-Length: 3
X-Foo: bar
!X-Absent
--- response_headers_like
Server: nginx(/[\d.]+)?
X-Foo: b.r



=== TEST 2: more_headers reach nginx, Host default, response_body chomp
--- config
    location = /echo {
        return 200 "$http_x_foo|$host|$http_connection";
    }
--- request
GET /echo
--- more_headers
X-Foo: hello world
--- response_body chomp
hello world|localhost|close



=== TEST 3: user_files served from html/ with root, env var substitution
--- config
    location /static/ {
        root $TEST_NGINX_SERVER_ROOT/html;
    }
--- user_files
>>> static/a.txt
file a
line 2
>>> static/sub/b.txt
file b
--- request
GET /static/a.txt
--- response_body
file a
line 2
--- response_headers
Content-Length: 14



=== TEST 4: request body gets a Content-Length; proxy to our own port
--- config
    location = /body {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo_headers;
        proxy_set_header X-Body $request_body;
        proxy_set_header X-Len $content_length;
    }
    location = /echo_headers {
        return 200 "$request_method $http_x_len [$http_x_body]\n";
    }
--- request
POST /body
hello body
--- response_body
POST 10 [hello body]



=== TEST 5: 404 logs an [error] nginx writes itself; error_log string + eval regex
--- config
    location /missing/ {
        root html;
        log_not_found on;
    }
--- request
GET /missing/nope.txt
--- error_code: 404
--- response_body_like: 404 Not Found
--- error_log
No such file or directory
[error]
--- grep_error_log: No such file or directory
--- grep_error_log_out
No such file or directory



=== TEST 6: error_log / no_error_log given as eval arrays of strings and qr//
--- config
    location /missing/ {
        root html;
    }
--- request
GET /missing/x
--- error_code: 404
--- response_body_like: <center>nginx[^<]*</center>\r?\n</body>
--- error_log eval
[qr/open\(\) "[^"]+\/html\/missing\/x" failed \(2: No such file or directory\)/,
 "client: 127.0.0.1"]
--- no_error_log eval
[qr/\[alert\]/, "[emerg]"]



=== TEST 7: must_die: an unknown directive fails nginx -t / startup
--- config
    location /t {
        no_such_directive_xyz on;
    }
--- must_die
--- error_log
unknown directive "no_such_directive_xyz"



=== TEST 8: chunked response (ssi filter drops Content-Length) is decoded
--- config
    location /ssi/ {
        ssi on;
        root html;
    }
--- user_files
>>> ssi/page.html
<!--# set var="v" value="chunky" -->[<!--# echo var="v" -->]
--- request
GET /ssi/page.html
--- response_headers
Transfer-Encoding: chunked
!Content-Length
--- response_body
[chunky]



=== TEST 9: several requests in one block (request eval array)
--- config
    location = /a { return 200 "A\n"; }
    location = /b { return 201 "B\n"; }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[200, 201]
--- response_body eval
["A\n", qr/^B$/m]



=== TEST 10: HTTP/1.0 request line and a raw_request
--- config
    location = /v { return 200 "$server_protocol\n"; }
--- raw_request eval
"GET /v HTTP/1.0\r\nHost: localhost\r\n\r\n"
--- response_body
HTTP/1.0



=== TEST 11: HTTP/1.0 request from --- request
--- config
    location = /v { return 200 "$server_protocol\n"; }
--- request
GET /v HTTP/1.0
--- response_body
HTTP/1.0



=== TEST 12: keep-alive connection: client stops at Content-Length, no timeout
--- config
    location = /k { return 200 "kept\n"; }
--- request
GET /k
--- more_headers
Connection: keep-alive
--- timeout: 2
--- response_body
kept
--- response_headers
Connection: keep-alive



=== TEST 13: default root location serves html/index.html; HEAD has no body
--- request
HEAD /
--- response_body:
--- response_headers_like
Content-Length: [1-9]\d*
Content-Type: text/html



=== TEST 14: --- wait, --- log_level and shutdown_error_log
--- log_level: notice
--- config
    location = /t { return 204; }
--- request
GET /t
--- wait: 0.1
--- error_code: 204
--- response_body:
--- shutdown_error_log
gracefully shutting down
--- no_error_log
[info]



=== TEST 15: main_config and http_config land in the right contexts
--- main_config
worker_rlimit_nofile 1024;
--- http_config
    map $uri $mapped {
        default "other";
        /m      "mapped";
    }
--- config
    location = /m { return 200 "$mapped\n"; }
--- request
GET /m
--- response_body
mapped



=== TEST 16: a SKIP block with wrong expectations is never run
--- SKIP
--- config
    location = /t { return 500; }
--- request
GET /t
--- error_code: 200



=== TEST 17: stream: return from a stream server; http block still written
--- stream_server_config
    return "hello\n";
--- stream_response
hello



=== TEST 18: stream: proxy_pass to this block's http server, request eval
--- config
    location = /t { return 200 "hi\n"; }
--- stream_server_config
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_like chomp
^HTTP/1\.1 200 OK\r\n.*\r\n\r\nhi\n$



=== TEST 19: stream: stream_request eval array is sent in pieces
--- config
    location = /t { return 200 "pieces\n"; }
--- stream_server_config
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
["GET /t HTTP/1.0\r\n", "Host: x\r\n", "\r\n"]
--- stream_response_like chomp
\r\n\r\npieces\n$



=== TEST 20: stream: stream_half_close: the server sees EOF; keep-alive upstream closes then
--- config
    location = /t { return 200 "half\n"; }
--- stream_server_config
    proxy_half_close on;
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /t HTTP/1.1\r\nHost: x\r\n\r\n"
--- stream_half_close
--- timeout: 3
--- stream_response_like chomp
^HTTP/1\.1 200 .*\r\n\r\nhalf\n$



=== TEST 21: stream: stream_config holds a second server on a random port
--- stream_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        return "from-rand";
    }
--- stream_server_config
    proxy_pass 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
--- stream_response chomp
from-rand



=== TEST 22: stream: an http request with a stream server: http wins; STREAM_PORT substituted
--- config
    location = /port { return 200 "$TEST_NGINX_STREAM_PORT\n"; }
--- stream_server_config
    return "stream";
--- request
GET /port
--- response_body
$TEST_NGINX_STREAM_PORT



=== TEST 23: stream: error_log of a stream session; empty stream_response
--- stream_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        return "";
    }
--- stream_server_config
    proxy_connect_timeout 1s;
    proxy_pass 127.0.0.1:1;
--- stream_response:
--- error_log
Connection refused
--- no_error_log
[alert]



=== TEST 24: stream: abort: a connection left open ends at the timeout without failing
--- config
    location = /t { return 200 "open\n"; }
--- stream_server_config
    proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /t HTTP/1.1\r\nHost: x\r\n\r\n"
--- timeout: 0.5
--- abort
--- stream_response_like chomp
\r\n\r\nopen\n$
