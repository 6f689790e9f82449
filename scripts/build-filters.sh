#!/usr/bin/env bash
# Builds the test filters (t/filters, Rust proxy-wasm SDK) for wasm32-wasip1 and copies them,
# with the WAT fixtures of t/filters/wat, into t/filters/out/; then builds the AssemblyScript
# filter (t/filters/assemblyscript, @solo-io/proxy-runtime) into t/filters/out/as_filter.wasm
# (needs node and npm; `npm ci` runs only when node_modules is missing or the lock changed).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=t/filters/out
mkdir -p "$OUT"
cargo build --release --target wasm32-wasip1 --manifest-path t/filters/Cargo.toml -j"$(nproc)" --quiet
for f in t/filters/target/wasm32-wasip1/release/*.wasm; do
    cp "$f" "$OUT/"
done
cp t/filters/wat/*.wat "$OUT/" 2>/dev/null || true

AS_DIR=t/filters/assemblyscript
for tool in node npm; do
    command -v "$tool" >/dev/null || {
        echo "build-filters: '$tool' not found: the AssemblyScript filter ($AS_DIR) needs node and npm" >&2
        echo "build-filters: install them (Debian: apt-get install nodejs npm) and run again" >&2
        exit 1
    }
done
# A copy of the lock that node_modules was installed from tells whether package-lock.json
# changed since.
AS_STAMP="$AS_DIR/node_modules/.ngx-proxy-wasm-lock"
if [ ! -d "$AS_DIR/node_modules" ] || ! cmp -s "$AS_DIR/package-lock.json" "$AS_STAMP"; then
    (cd "$AS_DIR" && npm ci --no-audit --no-fund --loglevel=error) || {
        echo "build-filters: npm ci failed in $AS_DIR" >&2
        exit 1
    }
    cp "$AS_DIR/package-lock.json" "$AS_STAMP"
fi
(cd "$AS_DIR" && node node_modules/assemblyscript/bin/asc assembly/index.ts --config asconfig.json --target release \
    --binaryFile ../out/as_filter.wasm) || {
    echo "build-filters: asc failed to build $AS_DIR" >&2
    exit 1
}
ls "$OUT"
