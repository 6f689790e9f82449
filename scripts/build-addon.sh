#!/usr/bin/env bash
# Build path 1: nginx's own build system. Copies the nginx 1.28.3 source into
# build/nginx-1.28-addon, runs `./configure --with-compat --add-dynamic-module=<repo>` (with the
# same flags as build/nginx-1.28, so the .so loads into that nginx) and `make modules`.
# Output: build/nginx-1.28-addon/objs/ngx_http_proxy_wasm_module.so
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SRC=$ROOT/build/nginx-1.28
TREE=$ROOT/build/nginx-1.28-addon
[ -d "$SRC/auto" ] || { echo "run scripts/setup.sh first ($SRC missing)" >&2; exit 1; }
# Reconfigure when config or config.make changed, or other cargo features are asked for
# (NGX_PROXY_WASM_FEATURES): they are written into objs/Makefile's cargo rule.
features=${NGX_PROXY_WASM_FEATURES:-cranelift}
if [ ! -f "$TREE/objs/Makefile" ] || ! grep -q ngx_http_proxy_wasm_module "$TREE/objs/Makefile" \
    || ! grep -qF -- "--features \"$features http\"" "$TREE/objs/Makefile" \
    || [ "$ROOT/config" -nt "$TREE/objs/Makefile" ] || [ "$ROOT/config.make" -nt "$TREE/objs/Makefile" ]; then
    rm -rf "$TREE"; mkdir -p "$TREE"
    # the pristine source only: not the objs/ of the other tree
    (cd "$SRC" && tar cf - --exclude=./objs --exclude=./prefix --exclude=./Makefile --exclude='*.log' .) | (cd "$TREE" && tar xf -)
    cd "$TREE"
    # Share cargo's target dir with the direct builds so that wasmer is compiled once.
    NGX_PROXY_WASM_FEATURES=$features NGX_PROXY_WASM_TARGET_DIR=${NGX_PROXY_WASM_TARGET_DIR:-$ROOT/target} auto/configure --with-compat --with-threads --with-debug \
        --with-http_ssl_module --with-http_v2_module --with-http_realip_module --with-http_auth_request_module \
        --with-stream --with-stream_ssl_module --with-stream_ssl_preread_module --with-stream_realip_module \
        --prefix="$SRC/prefix" --add-dynamic-module="$ROOT" >configure.log 2>&1 \
        || { tail -30 configure.log; exit 1; }
fi
cd "$TREE"
make -j"$(nproc)" modules
ls -la "$TREE/objs/ngx_http_proxy_wasm_module.so" "$TREE/objs/ngx_stream_proxy_wasm_module.so"
