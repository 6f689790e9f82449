# Set-up of the t/lua suites: lua-nginx-module + ngx-proxy-wasm's Lua FFI path, driven the
# way APISIX drives plugins (t/lua/lib/apisix_like.lua).
#   TEST_NGINX_LUA=1             run them (else every t/lua file is skipped: nginx without Lua)
#   TEST_NGINX_LUA_MODULES       load_module paths, ';'-separated (default: Debian's ndk + lua)
#   TEST_NGINX_WASM_MODULE       our .so (empty: built in statically)
#   TEST_NGINX_FILTERS           the test filters
# Use:  use Test::Nginx::Socket;  use ProxyWasmLua;  [ProxyWasmLua::load_by_default(...);]  run_tests();
package ProxyWasmLua;
use strict;
use warnings;
use Cwd ();
use File::Basename ();
use Test::Nginx::Socket ();

sub import {
    if (!$ENV{TEST_NGINX_LUA}) {
        Test::More::plan(skip_all => "TEST_NGINX_LUA is not set (needs nginx with lua-nginx-module)");
    }
    Test::More::plan('no_plan');
    my $root = Cwd::abs_path(File::Basename::dirname(__FILE__) . "/../..");
    $ENV{TEST_NGINX_LUA_LIB} = "$root/lib/?.lua;$root/t/lua/lib/?.lua";
    my $lua_mods = $ENV{TEST_NGINX_LUA_MODULES}
        // "/usr/lib/nginx/modules/ndk_http_module.so;/usr/lib/nginx/modules/ngx_http_lua_module.so";
    my $module = $ENV{TEST_NGINX_WASM_MODULE} // '';
    $ENV{TEST_NGINX_FILTERS} or die "TEST_NGINX_FILTERS is not set\n";
    Test::Nginx::Socket::no_shuffle();
    Test::Nginx::Socket::add_block_preprocessor(sub {
        my $block = shift;
        my @load = map { "load_module $_;" } grep { length } split /;/, $lua_mods;
        push @load, "load_module $module;" if $module ne '';
        $block->set_value("main_config", join("\n", @load, $block->main_config // ''));
        my $http = $block->http_config // '';
        my $vm = $http =~ /# no wasm_vm/ ? '' : "wasm_vm wasmer;\n";
        $block->set_value("http_config",
            "${vm}lua_package_path \"\$TEST_NGINX_LUA_LIB;;\";\n$http");
        if (!defined $block->no_error_log && !defined $block->must_die && !defined $block->error_log) {
            $block->set_value("no_error_log", "[error]\n[crit]\n[alert]\n[emerg]\nexited on signal");
        }
    });
}

# Blocks without an http_config load filter FILE (in TEST_NGINX_FILTERS) as plugin NAME in
# init_worker_by_lua, through t/lua/lib/apisix_like.lua.
sub load_by_default {
    my ($name, $file) = @_;
    Test::Nginx::Socket::add_block_preprocessor(sub {
        my $block = shift;
        $block->set_value("http_config",
            qq{init_worker_by_lua_block { require("apisix_like").load("$name", "\$TEST_NGINX_FILTERS/$file") }})
            unless defined $block->http_config;
    });
}

1;
