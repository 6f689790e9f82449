#!/usr/bin/env bash
# Debian packages of the module, built against the Debian nginx on this machine (build path 3),
# laid out the way Debian's own libnginx-mod-* packages are:
#   build/deb/libnginx-mod-http-proxy-wasm_<version>_<arch>.deb
#       /usr/lib/nginx/modules/ngx_http_proxy_wasm_module.so      (stripped)
#       /usr/share/nginx/modules-available/mod-http-proxy-wasm.conf (the load_module line, enabled
#           by postinst as /etc/nginx/modules-enabled/50-mod-http-proxy-wasm.conf)
#       /usr/share/lua/5.1/resty/proxy-wasm.lua                   (next to lua-resty-core)
#       /usr/share/doc/libnginx-mod-http-proxy-wasm/               (README, copyright, examples)
#   build/deb/libnginx-mod-http-proxy-wasm-dbgsym_<version>_<arch>.deb
#       /usr/lib/debug/.build-id/xx/yyyy.debug                    (the debug info, by build-id)
# Depends on the exact nginx ABI of the tree the module was built against (nginx-abi-...).
# Then runs lintian on both (its report: build/deb/lintian.txt).
#
#   scripts/package-deb.sh                        builds the module first (build-module.sh debian)
#   NGX_PROXY_WASM_SO=<.so> scripts/package-deb.sh   packages that .so (built against nginx-dev)
# Environment: PKG_REVISION (Debian revision, default 1), DEBFULLNAME and DEBEMAIL (Maintainer).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PKG=libnginx-mod-http-proxy-wasm
TREE=$ROOT/build/debian-nginx
OUT=$ROOT/build/deb

if [ -z "${NGX_PROXY_WASM_SO:-}" ]; then
    bash scripts/build-module.sh debian
    NGX_PROXY_WASM_SO=$ROOT/build/out/debian/ngx_http_proxy_wasm_module.so
fi
SO=$NGX_PROXY_WASM_SO
[ -f "$SO" ] || { echo "package-deb: $SO not found" >&2; exit 1; }

# The ABI of the nginx-dev tree the module was built against (Debian's dh_nginx reads the same
# file); the installed nginx must provide it, or the package would not install here.
ABI=$(sed -n 's/^nginx:abi=//p' "$TREE/debian/libnginx-mod.abisubstvars")
[ -n "$ABI" ] || { echo "package-deb: no nginx:abi in $TREE/debian/libnginx-mod.abisubstvars" >&2; exit 1; }
if ! dpkg-query -W -f='${Provides}\n' nginx 2>/dev/null | tr ',' '\n' | grep -qx " *$ABI"; then
    echo "package-deb: warning: the installed nginx does not provide $ABI" >&2
fi

UPSTREAM=$(awk '/^\[package\]/{p=1; next} /^\[/{p=0} p && /^version *=/{gsub(/[" ]/, "", $0); sub(/version=/, ""); print; exit}' Cargo.toml)
VERSION=$UPSTREAM-${PKG_REVISION:-1}
ARCH=$(dpkg --print-architecture)
MAINT="${DEBFULLNAME:-ngx-proxy-wasm maintainers} <${DEBEMAIL:-$(git log -1 --format=%ae 2>/dev/null || echo root@localhost)}>"
# Reproducible: every date and mtime is the last commit's.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
CHANGE_DATE=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

STAGE=$OUT/stage
D=$STAGE/$PKG
G=$STAGE/$PKG-dbgsym
rm -rf "$STAGE"
mkdir -p "$OUT"
rm -f "$OUT/${PKG}"_*.deb "$OUT/${PKG}"-dbgsym_*.deb
DOC=$D/usr/share/doc/$PKG
install -d "$D/DEBIAN" "$D/usr/lib/nginx/modules" "$D/usr/share/nginx/modules-available" \
    "$D/usr/share/lua/5.1/resty" "$DOC/examples" "$G/DEBIAN" "$G/usr/share/doc"

# --- the module: stripped, its debug info split off by build-id (as dh_strip does)
MOD=$D/usr/lib/nginx/modules/ngx_http_proxy_wasm_module.so
BUILD_ID=$(readelf -n "$SO" | sed -n 's/^ *Build ID: *//p')
[ -n "$BUILD_ID" ] || { echo "package-deb: $SO has no GNU build-id note" >&2; exit 1; }
DBG=$G/usr/lib/debug/.build-id/${BUILD_ID:0:2}/${BUILD_ID:2}.debug
install -d "$(dirname "$DBG")"
objcopy --only-keep-debug --compress-debug-sections "$SO" "$DBG"
install -m 0644 "$SO" "$MOD"
strip --remove-section=.comment --remove-section=.note --strip-unneeded "$MOD"
objcopy --add-gnu-debuglink="$DBG" "$MOD"
chmod 0644 "$MOD" "$DBG"

echo "load_module modules/ngx_http_proxy_wasm_module.so;" >"$D/usr/share/nginx/modules-available/mod-http-proxy-wasm.conf"
install -m 0644 lib/resty/proxy-wasm.lua "$D/usr/share/lua/5.1/resty/proxy-wasm.lua"

# --- documentation
gzip -9n -c README.md >"$DOC/README.md.gz"
install -m 0644 scripts/deb/proxy-wasm.conf "$DOC/examples/proxy-wasm.conf"
if [ -f t/filters/out/hello.wasm ]; then
    install -m 0644 t/filters/out/hello.wasm "$DOC/examples/hello.wasm"
