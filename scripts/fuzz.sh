#!/usr/bin/env bash
# cargo fuzz on the host core (crates/proxy-wasm-host/fuzz) for a bounded time per target:
#   codec      the header-map codec, header name/value checks, property paths
#   hostcalls  every hostcall with fuzzer-chosen arguments through a WAT plugin
#   shared_store  the shared store (data, queues, metrics) against a model
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET=30]. Longer runs by hand: scripts/fuzz.sh 3600.
# cargo-fuzz is installed if missing; the stable toolchain runs it with RUSTC_BOOTSTRAP=1
# (cargo fuzz passes -Zsanitizer=address). A crash leaves its input in fuzz/artifacts/<target>/:
# turn it into a regression test in crates/proxy-wasm-host/tests/.
set -euo pipefail
cd "$(dirname "$0")/../crates/proxy-wasm-host/fuzz"
SECS=${1:-30}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked || {
    echo "fuzz: cannot install cargo-fuzz" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1
# wasmer handles its own signals (wasm traps); let ASan leave them to it.
export ASAN_OPTIONS=allow_user_segv_handler=1:detect_leaks=1
status=0
for t in codec hostcalls shared_store; do
    echo "== fuzz $t for ${SECS}s"
    log=$(mktemp)
    # wasm traps are wasmer's signals: libFuzzer must not take them over.
    if cargo fuzz run "$t" -- -max_total_time="$SECS" -rss_limit_mb=4096 -print_final_stats=1 \
        -handle_segv=0 -handle_bus=0 -handle_ill=0 -handle_fpe=0 >"$log" 2>&1; then
        grep -E "DONE|^Done|stat::number_of_executed_units" "$log" || true
    else
        echo "fuzz: $t FAILED:"; grep -v "^\s*Compiling" "$log" | tail -40
        status=1
    fi
    rm -f "$log"
done
[ "$status" -eq 0 ] && echo "fuzz: no crash"
exit "$status"
