# The Lua path answers as api7/wasm-nginx-module does where its contract differs from Envoy's
# (issue 15, 1b): plugins written for APISIX rely on it. Runs with our library; the same
# module-side answers are checked with api7's own library in t/lua/006-api7-library.t.
#   - an HTTP call may leave out :method (GET is sent) and :path (`/`), or give a relative
#     :path (`/` is prefixed); the native path keeps Envoy's BAD_ARGUMENT (t/018 TEST 31);
#   - proxy_set_property with a one-word path is lua-nginx-module's variable setter: a
#     variable that cannot be written (host) fails, an unknown one is NOT_FOUND, neither is
#     kept as a property;
#   - proxy_get_buffer_bytes on a body chunk: NOT_FOUND when empty, BAD_ARGUMENT for a start
#     at or past its end or a size of 0 (the native path: Envoy's answers, t/008 TEST 10).
use lib 't/lib';
use Test::Nginx::Socket;
use ProxyWasmLua;

add_block_preprocessor(sub {
    my $block = shift;
    return if defined $block->http_config;
    $block->set_value("http_config", join("\n",
        "proxy_wasm_call_allow callout 127.0.0.1;",
        "init_worker_by_lua_block {",
        '    require("apisix_like").load("callout", "$TEST_NGINX_FILTERS/lua_callout.wasm")',
        '    require("apisix_like").load("testbed", "$TEST_NGINX_FILTERS/testbed.wasm")',
        "}"));
});

run_tests();

__DATA__

=== TEST 1: a call without :method is sent as GET and its callback runs
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("callout", "call=127.0.0.1:$TEST_NGINX_SERVER_PORT;method=-") }
    content_by_lua_block { ngx.say("x-call=", ngx.var.http_x_call) }
}
location /call { content_by_lua_block { ngx.say(ngx.req.get_method(), " ", ngx.var.request_uri) } }
--- request
GET /t
--- response_body
x-call=200/GET /call
--- error_log eval
qr/call \d+ status=200 body=GET \/call/

=== TEST 2: a call without :path asks for /
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("callout", "call=127.0.0.1:$TEST_NGINX_SERVER_PORT;method=-;path=-") }
    content_by_lua_block { ngx.say("x-call=", ngx.var.http_x_call) }
}
location = / { content_by_lua_block { ngx.say("root ", ngx.req.get_method(), " ", ngx.var.request_uri) } }
--- request
GET /t
--- response_body
x-call=200/root GET /

=== TEST 3: a relative :path gets its leading /
--- config
location /t {
    access_by_lua_block { require("apisix_like").access("callout", "call=127.0.0.1:$TEST_NGINX_SERVER_PORT;method=POST;path=call/rel?q=1;body=b") }
    content_by_lua_block { ngx.say("x-call=", ngx.var.http_x_call) }
}
location /call { content_by_lua_block { ngx.req.read_body(); ngx.say(ngx.req.get_method(), " ", ngx.var.request_uri, " ", ngx.req.get_body_data()) } }
--- request
GET /t
--- response_body
x-call=200/POST /call/rel?q=1 b

=== TEST 4: one-word property writes: a `set` variable is written, host is not changeable, unknown names are NOT_FOUND and not kept
--- config
location /t {
    set $v "original";
    access_by_lua_block {
        require("apisix_like").access("testbed",
            "prop_set_raw=v:new;prop_set_raw=host:evil.example;prop_set_raw=no_such_var:x;prop_set_raw=http_x_made:1;prop_set_raw=arg_a:2;prop=no_such_var;prop=v")
    }
    content_by_lua_block { ngx.say("v=", ngx.var.v, " host=", ngx.var.host, " arg_a=", ngx.var.arg_a) }
}
--- request
GET /t?a=1
--- response_body
v=new host=localhost arg_a=1
--- grep_error_log eval
qr/prop(_set_raw)? [a-z_]+=\w+/
--- grep_error_log_out
prop_set_raw v=Ok
prop_set_raw host=InternalFailure
prop_set_raw no_such_var=NotFound
prop_set_raw http_x_made=NotFound
prop_set_raw arg_a=NotFound
prop no_such_var=NONE
prop v=new
--- error_log
nginx variable "host" is not changeable
--- no_error_log
[error]

=== TEST 5: request body chunk: start at or past its end, or size 0, is BAD_ARGUMENT; inside it is read (size clipped, u32::MAX = to the end)
--- config
location /t {
    access_by_lua_block {
        require("apisix_like").request_body("testbed",
            "req_body_at=end:4;req_body_at=end+1:4;req_body_at=0:0;req_body_at=0:3;req_body_at=6:100;req_body_at=4:max")
    }
    content_by_lua_block { ngx.say("ok") }
}
--- request
POST /t
hello body
--- response_body
ok
--- grep_error_log eval
qr/req_body_at \S+ size=\d+ -> \w+ \[[^\]]*\]/
--- grep_error_log_out
req_body_at end:4 size=10 -> BadArgument []
req_body_at end+1:4 size=10 -> BadArgument []
req_body_at 0:0 size=10 -> BadArgument []
req_body_at 0:3 size=10 -> Ok [hel]
req_body_at 6:100 size=10 -> Ok [body]
req_body_at 4:max size=10 -> Ok [o body]

=== TEST 6: response body chunks: the same answers; an empty chunk (the flush's, the last) is NOT_FOUND
--- config
location /t {
    body_filter_by_lua_block { require("apisix_like").body_filter("testbed", "resp_body_at=end:1;resp_body_at=0:0;resp_body_at=1:3") }
    content_by_lua_block { ngx.print("first"); ngx.flush(true); ngx.print("second") }
}
--- request
GET /t
--- response_body chomp
firstsecond
--- grep_error_log eval
qr/resp_body_at \S+ size=\d+ -> \w+ \[[^\]]*\]/
--- grep_error_log_out
resp_body_at end:1 size=5 -> BadArgument []
resp_body_at 0:0 size=5 -> BadArgument []
resp_body_at 1:3 size=5 -> Ok [irs]
resp_body_at end:1 size=0 -> NotFound []
resp_body_at 0:0 size=0 -> NotFound []
resp_body_at 1:3 size=0 -> NotFound []
resp_body_at end:1 size=6 -> BadArgument []
resp_body_at 0:0 size=6 -> BadArgument []
resp_body_at 1:3 size=6 -> Ok [eco]
resp_body_at end:1 size=0 -> NotFound []
resp_body_at 0:0 size=0 -> NotFound []
resp_body_at 1:3 size=0 -> NotFound []
