#!/usr/bin/env bash
# Builds nginx 1.28.3 and the module, then starts nginx on 127.0.0.1:8080 with
# nginx-conf/nginx.conf and the example filter (t/filters/hello), or with another example of
# nginx-conf/ given as argument (authz.conf, ratelimit.conf, rewrite.conf). Stop it with
#   build/nginx-1.28/objs/nginx -p build/example/ -s stop
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
bash scripts/setup.sh
bash scripts/build-filters.sh >/dev/null
bash scripts/build-module.sh nginx-1.28
CONF=${1:-nginx.conf}
[ -f "nginx-conf/$CONF" ] || { echo "run-example: no nginx-conf/$CONF" >&2; exit 1; }
case "$CONF" in lua-*) echo "run-example: $CONF needs Debian's nginx with lua-nginx-module (see its comments)" >&2; exit 1;; esac
P=$ROOT/build/example
mkdir -p "$P/conf" "$P/logs" "$P/modules" "$P/filters" "$P/html"
cp "nginx-conf/$CONF" "$P/conf/nginx.conf"
cp build/out/nginx-1.28/ngx_http_proxy_wasm_module.so "$P/modules/"
cp t/filters/out/hello.wasm t/filters/out/examples_*.wasm "$P/filters/"
echo "hello from nginx" > "$P/html/index.html"
NGINX=$ROOT/build/nginx-1.28/objs/nginx
[ -f "$P/logs/nginx.pid" ] && "$NGINX" -p "$P/" -s stop 2>/dev/null && sleep 1 || true
# As root, workers would run as nobody and could not read a clone under a directory only root
# can enter (e.g. /root): run them as root there.
G=(); [ "$(id -u)" -eq 0 ] && G=(-g "user root;")
"$NGINX" -p "$P/" -c conf/nginx.conf "${G[@]}" -t
"$NGINX" -p "$P/" -c conf/nginx.conf "${G[@]}"
sleep 0.5
echo
if [ "$CONF" = nginx.conf ]; then
    curl -si http://127.0.0.1:8080/ | head -8
else
    grep '^#   ' "nginx-conf/$CONF" # the example's own usage lines
fi
echo
echo "nginx is running on http://127.0.0.1:8080 (prefix $P)"
echo "stop it with: $NGINX -p $P/ -s stop"