fi
printf '%s (%s) unstable; urgency=medium\n\n  * Built by scripts/package-deb.sh from ngx-proxy-wasm commit %s\n    against nginx-dev (%s).\n\n -- %s  %s\n' \
    "$PKG" "$VERSION" "$COMMIT" "$ABI" "$MAINT" "$CHANGE_DATE" | gzip -9n >"$DOC/changelog.Debian.gz"
# The .so links in wasmer and other crates statically: list them, with their licenses.
YEARS=$(git log --format=%ad --date=format:%Y 2>/dev/null | sort -u | sed -n '1p;$p' | paste -sd- | sed 's/^\([0-9]*\)-\1$/\1/')
{
    sed "s/@YEARS@/${YEARS:-$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)}/" scripts/deb/copyright
    echo
    echo "Files: usr/lib/nginx/modules/ngx_http_proxy_wasm_module.so"
    echo "Copyright: ${YEARS:-$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)} the ngx-proxy-wasm authors, and the authors of the crates below"
    echo "License: Apache-2.0"
    echo "Comment: The module links these Rust crates statically (name version: license;"
    echo " the crates of the default cargo features, those build-module.sh builds with)."
    echo " A crate with no license expression has a license file: see the crate."
    cargo tree --locked --offline -e normal,no-proc-macro --prefix none -f '{p}|{l}' \
        | awk -F'|' '{ split($1, a, " "); sub(/ \(\*\)$/, "", $2); print a[1] " " a[2] ": " $2 }' \
        | sort -u | sed 's/: $/: (license file)/; s/^/ /'
    if cargo tree --locked --offline -e normal -i wasmer-compiler-singlepass 2>/dev/null | grep -q singlepass; then
        echo " ."
        echo " wasmer-compiler-singlepass (the singlepass compiler of wasm_vm) is under the"
        echo " Business Source License 1.1 (BUSL-1.1) of Wasmer, Inc.: copying, redistribution"
        echo " and non-production use are granted; production use is granted only to Wasmer"
        echo " sponsors, until four years after each version's release (then MPL-2.0). Build"
        echo " without it: cargo build --no-default-features --features cranelift,module-exports,http."
    fi
} >"$DOC/copyright"
ln -s "$PKG" "$G/usr/share/doc/$PKG-dbgsym"
install -D -m 0644 scripts/deb/lintian-overrides "$D/usr/share/lintian/overrides/$PKG"

# --- maintainer scripts: enable/disable the module like Debian's libnginx-mod-* packages
for s in postinst prerm postrm; do install -m 0755 "scripts/deb/$s" "$D/DEBIAN/$s"; done

# --- control files
SHLIBS=$(
    tmp=$(mktemp -d)
    mkdir "$tmp/debian"
    printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PKG" "$PKG" >"$tmp/debian/control"
    # The module's nginx symbols come from the executable: not a library dependency.
    (cd "$tmp" && dpkg-shlibdeps -O --warnings=0 "$MOD") | sed -n 's/^shlibs:Depends=//p'
    rm -rf "$tmp"
)
size_kb() { du -k -s --apparent-size --exclude=DEBIAN "$1" | cut -f1; }
cat >"$D/DEBIAN/control" <<EOF
Package: $PKG
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINT
Installed-Size: $(size_kb "$D")
Depends: $ABI, $SHLIBS
Recommends: nginx
Suggests: libnginx-mod-http-lua
Section: httpd
Priority: optional
Multi-Arch: foreign
Description: Proxy-Wasm filters for Nginx, on the wasmer runtime
 This module runs Proxy-Wasm plugins (the ABI of Envoy's Wasm filters) in
 Nginx: request and response headers and bodies, local responses, HTTP
 calls, shared data and queues, timers and metrics, with a CPU budget and
 a memory cap per plugin. Plugins are compiled by wasmer (cranelift or
 singlepass) when the configuration is loaded.
 .
 The Lua library resty.proxy-wasm drives plugins from lua-nginx-module the
 way APISIX does.
EOF
cat >"$G/DEBIAN/control" <<EOF
Package: $PKG-dbgsym
Source: $PKG
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINT
Installed-Size: $(size_kb "$G")
Depends: $PKG (= $VERSION)
Section: debug
Priority: optional
Auto-Built-Package: debug-symbols
Build-Ids: $BUILD_ID
Description: debug symbols for $PKG
EOF
(cd "$D" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum >DEBIAN/md5sums)
(cd "$G" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$D/DEBIAN/control" "$D/DEBIAN/md5sums" "$G/DEBIAN/control" "$G/DEBIAN/md5sums"
find "$D" "$G" -type d -exec chmod 0755 {} +
find "$D" "$G" -exec touch --no-dereference -d "@$SOURCE_DATE_EPOCH" {} +

DEB=$OUT/${PKG}_${VERSION}_${ARCH}.deb
DBGDEB=$OUT/${PKG}-dbgsym_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$D" "$DEB" >/dev/null
# The debug sections are compressed already: a fast level saves minutes for little size.
dpkg-deb --root-owner-group -Zxz -z1 --build "$G" "$DBGDEB" >/dev/null
ls -l "$DEB" "$DBGDEB"

if command -v lintian >/dev/null; then
    # Run as root: lintian says so (and warns); its tags are what we read.
    lintian --allow-root --no-tag-display-limit --info "$DEB" "$DBGDEB" >"$OUT/lintian.txt" 2>&1 || true
    echo "lintian ($OUT/lintian.txt):"
    grep -E '^[EWIPX]: ' "$OUT/lintian.txt" | sed 's/^/  /' || echo "  (no tags)"
    if grep -q '^E: ' "$OUT/lintian.txt"; then
        echo; echo "package-deb: lintian reports errors" >&2
        exit 1
    fi
else
    echo "package-deb: lintian is not installed (scripts/setup.sh installs it)" >&2
    exit 1
fi
