# Appends the cargo rules for the static libraries to nginx's objs/Makefile (see config): one
# build per module (feature http or stream), each copied to its own directory since both are
# libngx_proxy_wasm.a. The stream rule runs after the http one (cargo serializes builds in one
# target directory anyway; the copy must not race the other build's output).
ngx_proxy_wasm_features=${NGX_PROXY_WASM_FEATURES:-cranelift}

cat << END                                                       >> $NGX_MAKEFILE

# cargo tracks its own sources: always ask it.
.PHONY: $ngx_proxy_wasm_lib $ngx_proxy_wasm_stream_lib

$ngx_proxy_wasm_lib:
	NGINX_BUILD_DIR="\$(CURDIR)/$NGX_OBJS" ${NGX_CARGO:-cargo} rustc --release --lib \\
		--crate-type staticlib \\
		--manifest-path "$ngx_addon_dir/Cargo.toml" \\
		--no-default-features --features "$ngx_proxy_wasm_features http" \\
		--target-dir "$ngx_proxy_wasm_target_dir"
	mkdir -p "$ngx_proxy_wasm_target_dir/http"
	cp "$ngx_proxy_wasm_target_dir/release/libngx_proxy_wasm.a" "$ngx_proxy_wasm_lib"

$ngx_proxy_wasm_stream_lib: $ngx_proxy_wasm_lib
	NGINX_BUILD_DIR="\$(CURDIR)/$NGX_OBJS" ${NGX_CARGO:-cargo} rustc --release --lib \\
		--crate-type staticlib \\
		--manifest-path "$ngx_addon_dir/Cargo.toml" \\
		--no-default-features --features "$ngx_proxy_wasm_features stream" \\
		--target-dir "$ngx_proxy_wasm_target_dir"
	mkdir -p "$ngx_proxy_wasm_target_dir/stream"
	cp "$ngx_proxy_wasm_target_dir/release/libngx_proxy_wasm.a" "$ngx_proxy_wasm_stream_lib"

END
