# The example configurations of nginx-conf/: each file as shipped passes `nginx -t` (its
# filter loaded and configured), and each serves requests doing what it says. The blocks below
# run the file's own http{} contents (read from nginx-conf/ by the preprocessor: the server
# listening on 8080 becomes the test server, ports 8081 and 8082 become free ports), so an
# edit to an example is tested as it is written.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;
use ExampleConf;

my $filters = $ENV{TEST_NGINX_FILTERS};

# Each file as shipped passes nginx -t, in a prefix holding modules/ and filters/ as the
# examples' comments describe.
for my $ex (qw(nginx.conf authz.conf ratelimit.conf rewrite.conf)) {
    my ($st, $out) = ExampleConf::nginx_t($ex,
        "modules/ngx_http_proxy_wasm_module.so" => $ENV{TEST_NGINX_WASM_MODULE} // '',
        "filters" => $filters);
    Test::More::is($st, 0, "nginx-conf/$ex passes nginx -t") or Test::More::diag($out);
}

# The examples' own `location /` replaces the test server's.
no_root_location();

add_block_preprocessor(sub {
    my $block = shift;
    my $ex = $block->example or return;
    my ($http, $config) = ExampleConf::split($ex, $filters);
    if (defined(my $edit = $block->edit)) {
        # A test-only change of the file's parameters (said in the block's description).
        my ($from, $to) = split /\s*=>\s*/, $edit;
        $config =~ s/\Q$from\E/$to/ or die "edit: '$from' not found in $ex";
    }
    $block->set_value("http_config", $http);
    $block->set_value("config", $config);
});

run_tests();

__DATA__

=== TEST 1: authz.conf: a request the authorization service accepts reaches the app
--- example: authz.conf
--- request
GET /api/orders
--- more_headers
Authorization: Bearer good
--- error_code: 200
--- response_body
app: GET /api/orders



=== TEST 2: authz.conf: without credentials, or with wrong ones, 403 and the app is not reached
--- example: authz.conf
--- request eval
["GET /api/orders", "GET /api/orders"]
--- more_headers eval
["", "Authorization: Bearer bad"]
--- error_code eval
[403, 403]
--- response_body eval
["forbidden\n", "forbidden\n"]
--- error_log
authz: denied (auth service answered 401)
--- no_error_log
[error]
[crit]
[alert]
[emerg]



=== TEST 3: ratelimit.conf: requests past the limit get 429 (limit 3 and a one-day window here, so that no window ends mid-test)
--- example: ratelimit.conf
--- edit: "10 60" => "3 86400"
--- request eval
["GET /", "GET /", "GET /", "GET /", "GET /"]
--- error_code eval
[200, 200, 200, 429, 429]
--- response_headers eval
["", "", "", "retry-after: 86400", "retry-after: 86400"]
--- error_log
ratelimit: 127.0.0.1 over the limit (4 > 3)
ratelimit: 127.0.0.1 over the limit (5 > 3)
--- no_error_log
[error]
[crit]
[alert]
[emerg]



=== TEST 4: ratelimit.conf as shipped: ten requests pass
--- example: ratelimit.conf
--- request eval
[("GET /") x 10]
--- error_code eval
[(200) x 10]



=== TEST 5: rewrite.conf: the app's internal address is replaced in the body, which goes out chunked
--- example: rewrite.conf
--- request
GET /docs/index
--- error_code: 200
--- response_headers
Transfer-Encoding: chunked
!Content-Length
--- response_body
see https://www.example.com/docs and https://www.example.com/faq
