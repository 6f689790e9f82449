# nginx-conf/lua-apisix.conf: the file as shipped passes `nginx -t` with Debian's
# lua-nginx-module, and its http{} contents (read by the preprocessor, as in t/024-examples.t)
# serve requests through the plugin from Lua.
use lib 't/lib';
use Test::Nginx::Socket;
use ProxyWasmLua;
use ExampleConf;
use Cwd ();

my $filters = $ENV{TEST_NGINX_FILTERS};
my ($st, $out) = ExampleConf::nginx_t("lua-apisix.conf",
    "modules/ngx_http_proxy_wasm_module.so" => $ENV{TEST_NGINX_WASM_MODULE} // '',
    "filters" => $filters,
    "lua/resty/proxy-wasm.lua" => Cwd::abs_path("lib/resty/proxy-wasm.lua"));
Test::More::is($st, 0, "nginx-conf/lua-apisix.conf passes nginx -t") or Test::More::diag($out);

no_root_location();

add_block_preprocessor(sub {
    my $block = shift;
    my ($http, $config) = ExampleConf::split("lua-apisix.conf", $filters);
    # The suite's own lua_package_path (set by ProxyWasmLua) finds the library; the file's
    # wasm_vm line is kept.
    $http =~ s/^\s*lua_package_path[^\n]*\n//m or die "no lua_package_path in lua-apisix.conf";
    $block->set_value("http_config", "# no wasm_vm\n$http");
    $block->set_value("config", $config);
});

run_tests();

__DATA__

=== TEST 1: lua-apisix.conf: a request goes through the plugin (x-hello added in header_filter)
--- request
GET /
--- response_body
hello from nginx
--- response_headers_like
x-hello: from proxy-wasm, context \d+
--- error_log eval
[qr/\[notice\] .*"wasm_vm wasmtime" is served by wasmer/,
 qr/hello filter: requests with header "x-block" are blocked/]
--- no_error_log
[error]
[crit]
[alert]
[emerg]



=== TEST 2: lua-apisix.conf: the plugin answers 403 from the access phase
--- request
GET /
--- more_headers
X-Block: 1
--- error_code: 403
--- response_body
blocked by the hello filter
--- response_headers
x-blocked-by: hello-filter
