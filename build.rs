//! Links the cdylib -Bsymbolic (see main), and turns what nginx-sys learnt about the nginx tree (DEP_NGINX_*) into cfgs:
//! `ngx_feature = "..."` for configure-time features (ssl, http_v2, ...) and
//! `ngx_linked_headers` for nginx >= 1.23.0, where repeated headers (Cookie,
//! X-Forwarded-For) are chained through ngx_table_elt_t.next instead of arrays.
//! DEP_* variables reach direct dependents only, hence nginx-sys in [dependencies].
fn main() {
    // Both modules (.so files) carry the same runtime and nginx loads them RTLD_GLOBAL: each
    // must bind its own symbols to its own definitions, never to the other .so's copy.
    println!("cargo::rustc-cdylib-link-arg=-Wl,-Bsymbolic");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES_CHECK");
    println!(
        "cargo::rustc-check-cfg=cfg(ngx_feature, values({}))",
        std::env::var("DEP_NGINX_FEATURES_CHECK").unwrap_or("any()".to_string())
    );
    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES");
    if let Ok(features) = std::env::var("DEP_NGINX_FEATURES") {
        for feature in features.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            println!("cargo::rustc-cfg=ngx_feature=\"{feature}\"");
        }
    }
    println!("cargo::rustc-check-cfg=cfg(ngx_linked_headers)");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    let version: u64 = std::env::var("DEP_NGINX_VERSION_NUMBER").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    if version >= 1_023_000 {
        println!("cargo::rustc-cfg=ngx_linked_headers");
    }
}
