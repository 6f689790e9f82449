#!/usr/bin/env bash
# Prepares build/debian-nginx: a configured copy of Debian's nginx-dev source (/usr/share/nginx/src)
# with Debian's own configure flags, so that a .so built against it loads into /usr/sbin/nginx.
# Only ./configure is needed (bindgen reads objs/Makefile and ngx_auto_config.h). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
TREE=$PWD/build/debian-nginx
# Debian builds stream as a dynamic module (libnginx-mod-stream); nginx-dev's conf_flags omit
# it, so it is added here: the stream .so needs its headers and NGX_STREAM.
STREAM_FLAGS=(--with-stream=dynamic --with-stream_ssl_module --with-stream_ssl_preread_module --with-stream_realip_module)
grep -q '^#define NGX_CONFIGURE .*--with-stream=dynamic' "$TREE/objs/ngx_auto_config.h" 2>/dev/null && { echo "ok: $TREE already configured"; exit 0; }
[ -d /usr/share/nginx/src ] || { echo "nginx-dev is not installed (/usr/share/nginx/src missing)" >&2; exit 1; }
rm -rf "$TREE"; mkdir -p "$(dirname "$TREE")"
cp -a /usr/share/nginx/src "$TREE"
cd "$TREE"
# shellcheck disable=SC1091
. ./conf_flags
./configure --with-cc-opt="-g -O2 -fPIC" --with-ld-opt="-fPIC" "${NGX_CONF_FLAGS[@]}" "${STREAM_FLAGS[@]}" >configure.log 2>&1 \
    || { tail -30 configure.log; exit 1; }
echo "ok: configured $TREE ($(/usr/sbin/nginx -v 2>&1))"
