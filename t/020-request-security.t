# A plugin cannot inject, traverse or desync through the host's request/response rewriting
# (issue 12, items 6-11): nginx variables, :path/:authority, response framing, subrequests,
# discarded bodies and nginx's header shortcuts.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

run_tests();

__DATA__

=== TEST 1: ngx.args refuses CR/LF and spaces: no request splitting towards the upstream
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
server {
    listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    location / { return 200 "args=$args injected=$http_x_injected\n"; }
}
--- config
location /t {
    proxy_wasm testbed "prop_set_raw=ngx.args:a%20b;prop_set_raw=ngx.args:a%00b;prop_set_raw=ngx.args:a=b%20HTTP/1.1%0d%0aX-Injected:%201%0d%0aX:%20y";
    proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
}
--- request
GET /t?old=1
--- response_body
args=old=1 injected=
--- grep_error_log eval
qr/prop_set_raw ngx.args=\w+/
--- grep_error_log_out
prop_set_raw ngx.args=BadArgument
prop_set_raw ngx.args=BadArgument
prop_set_raw ngx.args=BadArgument
--- no_error_log
[error]
[alert]

=== TEST 2: a `set` variable refuses CR/LF/NUL: nothing reaches proxy_set_header, a space is fine
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
server {
    listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    location / { return 200 "v=$http_x_v injected=$http_x_injected\n"; }
}
--- config
location /t {
    set $v "original";
    proxy_wasm testbed "prop_set_raw=ngx.v:x%00y;prop_set_raw=ngx.v:x%0aX-Injected:%201;prop_set_raw=ngx.v:x%0d%0aX-Injected:%201";
    proxy_set_header X-V $v;
    proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
}
location /s {
    set $v "original";
    proxy_wasm testbed "prop_set_raw=ngx.v:a%20b%09c";
    proxy_set_header X-V $v;
    proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
}
--- request eval
["GET /t", "GET /s"]
--- response_body eval
["v=original injected=\n", "v=a b\tc injected=\n"]
--- error_log
prop_set_raw ngx.v=BadArgument
prop_set_raw ngx.v=Ok
--- no_error_log
[error]
[alert]

=== TEST 3: add_header of a plugin-set variable cannot split the response
--- config
location /t {
    set $v "original";
    proxy_wasm testbed "prop_set_raw=ngx.v:x%0d%0aX-Injected:%201";
    add_header X-V $v;
    empty_gif;
}
--- request
GET /t
--- response_headers
X-V: original
!X-Injected
--- error_log
prop_set_raw ngx.v=BadArgument

=== TEST 4: :path cannot climb above the root: a plugin cannot read /etc/passwd through a static location
--- config
location /s/ {
    root html;
    proxy_wasm testbed "req_set_raw=:path:/../../../../../../../../../../../../etc/passwd;req_set_raw=:path:/%252e%252e/%252E%252E/%252e%252e/%252e%252e/%252e%252e/%252e%252e/%252e%252e/%252e%252e/%252e%252e/%252e%252e/etc/passwd;req_set_raw=:path:/s/../../../../../../../../../../../../etc/passwd;req_set_raw=:path:/s/..%252f..%252f..%252f..%252f..%252f..%252f..%252f..%252f..%252f..%252f..%252fetc/passwd;req_get=:path";
}
--- user_files
>>> s/index.html
index
--- request
GET /s/index.html
--- response_body
index
--- grep_error_log eval
qr/req_(set_raw|get) :path=[^,\s]+/
--- grep_error_log_out
req_set_raw :path=BadArgument
req_set_raw :path=BadArgument
req_set_raw :path=BadArgument
req_set_raw :path=BadArgument
req_get :path=/s/index.html

=== TEST 5: :path dot segments and escapes resolve within the root, the query string goes to $args
--- config
location /s/ {
    root html;
    proxy_wasm testbed "req_set_raw=:path:/s/sub/../dir/./%2566ile.txt?q=1%25262;req_get=:path";
    add_header X-Uri $uri;
    add_header X-Args $args;
}
--- user_files
>>> s/dir/file.txt
in root
--- request
GET /s/index.html
--- response_body
in root
--- response_headers
X-Uri: /s/dir/file.txt
X-Args: q=1%262
--- error_log
req_set_raw :path=Ok
req_get :path=/s/sub/../dir/./%66ile.txt?q=1%262

=== TEST 6: :path refuses what a request line cannot hold (space, CTL, fragment, not absolute)
--- config
location /s/ {
    root html;
    proxy_wasm testbed "req_set_raw=:path:/a%20b;req_set_raw=:path:/a%09b;req_set_raw=:path:/a#frag;req_set_raw=:path:a/b;req_set_raw=:path:/ok%2500.txt;req_get=:path";
}
--- user_files
>>> s/index.html
index
--- request
GET /s/index.html
--- response_body
index
--- grep_error_log eval
qr/req_(set_raw|get) :path=[^,\s]+/
--- grep_error_log_out
req_set_raw :path=BadArgument
req_set_raw :path=BadArgument
req_set_raw :path=BadArgument
req_set_raw :path=BadArgument
req_set_raw :path=BadArgument
req_get :path=/s/index.html

