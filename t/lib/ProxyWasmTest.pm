# Shared set-up of the ngx-proxy-wasm suites (works under the real Test::Nginx::Socket too).
#   TEST_NGINX_WASM_MODULE  path of the module .so to load_module (empty: built in statically)
#   TEST_NGINX_FILTERS      directory holding the test filters (testbed.wasm, *.wat)
# `use ProxyWasmTest 'name';` makes `wasm_module name <filters>/name.wasm;` the default
# http_config instead of testbed.
package ProxyWasmTest;
use strict;
use warnings;
use Test::Nginx::Socket ();

sub import {
    my (undef, $default) = @_;
    $default //= 'testbed';
    my $module = $ENV{TEST_NGINX_WASM_MODULE} // '';
    my $filters = $ENV{TEST_NGINX_FILTERS}
        or die "TEST_NGINX_FILTERS is not set (see README: scripts/test.sh sets it)\n";
    Test::Nginx::Socket::no_shuffle();
    Test::Nginx::Socket::add_block_preprocessor(sub {
        my $block = shift;
        if (!defined $block->main_config && $module ne '') {
            $block->set_value("main_config", "load_module $module;");
        }
        if (!defined $block->http_config) {
            $block->set_value("http_config", "wasm_module $default $filters/$default.wasm;");
        }
        if (!defined $block->no_error_log && !defined $block->must_die && !defined $block->error_log) {
            $block->set_value("no_error_log", "[error]\n[crit]\n[alert]\n[emerg]\nexited on signal");
        }
    });
}

1;
