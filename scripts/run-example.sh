#!/usr/bin/env bash
# Builds nginx 1.28.3 and the module, then starts nginx on 127.0.0.1:8080 with
# nginx-conf/nginx.conf and the example filter (t/filters/hello). Stop it with
#   build/nginx-1.28/objs/nginx -p build/example/ -s stop
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
bash scripts/setup.sh
bash scripts/build-filters.sh >/dev/null
bash scripts/build-module.sh nginx-1.28
P=$ROOT/build/example
mkdir -p "$P/conf" "$P/logs" "$P/modules" "$P/filters" "$P/html"
cp nginx-conf/nginx.conf "$P/conf/nginx.conf"
cp build/out/nginx-1.28/ngx_http_proxy_wasm_module.so "$P/modules/"
cp t/filters/out/hello.wasm "$P/filters/"
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
curl -si http://127.0.0.1:8080/ | head -8
echo
echo "nginx is running on http://127.0.0.1:8080 (prefix $P)"
echo "stop it with: $NGINX -p $P/ -s stop"
