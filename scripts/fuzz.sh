#!/usr/bin/env bash
# cargo fuzz on the host core (crates/proxy-wasm-host/fuzz) for a bounded time per target:
#   codec      the header-map codec, header name/value checks, property paths
#   hostcalls  every hostcall with fuzzer-chosen arguments through a WAT plugin
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
for t in codec hostcalls; do
    echo "== fuzz $t for ${SECS}s"
    cargo fuzz run "$t" -- -max_total_time="$SECS" -rss_limit_mb=4096 -print_final_stats=1 2>&1 \
        | grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|==.*ERROR|SUMMARY|Done)" || true
    # cargo fuzz exits non-zero on a crash; pipefail is off for the grep, so check artifacts.
    if ls "artifacts/$t"/crash-* "artifacts/$t"/leak-* "artifacts/$t"/timeout-* >/dev/null 2>&1; then
        echo "fuzz: $t found a failing input:"; ls "artifacts/$t"; exit 1
    fi
done
echo "fuzz: no crash"
