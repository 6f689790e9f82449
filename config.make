# Appends the cargo rule for the static library to nginx's objs/Makefile (see config).
ngx_proxy_wasm_features=${NGX_PROXY_WASM_FEATURES:-cranelift}

cat << END                                                       >> $NGX_MAKEFILE

# cargo tracks its own sources: always ask it.
.PHONY: $ngx_proxy_wasm_lib

$ngx_proxy_wasm_lib:
	NGINX_BUILD_DIR="\$(CURDIR)/$NGX_OBJS" ${NGX_CARGO:-cargo} rustc --release --lib \\
		--crate-type staticlib \\
		--manifest-path "$ngx_addon_dir/Cargo.toml" \\
		--no-default-features --features "$ngx_proxy_wasm_features" \\
		--target-dir "$ngx_proxy_wasm_target_dir"

END
