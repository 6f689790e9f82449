#!/usr/bin/env bash
# Installs everything a fresh Debian 12 machine needs to build and test ngx-proxy-wasm.
# Idempotent: every step checks before it acts. Says which step failed, and exits non-zero.
#
#   apt packages   : build tools, libclang (bindgen), nginx + nginx-dev (Debian 1.22 build path),
#                    wrk, perl (the t/ runner), curl; lua-nginx-module + ndk + lua-resty-core
#                    (the OpenResty-style stack of the t/lua suites); dpkg-dev + lintian
#                    (scripts/package-deb.sh)
#   python grpcio  : the gRPC test server of the t/ suites (t/lib/grpc_server.py), with pip
#                    (python3-pip from apt if pip is missing; --break-system-packages where
#                    the system python is externally managed, as on Debian 12)
#   rustup target  : wasm32-wasip1 (test filters)
#   nginx 1.28.3   : copied from the nginx-src crate into build/nginx-1.28 and configured
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
step() { printf '\n== setup: %s\n' "$*"; }
fail() { printf '\n!! setup FAILED at step: %s\n' "$*" >&2; exit 1; }

APT_PKGS=(build-essential pkg-config libclang-dev libpcre2-dev zlib1g-dev libssl-dev make gcc
          nginx nginx-dev curl perl wrk openssl valgrind python3
          libnginx-mod-http-lua libnginx-mod-http-ndk lua-resty-core lua-resty-lrucache libnginx-mod-stream
          dpkg-dev lintian)
# node/npm build the AssemblyScript test filter; the machine image usually has them.
command -v npm >/dev/null 2>&1 || APT_PKGS+=(nodejs npm)
# The default CA bundle HTTPS calls verify against (wasm_call_ssl_trusted_certificate).
APT_PKGS+=(ca-certificates)

step "apt packages"
missing=()
for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || fail "apt-get update"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || fail "apt-get install ${missing[*]}"
else
    echo "all present"
fi
# Debian's nginx package may start a service on some machines; we never want one on port 80.
if pgrep -x nginx >/dev/null 2>&1 && [ -f /run/nginx.pid ]; then
    /usr/sbin/nginx -s stop 2>/dev/null || true
fi

step "python3 grpcio (gRPC test server, t/lib/grpc_server.py)"
if ! python3 -c 'import grpc' >/dev/null 2>&1; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq || fail "apt-get update (for python3-pip)"
        apt-get install -y -qq --no-install-recommends python3-pip >/dev/null || fail "apt-get install python3-pip"
    fi
    # Debian 12's system python refuses pip installs (PEP 668) unless told otherwise.
    python3 -m pip install --quiet grpcio 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages grpcio \
        || fail "pip install grpcio"
    python3 -c 'import grpc' >/dev/null 2>&1 || fail "grpcio installed, but python3 cannot import it"
fi
echo "ok: grpcio $(python3 -c 'import grpc; print(grpc.__version__)')"

step "rust toolchain and wasm32-wasip1 target"
command -v cargo >/dev/null || fail "cargo not found (install Rust with rustup first)"
if ! rustup target list --installed | grep -qx wasm32-wasip1; then
    rustup target add wasm32-wasip1 || fail "rustup target add wasm32-wasip1"
fi
echo "ok: $(rustc --version)"

step "nginx 1.28.3 source tree (from the nginx-src crate)"
bash "$ROOT/scripts/nginx-tree.sh" || fail "nginx 1.28 source tree (scripts/nginx-tree.sh)"

step "Debian nginx 1.22.1 configured tree (nginx-dev)"
bash "$ROOT/scripts/debian-tree.sh" || fail "Debian nginx-dev tree (scripts/debian-tree.sh)"

printf '\n== setup: done\n'
