# Metrics (counter, gauge, histogram) aggregated across workers in shared memory, served in
# the Prometheus text format by `proxy_wasm_metrics`.
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
