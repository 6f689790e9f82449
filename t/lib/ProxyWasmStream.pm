# Shared set-up of the ngx-proxy-wasm stream {} suites (like ProxyWasmTest, for L4 filters).
#   TEST_NGINX_STREAM_WASM_MODULE  path of ngx_stream_proxy_wasm_module.so (empty: built in)
#   TEST_NGINX_STREAM_MODULE       nginx's own ngx_stream_module.so, loaded first (empty: built in)
#   TEST_NGINX_WASM_MODULE         the http module .so (optional; loaded when set)
#   TEST_NGINX_FILTERS             directory holding the test filters (stream_testbed.wasm, *.wat)
# `use ProxyWasmStream 'name';` makes `wasm_module name <filters>/name.wasm;` the default
# stream_config instead of stream_testbed.
# The file skips (skip_all) when TEST_NGINX_STREAM_WASM_MODULE is empty and the nginx binary
# has no stream module at all.
# Under openresty/test-nginx, the stream sections need Test::Nginx::Socket::Lua::Stream (and an
# nginx with lua-nginx-module); it is loaded here when present. Our extensions are made
# harmless there: a stream_request array is joined into one string, stream_half_close ignored.
package ProxyWasmStream;
use strict;
use warnings;
use Test::Nginx::Socket ();

sub _nginx_has_stream {
    my $bin = $ENV{TEST_NGINX_BINARY} || 'nginx';
    my $v = `'$bin' -V 2>&1` // '';
    return $v =~ /--with-stream(?:\s|$)/;
}

sub import {
    my (undef, $default, %opt) = @_;
    $default //= 'stream_testbed';
    # stream_config => TEXT: the default stream_config of the file's blocks.
    my $wasm_module = $ENV{TEST_NGINX_STREAM_WASM_MODULE} // '';
    my $stream_module = $ENV{TEST_NGINX_STREAM_MODULE} // '';
    my $http_module = $ENV{TEST_NGINX_WASM_MODULE} // '';
    my $filters = $ENV{TEST_NGINX_FILTERS}
        or die "TEST_NGINX_FILTERS is not set (see README: scripts/test.sh sets it)\n";

    if ($wasm_module eq '' && !_nginx_has_stream()) {
        # `use Test::Nginx::Socket 'no_plan';` came first: a plan is set already
        my $tb = Test::More->builder;
        $tb->reset if defined $tb->has_plan && !$tb->current_test;
        Test::More::plan(skip_all => "no stream support: TEST_NGINX_STREAM_WASM_MODULE is not set"
            . " and " . ($ENV{TEST_NGINX_BINARY} || 'nginx') . " was built without --with-stream"
            . " (set TEST_NGINX_STREAM_WASM_MODULE to ngx_stream_proxy_wasm_module.so, and"
            . " TEST_NGINX_STREAM_MODULE to nginx's ngx_stream_module.so if stream is dynamic)");
        exit 0;
    }

    my $native = $Test::Nginx::Socket::NativeStream;
    if (!$native) {
        # the real Test::Nginx: stream sections come from its Lua::Stream subclass
        eval { require Test::Nginx::Socket::Lua::Stream; 1 }
            or warn "ProxyWasmStream: Test::Nginx::Socket::Lua::Stream not available: $@";
    }

    Test::Nginx::Socket::no_shuffle();
    Test::Nginx::Socket::add_block_preprocessor(sub {
        my $block = shift;
        if (!defined $block->main_config) {
            my @load;
            push @load, "load_module $stream_module;" if $stream_module ne '';
            # the http module only for a block that uses it in http {}
            my $http = ($block->http_config // '') . ($block->config // '');
            push @load, "load_module $http_module;"
                if $http_module ne '' && $http =~ /\b(?:wasm_module|proxy_wasm)\b/;
            push @load, "load_module $wasm_module;" if $wasm_module ne '';
            $block->set_value("main_config", join("\n", @load)) if @load;
        }
        if (!defined $block->stream_config) {
            $block->set_value("stream_config", $opt{stream_config} // "wasm_module $default $filters/$default.wasm;");
        }
        if (!defined $block->no_error_log && !defined $block->must_die && !defined $block->error_log) {
            $block->set_value("no_error_log", "[error]\n[crit]\n[alert]\n[emerg]\nexited on signal");
        }
        if (!$native) {
            my $req = $block->stream_request;
            $block->set_value("stream_request", join('', @$req))
                if ref $req eq 'ARRAY';
        }
    });
}

1;
