# Exercises the t/lib Test::Nginx::Socket runner itself against a plain nginx
# (no wasm module): TEST_NGINX_BINARY=/usr/sbin/nginx prove -I t/lib t/000-runner-selftest.t
# Only stock directives of the http core/ssi/proxy modules are used.
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
master_on();    # the real Test::Nginx defaults to master_process off
log_level('info');

add_block_preprocessor(sub {
    my $block = shift;
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
