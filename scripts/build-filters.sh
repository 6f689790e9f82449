#!/usr/bin/env bash
# Builds the test filters (t/filters, Rust proxy-wasm SDK) for wasm32-wasip1 and copies them,
# with the WAT fixtures of t/filters/wat, into t/filters/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=t/filters/out
mkdir -p "$OUT"
cargo build --release --target wasm32-wasip1 --manifest-path t/filters/Cargo.toml -j"$(nproc)" --quiet
for f in t/filters/target/wasm32-wasip1/release/*.wasm; do
    cp "$f" "$OUT/"
done
cp t/filters/wat/*.wat "$OUT/" 2>/dev/null || true
ls "$OUT"
