# The engine and the host core against a hostile plugin (issue 12): WebAssembly features the
# host refuses, host-side allocations a plugin drives (tables, fd_write, header edits, root
# properties), an allocator that re-enters the host, and a compile cache that must be
# trusted before its native code runs.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;
use File::Temp ();
use File::Path ();

# wasm_compile_cache directories live outside the server root (which each block wipes), so
# that one block can find what an earlier one stored. A block's `--- pre_setup` Perl code
# runs before its nginx starts (`init` runs after). `--- no_config_test` skips the runner's
# `nginx -t` before the start: that run would already replace a planted artifact, and the
# checks only read what the start logs.
my $cache_root = File::Temp::tempdir('ngx-wasm-019-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $cache_root;
$ENV{TEST_NGINX_CACHE019} = $cache_root;

sub cached_files ($) {
    my $dir = shift;
    opendir my $d, $dir or return ();
    return map { "$dir/$_" } grep { !/^\./ } readdir $d;
}

my $config_test_off = $Test::Nginx::Util::NoConfigTest;
add_block_preprocessor(sub {
    my $block = shift;
    $Test::Nginx::Util::NoConfigTest = defined $block->no_config_test ? 1 : $config_test_off;
    if (defined(my $code = $block->pre_setup)) {
        eval $code;
        die "pre_setup of " . $block->name . ": $@" if $@;
    }
});

run_tests();

__DATA__

=== TEST 1: a shared memory with memory.atomic.wait32 (threads) fails nginx -t, naming the feature and the line
--- http_config
wasm_module shared_wait $TEST_NGINX_FILTERS/shared_wait.wat;
--- config
location /t { proxy_wasm shared_wait; empty_gif; }
--- must_die
--- error_log eval
qr/wasm_module "shared_wait": ".*shared_wait\.wat" uses the WebAssembly feature threads \(shared memory, atomics\), which this host refuses: .* in .*nginx\.conf:\d+/

=== TEST 2: two memories (multi-memory) fail nginx -t, naming the feature and the line
--- http_config
wasm_module two_memories $TEST_NGINX_FILTERS/two_memories.wat;
--- config
location /t { proxy_wasm two_memories; empty_gif; }
--- must_die
--- error_log eval
qr/wasm_module "two_memories": ".*two_memories\.wat" uses the WebAssembly feature multi-memory \(more than one memory\), which this host refuses: .* in .*nginx\.conf:\d+/

=== TEST 3: a refused module fails the same way through wasm_compile_cache (a cached artifact cannot bypass the check)
--- pre_setup
File::Path::remove_tree("$ENV{TEST_NGINX_CACHE019}/refused");
--- http_config
wasm_compile_cache $TEST_NGINX_CACHE019/refused;
wasm_module shared_wait $TEST_NGINX_FILTERS/shared_wait.wat;
--- config
location /t { proxy_wasm shared_wait; empty_gif; }
--- must_die
--- error_log eval
qr/wasm_module "shared_wait": ".*shared_wait\.wat" uses the WebAssembly feature threads .* in .*nginx\.conf:\d+/

=== TEST 4: table.grow by 2^30 elements on a table without maximum returns -1; the worker keeps answering
--- http_config
wasm_module host_bounds $TEST_NGINX_FILTERS/host_bounds.wat;
--- config
location /grow { proxy_wasm host_bounds t; empty_gif; }
location /ok { proxy_wasm host_bounds n; empty_gif; }
--- request eval
["GET /grow", "GET /ok"]
--- error_code eval
[200, 200]
--- timeout: 5
--- error_log
table.grow failed as it should
a small table.grow succeeded
--- no_error_log
table.grow succeeded past the limit
exited on signal
[alert]

=== TEST 5: a table declared larger than the cap fails nginx -t with the limit
--- user_files
>>> big_table.wat
(module
  (memory (export "memory") 1)
  (table 2000000 funcref)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024)))
