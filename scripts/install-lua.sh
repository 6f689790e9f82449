#!/usr/bin/env bash
# Installs the Lua side of the module: lib/resty/proxy-wasm.lua (`require("resty.proxy-wasm")`)
# into a Lua module directory (default /usr/local/share/lua/5.1, on LuaJIT's default path;
# OpenResty: /usr/local/openresty/lualib; APISIX: see README "OpenResty / APISIX").
#   scripts/install-lua.sh [LUA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/usr/local/share/lua/5.1}
install -D -m 0644 lib/resty/proxy-wasm.lua "$dir/resty/proxy-wasm.lua"
echo "installed $dir/resty/proxy-wasm.lua"
