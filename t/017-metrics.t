# Metrics (counter, gauge, histogram) aggregated across workers in shared memory, served in
# the Prometheus text format by `proxy_wasm_metrics`: the plugins' own, and the host's
# per-filter figures (callbacks, failures by kind, restarts, instructions, wall time, memory).
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest 'shared_state';

master_on();    # two workers (and, in 015, a reload) need a master process
workers(2);

sub histogram {
    my ($name, $sum, %at) = @_;    # %at: bucket bound => cumulative count
    my ($out, $c) = ("# TYPE $name histogram\n", 0);
    for my $le (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000,
                200000, 500000, 1000000, '+Inf') {
        $c = $at{$le} if exists $at{$le};
        $out .= "${name}_bucket{le=\"$le\"} $c\n";
    }
    return $out . "${name}_sum $sum\n${name}_count $c\n";
}

# Sends GET requests for @paths on one connection (so one worker serves them all), the last
# one closing it; returns everything read.
sub get {
    my @paths = @_;
    require IO::Socket::INET;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}", Timeout => 5)
        or die "connect: $!";
    for my $i (0 .. $#paths) {
        print $s "GET $paths[$i] HTTP/1.1\r\nHost: localhost\r\n"
            . ($i == $#paths ? "Connection: close\r\n" : "") . "\r\n";
    }
    local $/;
    my $r = <$s>;
    close $s;
    return $r // '';
}

# The value of one series in a scrape (undef if absent).
sub value_of {
    my ($scrape, $series) = @_;
    return $scrape =~ /^\Q$series\E (\S+)$/m ? $1 : undef;
}

run_tests();

__DATA__

=== TEST 1: each of two workers updates a counter, a gauge and a histogram; the scrape shows the sums
--- config
location /t { proxy_wasm shared_state "tick=20"; empty_gif; }
location /metrics { proxy_wasm_metrics; }
--- init
select(undef, undef, undef, 0.8);
--- request
GET /metrics
--- response_headers
Content-Type: text/plain; version=0.0.4
--- response_body eval
"# TYPE ss_numbered counter\nss_numbered 2\n# TYPE ss_gauge gauge\nss_gauge 3\n"
. main::histogram("ss_hist", 30, 10 => 1, 20 => 2)
--- error_log
worker 1 numbered
worker 2 numbered

=== TEST 2: from requests (on either worker): counters only grow, gauges move and are set, get_metric reads, histograms cannot be read
--- config
location /t { proxy_wasm shared_state; empty_gif; }
location /metrics { proxy_wasm_metrics; }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
["x-ops: counter=req.total:1;gauge=g:5",
 "x-ops: counter=req.total:2;counter=req.total:-1;gauge=g:-7",
 "x-ops: hist=lat-ms:3;hist=lat-ms:3000000;metric=lat-ms:hist",
 "x-ops: metric=req.total:counter;metric=g:gauge;gauge_set=g:9;metric=g:gauge",
 ""]
--- response_body eval
["counter req.total: Ok\ngauge g: Ok\n",
 "counter req.total: Ok\ncounter req.total: BadArgument\ngauge g: Ok\n",
 "hist lat-ms: Ok\nhist lat-ms: Ok\nmetric lat-ms: BadArgument\n",
 "metric req.total: 3\nmetric g: -2\ngauge_set g: Ok\nmetric g: 9\n",
 "# TYPE req_total counter\nreq_total 3\n# TYPE g gauge\ng 9\n"
 . main::histogram("lat_ms", 3000003, 5 => 1, '+Inf' => 2)]

=== TEST 3: the metrics location answers GET and HEAD only
--- config
location /metrics { proxy_wasm_metrics; }
--- request
POST /metrics
x
--- error_code: 405

=== TEST 4: without any wasm_module there is no zone: an empty exposition
--- http_config
# no modules
--- config
location /metrics { proxy_wasm_metrics; }
--- request
GET /metrics
--- error_code: 200
--- response_body eval
""

