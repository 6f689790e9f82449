#!/usr/bin/env bash
# Prepares build/nginx-1.28: the nginx 1.28.3 source shipped in the nginx-src crate (already in
# Cargo.lock as nginx-sys's optional dependency), copied out of the cargo registry and configured
# with --with-compat (and the stream module built in, for ngx_stream_proxy_wasm_module) so that our .so and the nginx built from it agree on the module signature.
# Then builds objs/nginx (the binary the t/ suite runs). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TREE=$ROOT/build/nginx-1.28
# A tree configured before the stream module was needed (no --with-stream) is rebuilt.
if [ -x "$TREE/objs/nginx" ] && grep -q '^#define NGX_CONFIGURE .*--with-stream ' "$TREE/objs/ngx_auto_config.h" 2>/dev/null; then
    echo "ok: $TREE already built"; exit 0
fi
cargo fetch --locked >/dev/null
VER=$(awk '/^name = "nginx-src"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)
SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"nginx-src-$VER"/nginx 2>/dev/null | head -1)
[ -d "$SRC/auto" ] || { echo "nginx-src crate source not found ($SRC)" >&2; exit 1; }
rm -rf "$TREE"; mkdir -p "$ROOT/build"
cp -a "$SRC" "$TREE"
cd "$TREE"
rm -f Makefile   # the crate ships auto/configure only; a Makefile may be left by a vendored build
auto/configure --with-compat --with-threads --with-debug \
    --with-http_ssl_module --with-http_v2_module --with-http_realip_module --with-http_auth_request_module \
    --with-stream --with-stream_ssl_module --with-stream_ssl_preread_module --with-stream_realip_module \
    --prefix="$TREE/prefix" >configure.log 2>&1 || { tail -30 configure.log; exit 1; }
make -j"$(nproc)" >make.log 2>&1 || { tail -30 make.log; exit 1; }
echo "ok: built $TREE/objs/nginx ($("$TREE/objs/nginx" -v 2>&1))"
