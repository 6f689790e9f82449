# proxy_get_shared_data / proxy_set_shared_data in the shared-memory zone (wasm_shm_size):
# seen across workers, Envoy's CAS semantics, kept across `nginx -s reload`.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest 'shared_state';
use NginxReload;

master_on();    # two workers (and, in 015, a reload) need a master process
workers(2);

run_tests();

__DATA__

=== TEST 1: set, get, CAS: a stale cas gets CAS_MISMATCH, the current one writes, cas 0 always writes
--- config
location /t { proxy_wasm shared_state; empty_gif; }
--- request
GET /t
--- more_headers
x-ops: get=k;set=k:v1;get=k;set=k:v2;setcas=k:v3:last;get=k;setcas=k:v4:last;get=k;set=k:v5;get=k;setcas=new:x:77;get=new
--- response_body
get k: NOT_FOUND
set k: Ok
get k: v1 cas=nonzero
set k: Ok
setcas k: CasMismatch
get k: v2 cas=nonzero
setcas k: Ok
get k: v4 cas=nonzero
set k: Ok
get k: v5 cas=nonzero
setcas new: Ok
get new: x cas=nonzero

=== TEST 2: two workers see the same data: each adds itself to `members` with CAS, then reads what the other wrote
--- config
location /t { proxy_wasm shared_state "tick=20"; empty_gif; }
--- init
select(undef, undef, undef, 0.8);
--- request
GET /t
--- more_headers
x-ops: count=members;get=w1;get=w2
--- response_body
count members: 2
get w1: written by worker 1 cas=nonzero
get w2: written by worker 2 cas=nonzero
--- error_log
worker 1 numbered
worker 2 numbered

=== TEST 3: data survives nginx -s reload (the zone is reused with its contents)
--- config
location /t { proxy_wasm shared_state; empty_gif; }
--- init
my $r = http_get('/t', 'x-ops' => 'set=kept:before reload');
die "set failed: $r" unless $r =~ /set kept: Ok/;
reload_nginx(2);
--- request
GET /t
--- more_headers
x-ops: get=kept
--- response_body
get kept: before reload cas=nonzero
--- error_log
reconfiguring

=== TEST 4: keys are namespaced by vm_id: another module does not see them
--- http_config
wasm_module shared_state $TEST_NGINX_FILTERS/shared_state.wasm;
wasm_module other $TEST_NGINX_FILTERS/shared_state.wasm;
--- config
location /a { proxy_wasm shared_state; empty_gif; }
location /b { proxy_wasm other; empty_gif; }
--- request eval
["GET /a", "GET /b", "GET /a"]
--- more_headers eval
["x-ops: set=k:from a", "x-ops: get=k", "x-ops: get=k"]
--- response_body eval
["set k: Ok\n", "get k: NOT_FOUND\n", "get k: from a cas=nonzero\n"]

=== TEST 5: wasm_shm_size: a bad size fails nginx -t naming the file and line
--- http_config
wasm_shm_size 100k;
wasm_module shared_state $TEST_NGINX_FILTERS/shared_state.wasm;
--- config
location /t { proxy_wasm shared_state; empty_gif; }
--- must_die
--- error_log eval
qr/invalid size "100k" in "wasm_shm_size": use 1m\.\.1g in .*nginx\.conf:\d+/

=== TEST 6: wasm_shm_size 1m: a full zone evicts the least recently written entries, with a warning
--- http_config
wasm_shm_size 1m;
wasm_module shared_state $TEST_NGINX_FILTERS/shared_state.wasm;
--- config
location /t { proxy_wasm shared_state; empty_gif; }
--- request
GET /t
--- more_headers
x-ops: set=first:1;fill=p:40:20000;get=first;count=p0;count=p38;count=p39
--- response_body
set first: Ok
fill p: Ok
get first: NOT_FOUND
count p0: NOT_FOUND
count p38: 1
count p39: 1
--- error_log
shared memory zone full: evicted
--- no_error_log
[error]