=== TEST 5: per-filter figures: exact callback counts (2 per request, 2 per worker at start), wall-time histogram, memory of both workers' instances, instructions growing
--- http_config
wasm_module lh $TEST_NGINX_FILTERS/local_on_headers.wat;
proxy_wasm_filter_metrics on;
--- config
location /t { proxy_wasm lh "" name=deny; empty_gif; }
location /u { proxy_wasm lh; empty_gif; }
location /metrics { proxy_wasm_metrics; }
--- init
# local_on_headers exports proxy_on_context_create, proxy_on_configure and
# proxy_on_response_headers: each worker's root context runs 2 at start, each request 2.
main::get("/t");
select(undef, undef, undef, 0.3);    # other workers flush every 100 ms
my $a = main::value_of(main::get("/metrics"), 'proxy_wasm_filter_instructions_total{module="lh",filter="deny"}');
main::get("/t", "/t");
select(undef, undef, undef, 0.3);
my $b = main::value_of(main::get("/metrics"), 'proxy_wasm_filter_instructions_total{module="lh",filter="deny"}');
Test::More::ok(defined $a && $a > 0, "instructions counted ($a)");
Test::More::ok(defined $b && $b > $a, "instructions grow with requests ($a -> $b)");
--- request
GET /metrics
--- response_body eval
my $d = 'proxy_wasm_filter_callback_duration_seconds';
my $re = qr/\A# HELP proxy_wasm_filter_callbacks_total .+\n# TYPE proxy_wasm_filter_callbacks_total counter\n/
. qr/proxy_wasm_filter_callbacks_total\{module="lh",filter="deny"\} 10\n/
. qr/proxy_wasm_filter_callbacks_total\{module="lh",filter="nginx\.conf:\d+"\} 4\n/
. qr/# HELP proxy_wasm_filter_instructions_total .+\n# TYPE proxy_wasm_filter_instructions_total counter\n/
. qr/proxy_wasm_filter_instructions_total\{module="lh",filter="deny"\} [1-9]\d*\n/
. qr/proxy_wasm_filter_instructions_total\{module="lh",filter="nginx\.conf:\d+"\} [1-9]\d*\n/
. qr/# HELP $d .+\n# TYPE $d histogram\n/
. qr/${d}_bucket\{module="lh",filter="deny",le="0\.000001"\} \d+\n/
. qr/(?:${d}_bucket\{module="lh",filter="deny",le="[0-9.]+"\} \d+\n){18}/
. qr/${d}_bucket\{module="lh",filter="deny",le="\+Inf"\} 10\n/
. qr/${d}_sum\{module="lh",filter="deny"\} 0\.\d+\n/
. qr/${d}_count\{module="lh",filter="deny"\} 10\n/
. qr/(?s:.*)# HELP proxy_wasm_module_restarts_total .+\n# TYPE proxy_wasm_module_restarts_total counter\n/
. qr/proxy_wasm_module_restarts_total\{module="lh"\} 0\n/
. qr/# HELP proxy_wasm_module_memory_bytes .+\n# TYPE proxy_wasm_module_memory_bytes gauge\n/
. qr/proxy_wasm_module_memory_bytes\{module="lh"\} 131072\n\z/;
qr/$re/