--- http_config
wasm_module big_table $TEST_NGINX_HTML_DIR/big_table.wat;
--- config
location /t { proxy_wasm big_table; empty_gif; }
--- must_die
--- error_log eval
qr/wasm_module "big_table": ".*big_table\.wat" declares a table of 2000000 elements at start, more than the limit of 1048576 in .*nginx\.conf:\d+/

=== TEST 6: fd_write of 1024 iovecs of 15 MiB at error level: the log line is truncated, the request answers, the worker goes on
--- http_config
wasm_module host_bounds $TEST_NGINX_FILTERS/host_bounds.wat;
--- config
location /flood { proxy_wasm host_bounds f; empty_gif; }
location /ok { proxy_wasm host_bounds n; empty_gif; }
--- request eval
["GET /flood", "GET /ok"]
--- error_code eval
[200, 200]
--- timeout: 5
--- error_log eval
[qr/\[error\] .*AAAAAAAAAAAAAAAA/, "fd_write flood returned SUCCESS"]
--- no_error_log
exited on signal
[alert]

=== TEST 7: the same fd_write while the error level is off copies nothing, and answers
--- http_config
wasm_module host_bounds $TEST_NGINX_FILTERS/host_bounds.wat;
--- config
location /flood { error_log logs/quiet.log crit; proxy_wasm host_bounds f; empty_gif; }
location /ok { proxy_wasm host_bounds n; empty_gif; }
--- request eval
["GET /flood", "GET /ok"]
--- error_code eval
[200, 200]
--- timeout: 5
--- no_error_log
AAAAAAAAAAAAAAAA
exited on signal
[alert]

=== TEST 8: an allocator that calls a data-returning hostcall gets INTERNAL_FAILURE for it, no endless re-entry
--- http_config
wasm_module host_bounds $TEST_NGINX_FILTERS/host_bounds.wat;
--- config
location /nest { proxy_wasm host_bounds a; empty_gif; }
location /ok { proxy_wasm host_bounds n; empty_gif; }
--- request eval
["GET /nest", "GET /ok"]
--- error_code eval
[200, 200]
--- error_log
nested return_bytes refused: INTERNAL_FAILURE
a hostcall made from the plugin's allocator cannot return data
outer get_property OK
--- no_error_log
nested return_bytes allowed
exited on signal
[alert]

=== TEST 9: header edits stop at 1024 per map and context (BAD_ARGUMENT after)
--- http_config
wasm_module host_bounds $TEST_NGINX_FILTERS/host_bounds.wat;
--- config
location /flood { proxy_wasm host_bounds h; empty_gif; }
location /ok { proxy_wasm host_bounds n; empty_gif; }
--- request eval
["GET /flood", "GET /ok"]
--- error_code eval
[200, 200]
--- error_log
header edits capped at 1024
--- no_error_log
header edits not capped
exited on signal
[alert]

=== TEST 10: root-context properties stop at 256 per instance
--- http_config
wasm_module host_bounds $TEST_NGINX_FILTERS/host_bounds.wat;
--- config
location /t { proxy_wasm host_bounds r; empty_gif; }
--- request
GET /t
--- error_code: 200
--- error_log
root properties capped at 256
--- no_error_log
root properties not capped
exited on signal
[alert]

=== TEST 11: a world-writable wasm_compile_cache directory is not used (logged; the module is compiled)
--- pre_setup
File::Path::remove_tree("$ENV{TEST_NGINX_CACHE019}/ww");
mkdir "$ENV{TEST_NGINX_CACHE019}/ww" or die;
chmod 0777, "$ENV{TEST_NGINX_CACHE019}/ww";
--- http_config
wasm_compile_cache $TEST_NGINX_CACHE019/ww;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t { proxy_wasm testbed "resp_add=x-loaded:yes"; empty_gif; }
--- init
my @f = main::cached_files("$ENV{TEST_NGINX_CACHE019}/ww");
Test::More::is(scalar(@f), 0, "nothing stored in a world-writable cache directory");
--- request
GET /t
--- response_headers
x-loaded: yes
--- error_log eval
qr/\[warn\] .*wasm_compile_cache: the cache directory ".*\/ww" is group or world writable \(mode 777\): ignored; ".*testbed\.wasm" compiled without the cache/
--- no_error_log
[error]
[alert]

