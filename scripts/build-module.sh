#!/usr/bin/env bash
# Build paths 2 and 3: `NGINX_BUILD_DIR=<configured tree>/objs cargo build --release`.
#   scripts/build-module.sh nginx-1.28   -> build/out/nginx-1.28/ngx_{http,stream}_proxy_wasm_module.so
#   scripts/build-module.sh debian       -> build/out/debian/ngx_{http,stream}_proxy_wasm_module.so
#                                           (load into Debian's /usr/sbin/nginx; the stream one
#                                           after libnginx-mod-stream's ngx_stream_module.so)
# Extra arguments go to cargo (e.g. --features singlepass: see README, Building, for its license).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
name=${1:?usage: build-module.sh nginx-1.28|debian [cargo args]}
shift
case "$name" in
    nginx-1.28) tree=$ROOT/build/nginx-1.28 ;;
    debian) tree=$ROOT/build/debian-nginx ;;
    *) echo "unknown tree $name" >&2; exit 2 ;;
esac
[ -f "$tree/objs/ngx_auto_config.h" ] || { echo "$tree is not configured: run scripts/setup.sh" >&2; exit 1; }
mkdir -p "$ROOT/build/out/$name"
# One build per module (feature http, the default, or stream: see Cargo.toml); both come out
# as target/release/libngx_proxy_wasm.so, copied away in turn.
NGINX_BUILD_DIR=$tree/objs cargo build --release --locked -j"$(nproc)" "$@"
cp target/release/libngx_proxy_wasm.so "$ROOT/build/out/$name/ngx_http_proxy_wasm_module.so"
echo "built build/out/$name/ngx_http_proxy_wasm_module.so"
NGINX_BUILD_DIR=$tree/objs cargo build --release --locked -j"$(nproc)" --no-default-features \
    --features cranelift,module-exports,stream "$@"
cp target/release/libngx_proxy_wasm.so "$ROOT/build/out/$name/ngx_stream_proxy_wasm_module.so"
echo "built build/out/$name/ngx_stream_proxy_wasm_module.so"