=== TEST 6: failures by kind (trap, cpu_budget, proc_exit, memory) and instance restarts
--- http_config
wasm_module hostile $TEST_NGINX_FILTERS/hostile.wat;
wasm_module exit $TEST_NGINX_FILTERS/exit_on_headers.wat;
wasm_module oob $TEST_NGINX_FILTERS/oob_on_headers.wat;
wasm_max_instructions 1000000;
proxy_wasm_filter_metrics on;
--- config
proxy_wasm_failure_policy closed 503;    # keeps the connection (nginx closes it after a 500)
location /trap { proxy_wasm hostile t name=trap; empty_gif; }
location /loop { proxy_wasm hostile l name=loop; empty_gif; }
location /exit { proxy_wasm exit "" name=exit; empty_gif; }
location /oob { proxy_wasm oob "" name=oob; empty_gif; }
location /metrics { proxy_wasm_metrics; }
--- init
# One connection, one worker: the first trap poisons its hostile instance, each later
# request replaces it (4 restarts: the back-off allows them within a second).
my $r = main::get("/trap", "/trap", "/trap", "/trap", "/loop", "/exit", "/oob");
my $n = () = $r =~ m{HTTP/1.1 503}g;
Test::More::is($n, 7, "7 requests failed closed");
select(undef, undef, undef, 0.3);
--- request
GET /metrics
--- response_body eval
my $re = qr/\A(?=.*^# HELP proxy_wasm_filter_failures_total .+\n# TYPE proxy_wasm_filter_failures_total counter$)/ms
. qr/(?=.*^proxy_wasm_filter_failures_total\{module="hostile",filter="trap",kind="trap"\} 4$)/ms
. qr/(?=.*^proxy_wasm_filter_failures_total\{module="hostile",filter="loop",kind="cpu_budget"\} 1$)/ms
. qr/(?=.*^proxy_wasm_filter_failures_total\{module="exit",filter="exit",kind="proc_exit"\} 1$)/ms
. qr/(?=.*^proxy_wasm_filter_failures_total\{module="oob",filter="oob",kind="memory"\} 1$)/ms
. qr/(?=.*^proxy_wasm_module_restarts_total\{module="hostile"\} 4$)/ms
. qr/(?=.*^proxy_wasm_module_restarts_total\{module="exit"\} 0$)/ms
. qr/(?=.*^proxy_wasm_filter_instructions_total\{module="hostile",filter="loop"\} 1\d{6}$)/ms
. qr/(?!.*module="hostile"[^\n]*kind="memory")(?!.*kind="panic")(?!.*module="oob",filter="oob",kind="trap")/s;
qr/$re/
--- error_log
proxy_on_request_headers failed: unreachable
proc_exit(3)
exceeded its CPU budget

=== TEST 7: proxy_wasm's third argument is name=LABEL only
--- http_config
wasm_module lh $TEST_NGINX_FILTERS/local_on_headers.wat;
--- config
location /t { proxy_wasm lh "" label=x; empty_gif; }
--- must_die
--- error_log
proxy_wasm: invalid third argument "label=x": use name=LABEL

=== TEST 8: proxy_wasm_filter_metrics is off by default: no per-filter series
--- http_config
wasm_module lh $TEST_NGINX_FILTERS/local_on_headers.wat;
--- config
location /t { proxy_wasm lh; empty_gif; }
location /metrics { proxy_wasm_metrics; }
--- request eval
["GET /t", "GET /metrics"]
--- error_code eval
[403, 200]
--- response_body eval
["denied\n", ""]

=== TEST 9: proxy_wasm_filter_metrics off, explicitly; the plugins' metrics are still served
--- http_config
wasm_module shared_state $TEST_NGINX_FILTERS/shared_state.wasm;
proxy_wasm_filter_metrics off;
--- config
location /t { proxy_wasm shared_state; empty_gif; }
location /metrics { proxy_wasm_metrics; }
--- request eval
["GET /t", "GET /metrics"]
--- more_headers eval
["x-ops: counter=c:2", ""]
--- response_body eval
["counter c: Ok\n", "# TYPE c counter\nc 2\n"]

=== TEST 10: across nginx -s reload the counters go on, and the memory gauge counts only the live workers' instances
--- http_config
wasm_module lh $TEST_NGINX_FILTERS/local_on_headers.wat;
proxy_wasm_filter_metrics on;
--- config
location /t { proxy_wasm lh "" name=deny; empty_gif; }
location /metrics { proxy_wasm_metrics; }
--- init
use NginxReload;
main::get("/t", "/t", "/t");
reload_nginx(2);
select(undef, undef, undef, 0.5);    # the old workers exit (nothing keeps them)
--- request
GET /metrics
--- response_body eval
# 2 callbacks per worker at start (old and new workers), 2 per request.
qr/^proxy_wasm_filter_callbacks_total\{module="lh",filter="deny"\} 14\n(?s:.*)^proxy_wasm_module_memory_bytes\{module="lh"\} 131072\n\z/m
--- no_error_log
[error]
[crit]
[alert]
