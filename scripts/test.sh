#!/usr/bin/env bash
# The test command: installs what is missing, builds the module the three ways, and runs
#   1. cargo test of the host core (no nginx),
#   2. the t/ suite against nginx 1.28.3 with the .so files from `cargo build` (build path 2;
#      the http module, and the stream module for t/03x-stream*.t),
#   3. the t/ suite against nginx 1.28.3 with the .so from `./configure --add-dynamic-module`
#      + `make modules` (build path 1, with the singlepass compiler: t/023 runs there),
#   4. the t/ suite against Debian's /usr/sbin/nginx 1.22.1 with the .so built against
#      nginx-dev (build path 3), with t/lua (lua-nginx-module + resty.proxy-wasm) enabled,
#      twice: with the runner's defaults (those of the real Test::Nginx: master_process off,
#      error_log debug, one worker), then with master_process on and two workers,
#   5. reload under load and a 100k-request soak (scripts/reload-under-load, scripts/soak),
#   6. a valgrind leak check (scripts/leak-check) and cargo fuzz on the host core for a
#      bounded time (scripts/fuzz.sh),
#   7. the Debian package: built from the build path 3 module, linted, installed, serving a
#      request through the system nginx, purged (scripts/package-test).
# Ends with one line "tests: N passed, M failed"; exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOGS=$ROOT/build/test-logs
mkdir -p "$LOGS"
passed=0
failed=0
problems=()
failed_logs=()

die() { echo "!! $*" >&2; echo "tests: $passed passed, $((failed + 1)) failed"; exit 1; }
step() { printf '\n===== %s\n' "$*"; }

step "layers of src/ (scripts/check-layers: no upward import, no file over 500 lines without a reason)"
if python3 scripts/check-layers; then passed=$((passed + 1)); else failed=$((failed + 1)); problems+=("scripts/check-layers failed"); fi

step "setup"
bash scripts/setup.sh || die "scripts/setup.sh failed"

step "test filters (wasm32-wasip1)"
bash scripts/build-filters.sh || die "building the test filters failed"

step "cargo test (host core)"
cargo test --release --locked -p proxy-wasm-host 2>&1 | tee "$LOGS/cargo-test.log"
rc=${PIPESTATUS[0]}
while read -r p f; do
    passed=$((passed + p)); failed=$((failed + f))
done < <(sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$LOGS/cargo-test.log")
if [ "$rc" -ne 0 ]; then
    problems+=("cargo test exited $rc")
    grep -q '^test result:' "$LOGS/cargo-test.log" || failed=$((failed + 1))
fi

step "build path 2: cargo build against nginx 1.28.3"
bash scripts/build-module.sh nginx-1.28 || die "build path 2 (cargo build, nginx 1.28) failed"
step "build path 3: cargo build against Debian's nginx-dev 1.22.1"
bash scripts/build-module.sh debian || die "build path 3 (cargo build, Debian nginx-dev) failed"
step "build path 1: ./configure --add-dynamic-module + make modules (nginx 1.28.3)"
# This build also carries the singlepass compiler (not in the default build: see README,
# Building), so that t/023-singlepass.t runs in the addon suite.
NGX_PROXY_WASM_FEATURES="cranelift singlepass" bash scripts/build-addon.sh || die "build path 1 (nginx addon) failed"

# Runs the t/ suite: suite NAME NGINX_BINARY MODULE_SO [LUA [MODE]]; LUA=1 also runs t/lua (the
# nginx can load Debian's lua-nginx-module); otherwise those files skip themselves. The runner's
# defaults are the real Test::Nginx's (master_process off, error_log debug, one worker);
# MODE=master runs with master_process on and two workers instead.
suite() {
    local name=$1 bin=$2 so=$3 lua=${4:-} mode=${5:-single} log="$LOGS/prove-$1.log"
    # The stream module (t/03x-stream*.t) sits next to the http one; nginx's own stream module
    # is a separate .so on Debian (libnginx-mod-stream), built in elsewhere.
    local stream_so=${so%/*}/ngx_stream_proxy_wasm_module.so stream_mod=
    [ "$bin" = /usr/sbin/nginx ] && stream_mod=/usr/lib/nginx/modules/ngx_stream_module.so
    local master=off workers=1
    [ "$mode" = master ] && { master=on; workers=2; }
    step "t/ suite: $name ($("$bin" -v 2>&1 | sed 's/.*: //'), $(basename "$so"), master_process $master, $workers worker(s))"
    TEST_NGINX_SINGLEPASS=${TEST_NGINX_SINGLEPASS:-} TEST_NGINX_LUA=$lua TEST_NGINX_BINARY=$bin TEST_NGINX_WASM_MODULE=$so TEST_NGINX_FILTERS=$ROOT/t/filters/out \
        TEST_NGINX_STREAM_WASM_MODULE=$stream_so TEST_NGINX_STREAM_MODULE=$stream_mod \
        TEST_NGINX_SERVROOT=$ROOT/build/servroot-$name TEST_NGINX_MASTER_PROCESS=$master TEST_NGINX_WORKERS=$workers \
        prove -I t/lib -r t/ 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    local total nf
    total=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' "$log" | tail -1)
    nf=$(grep -c '^#   Failed test' "$log")
    total=${total:-0}
    if [ "$rc" -ne 0 ] && [ "$nf" -eq 0 ]; then nf=1; fi
    passed=$((passed + total - (nf > total ? total : nf)))
    failed=$((failed + nf))
    [ "$rc" -eq 0 ] || problems+=("t/ suite $name: prove exited $rc")
    [ "$rc" -eq 0 ] || failed_logs+=("$log")
}

suite cargo-1.28 "$ROOT/build/nginx-1.28/objs/nginx" "$ROOT/build/out/nginx-1.28/ngx_http_proxy_wasm_module.so"
TEST_NGINX_SINGLEPASS=1 suite addon-1.28 "$ROOT/build/nginx-1.28/objs/nginx" "$ROOT/build/nginx-1.28-addon/objs/ngx_http_proxy_wasm_module.so"
suite debian-1.22 /usr/sbin/nginx "$ROOT/build/out/debian/ngx_http_proxy_wasm_module.so" 1
suite debian-1.22-master /usr/sbin/nginx "$ROOT/build/out/debian/ngx_http_proxy_wasm_module.so" 1 master

# Operational checks on the nginx 1.28 build (they print their figures).
op() {
    local name=$1; shift
    step "$name"
    if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); problems+=("$name failed"); fi
}
op "reload under load (20 s, a reload a second)" python3 scripts/reload-under-load --seconds 20
op "soak (100k requests, worker RSS)" python3 scripts/soak --requests 100000
op "leak check (valgrind memcheck, nginx 1.28 single process)" python3 scripts/leak-check --requests 30
op "fuzz the host core (cargo fuzz, 30 s per target)" bash scripts/fuzz.sh 30
op "Debian package (build, lintian, install, serve, purge)" \
    env NGX_PROXY_WASM_SO="$ROOT/build/out/debian/ngx_http_proxy_wasm_module.so" bash scripts/package-test

echo
# CI keeps only the head and tail of this output: repeat each failed suite's failures here.
for l in "${failed_logs[@]}"; do
    echo "== failures in $l"
    grep -A6 -E '^(not ok|#   Failed test)' "$l" | head -60
    sed -n '/^Test Summary Report/,$p' "$l" | head -20
done
for p in "${problems[@]}"; do echo "!! $p"; done
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ ${#problems[@]} -eq 0 ]