=== TEST 7: :authority and Host follow nginx's host rules; $host is lowercased, port and trailing dot dropped
--- config
location /t {
    proxy_wasm testbed "req_set_raw=:authority:../../etc;req_set_raw=:authority:a/b;req_set_raw=:authority:a..b;req_set_raw=host:x/../y;req_set_raw=:authority:.;req_set_raw=:authority:Example.COM.:8080;req_get=:authority";
    proxy_set_header X-Host $host;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
}
location /echo { return 200 "host=$http_x_host\n"; }
--- request
GET /t
--- response_body
host=example.com
--- grep_error_log eval
qr/req_(set_raw|get) [:a-z]+=[^,\s]+/
--- grep_error_log_out
req_set_raw :authority=BadArgument
req_set_raw :authority=BadArgument
req_set_raw :authority=BadArgument
req_set_raw host=BadArgument
req_set_raw :authority=BadArgument
req_set_raw :authority=Ok
req_get :authority=Example.COM.:8080

=== TEST 8: a plugin-set Host cannot leave a `root` built from $host
--- config
location /s/ {
    root html/vhosts/$host;
    proxy_wasm testbed "req_set_raw=:authority:..;req_set_raw=host:..";
}
--- user_files
>>> s/index.html
outside the virtual hosts
>>> vhosts/localhost/s/index.html
vhost localhost
--- request
GET /s/index.html
--- response_body
vhost localhost
--- grep_error_log eval
qr/req_set_raw [:a-z]+=[^,\s]+/
--- grep_error_log_out
req_set_raw :authority=BadArgument
req_set_raw host=BadArgument

=== TEST 9: :status takes only statuses nginx frames; framing headers and another Content-Length are refused
--- config
location /s/ {
    root html;
    proxy_wasm testbed "resp_set_raw=:status:101;resp_set_raw=:status:100;resp_set_raw=:status:199;resp_set_raw=:status:600;resp_set_raw=:status:1000;resp_set_raw=transfer-encoding:chunked;resp_set_raw=Connection:upgrade;resp_set_raw=upgrade:websocket;resp_set_raw=keep-alive:timeout=999;resp_set_raw=proxy-connection:close;resp_set_raw=te:trailers;resp_set_raw=content-length:3;resp_set_raw=content-length:11;resp_set_raw=:status:203";
}
--- user_files
>>> s/index.html
0123456789
--- request
GET /s/index.html
--- error_code: 203
--- response_body
0123456789
--- raw_response_headers_like eval
# the testbed has body callbacks: nginx drops the length and frames the body itself
qr/\r\nTransfer-Encoding: chunked\r\n/
--- raw_response_headers_unlike eval
qr/(?i)(transfer-encoding.*transfer-encoding|upgrade|timeout=999|proxy-connection|\nte:|content-length)/s
--- grep_error_log eval
qr/resp_set_raw [:a-zA-Z-]+=\w+/
--- grep_error_log_out
resp_set_raw :status=BadArgument
resp_set_raw :status=BadArgument
resp_set_raw :status=BadArgument
resp_set_raw :status=BadArgument
resp_set_raw :status=BadArgument
resp_set_raw transfer-encoding=BadArgument
resp_set_raw Connection=BadArgument
resp_set_raw upgrade=BadArgument
resp_set_raw keep-alive=BadArgument
resp_set_raw proxy-connection=BadArgument
resp_set_raw te=BadArgument
resp_set_raw content-length=BadArgument
resp_set_raw content-length=Ok
resp_set_raw :status=Ok

=== TEST 10: a local response must be final (200-599) and carry no framing header
--- config
location /a { proxy_wasm testbed "local=101:switching with a body"; empty_gif; }
location /b { proxy_wasm testbed "local=100:continue with a body"; empty_gif; }
location /c { proxy_wasm testbed "local_hdr=200:Transfer-Encoding:chunked"; empty_gif; }
location /d { proxy_wasm testbed "local_hdr=200:connection:keep-alive"; empty_gif; }
location /e { proxy_wasm testbed "local_hdr=204:x-ok:1"; empty_gif; }
--- request eval
["GET /a", "GET /b", "GET /c", "GET /d", "GET /e"]
--- error_code eval
[500, 500, 500, 500, 204]
--- raw_response_headers_unlike eval
[qr/(?i)upgrade/, qr/(?i)HTTP\/1.1 100/, qr/(?i)transfer-encoding/, qr/(?i)connection: keep-alive/, qr/(?i)transfer-encoding/]
--- error_log
unexpected status: 2