=== TEST 12: a trusted directory: the master stores one artifact, mode 0644, created by this user
--- pre_setup
File::Path::remove_tree("$ENV{TEST_NGINX_CACHE019}/plant");
--- http_config
wasm_compile_cache $TEST_NGINX_CACHE019/plant;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t { proxy_wasm testbed "resp_add=x-loaded:yes"; empty_gif; }
--- init
my @f = main::cached_files("$ENV{TEST_NGINX_CACHE019}/plant");
Test::More::is(scalar(@f), 1, "one artifact stored");
my @st = stat $f[0];
Test::More::is(sprintf("%o", $st[2] & 07777), "644", "stored with mode 0644");
Test::More::is($st[4], $>, "owned by the master's user");
--- request
GET /t
--- response_headers
x-loaded: yes
--- no_error_log
wasm_compile_cache
[error]

=== TEST 13: a planted world-writable artifact is ignored (logged) and replaced; the module still runs
--- no_config_test
--- pre_setup
my ($f) = main::cached_files("$ENV{TEST_NGINX_CACHE019}/plant");
die "TEST 12 stored no artifact" unless $f;
open my $o, '>', $f or die; print $o "planted native code"; close $o;
chmod 0666, $f;
--- http_config
wasm_compile_cache $TEST_NGINX_CACHE019/plant;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t { proxy_wasm testbed "resp_add=x-loaded:yes"; empty_gif; }
--- init
my ($f) = main::cached_files("$ENV{TEST_NGINX_CACHE019}/plant");
Test::More::is(sprintf("%o", (stat $f)[2] & 07777), "644", "the planted file was replaced");
--- request
GET /t
--- response_headers
x-loaded: yes
--- error_log eval
qr/\[warn\] .*wasm_compile_cache: the cached file ".*\.bin" is group or world writable \(mode 666\): ignored \(replaced by a fresh artifact\)/
--- no_error_log
[error]
[alert]

=== TEST 14: a planted artifact owned by another user is ignored (logged)
--- skip_eval
1: $> != 0
--- no_config_test
--- pre_setup
my ($f) = main::cached_files("$ENV{TEST_NGINX_CACHE019}/plant");
die "TEST 12 stored no artifact" unless $f;
chown 65534, 65534, $f or die "chown: $!";
--- http_config
wasm_compile_cache $TEST_NGINX_CACHE019/plant;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t { proxy_wasm testbed "resp_add=x-loaded:yes"; empty_gif; }
--- request
GET /t
--- response_headers
x-loaded: yes
--- error_log eval
qr/\[warn\] .*wasm_compile_cache: the cached file ".*\.bin" is owned by uid 65534, not by the master's user \(uid 0\): ignored/
--- no_error_log
[error]
[alert]

=== TEST 15: a planted symbolic link is not followed (logged)
--- no_config_test
--- pre_setup
my ($f) = main::cached_files("$ENV{TEST_NGINX_CACHE019}/plant");
die "TEST 12 stored no artifact" unless $f;
unlink $f or die;
symlink "/etc/hostname", $f or die;
--- http_config
wasm_compile_cache $TEST_NGINX_CACHE019/plant;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t { proxy_wasm testbed "resp_add=x-loaded:yes"; empty_gif; }
--- init
my ($f) = main::cached_files("$ENV{TEST_NGINX_CACHE019}/plant");
Test::More::ok(!-l $f, "the link was replaced by a fresh artifact");
--- request
GET /t
--- response_headers
x-loaded: yes
--- error_log eval
qr/\[warn\] .*wasm_compile_cache: the cached file ".*\.bin" is a symbolic link: ignored/
--- no_error_log
[error]
[alert]