=== TEST 11: log_subrequest on: a plugin's HTTP call (a subrequest) runs no callback of its main request
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
proxy_wasm_call_allow testbed 127.0.0.1;
log_subrequest on;
--- config
location /t {
    proxy_wasm testbed "log_done;name=main;call=127.0.0.1:$TEST_NGINX_SERVER_PORT /backend; call_to_header=x-auth";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/app;
}
location /backend { return 200 "backend\n"; }
location /app { return 200 "app got x-auth=$http_x_auth\n"; }
--- request
GET /t
--- response_body
app got x-auth=200:backend
--- grep_error_log eval
qr/main on_(done|log|delete)|call response token=\d+ status=\d+/
--- grep_error_log_out
call response token=1 status=200
main on_done
main on_log
main on_delete

=== TEST 12: a local response from on_response_headers discards a huge static file without reading it (sendfile on: file buffers reach the filter)
--- http_config
wasm_module local $TEST_NGINX_FILTERS/local_on_headers.wat;
--- config
sendfile on;
location /s/ { root html; proxy_wasm local; }
--- init
# A sparse 1 TiB file: no disk used; loading it into memory fails (the worker would abort).
mkdir "$Test::Nginx::Util::HtmlDir/s";
open(my $fh, '>', "$Test::Nginx::Util::HtmlDir/s/huge.bin") or die "huge.bin: $!";
truncate($fh, 1 << 40) or die "truncate: $!";
close $fh;
--- request eval
["GET /s/huge.bin", "GET /s/huge.bin"]
--- error_code eval
[403, 403]
--- response_body eval
["denied\n", "denied\n"]
--- timeout: 5

=== TEST 13: the same with sendfile off: nginx does not read the file through its output buffers either
--- http_config
wasm_module local $TEST_NGINX_FILTERS/local_on_headers.wat;
--- config
sendfile off;
location /s/ { root html; proxy_wasm local; }
--- init
mkdir "$Test::Nginx::Util::HtmlDir/s";
open(my $fh, '>', "$Test::Nginx::Util::HtmlDir/s/huge.bin") or die "huge.bin: $!";
truncate($fh, 1 << 40) or die "truncate: $!";
close $fh;
--- request eval
["GET /s/huge.bin", "GET /s/huge.bin"]
--- error_code eval
[403, 403]
--- response_body eval
["denied\n", "denied\n"]
--- timeout: 5

=== TEST 14: every headers_in shortcut follows the plugin's edits: gzip reads Accept-Encoding and Via, $http_via reads Via
--- config
gzip on;
gzip_min_length 1;
gzip_types text/plain;
location /a/ { alias html/; default_type text/plain; add_header X-Via "$http_via"; proxy_wasm testbed "req_remove=accept-encoding"; }
location /b/ { alias html/; default_type text/plain; add_header X-Via "$http_via"; proxy_wasm testbed "req_set=via:1.1 plugin"; }
location /c/ { alias html/; default_type text/plain; add_header X-Via "$http_via"; proxy_wasm testbed "req_remove=via"; }
location /d/ { alias html/; default_type text/plain; add_header X-Via "$http_via"; proxy_wasm testbed "req_set=accept-encoding:identity"; }
--- user_files
>>> f.txt
some text to compress some text to compress some text to compress
--- raw_request eval
["GET /a/f.txt HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
 "GET /b/f.txt HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
 "GET /c/f.txt HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\nVia: 1.0 client-proxy\r\nConnection: close\r\n\r\n",
 "GET /d/f.txt HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"]
--- raw_response_headers_like eval
[qr/^HTTP\/1.1 200/, qr/X-Via: 1.1 plugin\r\n/, qr/Content-Encoding: gzip\r\n/, qr/^HTTP\/1.1 200/]
--- raw_response_headers_unlike eval
[qr/Content-Encoding/, qr/Content-Encoding/, qr/X-Via/, qr/Content-Encoding/]

=== TEST 15: a rewritten :path in an `alias` location is refused by nginx's own check, not read out of bounds
--- config
location /alias/ { alias html/s/; proxy_wasm testbed "req_set_raw=:path:/x"; }
location /same/ { alias html/s/; proxy_wasm testbed "req_set_raw=:path:/same/index.html"; }
--- user_files
>>> s/index.html
index
--- request eval
["GET /alias/index.html", "GET /same/index.html"]
--- error_code eval
[500, 200]
--- response_body_like eval
[qr/500/, qr/^index$/]
--- error_log
"alias" cannot be used in location "/alias/" where URI was rewritten
req_set_raw :path=Ok
--- no_error_log
exited on signal

=== TEST 16: Cookie and X-Forwarded-For shortcuts (lists on nginx >= 1.23, arrays before) follow the edits
--- config
location /t {
    proxy_wasm testbed "req_set=cookie:a=new;req_add=cookie:b=two;req_set=x-forwarded-for:192.0.2.1";
    proxy_set_header X-FF $proxy_add_x_forwarded_for;
    proxy_set_header X-Cookies "a=$cookie_a b=$cookie_b";
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
}
location /echo { return 200 "ff=$http_x_ff $http_x_cookies\n"; }
--- request
GET /t
--- more_headers
Cookie: a=old
X-Forwarded-For: 198.51.100.7
--- response_body
ff=192.0.2.1, 127.0.0.1 a=new b=two
