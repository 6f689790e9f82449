# wasm_vm, wasm_module, proxy_wasm: loading, and every configuration error fails `nginx -t`
# with a message that names the file and line.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

run_tests();

__DATA__

=== TEST 1: a module loads and a filter runs
--- http_config
wasm_vm wasmer;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t {
    proxy_wasm testbed "resp_add=x-loaded:yes";
    empty_gif;
}
--- request
GET /t
--- error_code: 200
--- response_headers
x-loaded: yes

=== TEST 2: wasm_vm wasmer cranelift is accepted explicitly
--- http_config
wasm_vm wasmer cranelift;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t { proxy_wasm testbed "resp_add=x-loaded:yes"; empty_gif; }
--- request
GET /t
--- response_headers
x-loaded: yes

=== TEST 3: unknown runtime in wasm_vm: the error lists the accepted names
--- http_config
wasm_vm wasmedge;
--- config
--- must_die
--- error_log eval
qr/unknown wasm runtime "wasmedge" in "wasm_vm": use "wasmer" \(or "wasmtime", which wasmer serves\) in .*nginx\.conf:\d+/

=== TEST 4: unknown compiler in wasm_vm
--- http_config
wasm_vm wasmer llvm;
--- config
--- must_die
--- error_log eval
qr/unknown wasmer compiler "llvm" in "wasm_vm": use "cranelift" or "singlepass" in .*nginx\.conf:\d+/

=== TEST 5: missing .wasm file
--- http_config
wasm_module nope /nonexistent/dir/nope.wasm;
--- config
--- must_die
--- error_log eval
qr/wasm_module "nope": cannot read "\/nonexistent\/dir\/nope\.wasm": No such file or directory .*in .*nginx\.conf:\d+/

=== TEST 6: a file that is not wasm
--- http_config
wasm_module bad $TEST_NGINX_FILTERS/not_wasm.wat;
--- config
--- must_die
--- error_log eval
qr/wasm_module "bad": ".*not_wasm\.wat" is not a valid wasm module: .* in .*nginx\.conf:\d+/

=== TEST 7: no proxy_abi_version export
--- http_config
wasm_module noabi $TEST_NGINX_FILTERS/no_abi.wat;
--- config
--- must_die
--- error_log eval
qr/wasm_module "noabi": ".*no_abi\.wat" exports no proxy_abi_version_\* marker: it is not a Proxy-Wasm module .* in .*nginx\.conf:\d+/

=== TEST 8: an import the host does not provide is named
--- http_config
wasm_module badimp $TEST_NGINX_FILTERS/bad_import.wat;
--- config
--- must_die
--- error_log eval
qr/wasm_module "badimp": ".*bad_import\.wat" imports function env\.proxy_does_not_exist, which this host does not provide in .*nginx\.conf:\d+/

=== TEST 9: proxy_on_vm_start returning false fails the configuration
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm fail;
--- config
location /t { proxy_wasm testbed; empty_gif; }
--- must_die
--- error_log eval
[qr/on_vm_start: refusing to start/,
 qr/wasm_module "testbed": proxy_on_vm_start returned false in .*nginx\.conf:\d+/]

=== TEST 10: proxy_on_configure returning false fails the configuration, naming the proxy_wasm line
--- config
location /t {
    proxy_wasm testbed "configure_fail";
    empty_gif;
}
--- must_die
--- error_log eval
qr/proxy_wasm "testbed": proxy_on_configure returned false \(plugin configuration: "configure_fail"\) in .*nginx\.conf:\d+/

=== TEST 11: proxy_wasm naming an undeclared module
--- config
location /t { proxy_wasm other; empty_gif; }
--- must_die
--- error_log eval
qr/proxy_wasm: unknown module "other": declare it first with "wasm_module other \/path\/to\/filter\.wasm;" in the http block in .*nginx\.conf:\d+/

=== TEST 12: duplicate wasm_module name
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
--- must_die
--- error_log eval
qr/wasm_module "testbed" is already defined in .*nginx\.conf:\d+/

=== TEST 13: wasm_module is not allowed in a location
--- http_config
--- config
location /t { wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm; }
--- must_die
--- error_log eval
qr/"wasm_module" directive is not allowed here in .*nginx\.conf:\d+/

=== TEST 14: the VM configuration reaches on_vm_start
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm my-vm-config;
--- config
location /t { proxy_wasm testbed; empty_gif; }
--- request
GET /t
--- error_code: 200
--- error_log
on_vm_start: vm config "my-vm-config"

=== TEST 15: a module declared but used by no filter still loads (and is checked)
--- http_config
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t { empty_gif; }
--- request
GET /t
--- error_code: 200

=== TEST 16: wasm_vm wasmtime (APISIX's template) asks for the default engine, with a notice
--- http_config
wasm_vm wasmtime;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t { proxy_wasm testbed "resp_add=x-loaded:yes"; empty_gif; }
--- request
GET /t
--- response_headers
x-loaded: yes
--- error_log eval
qr/\[notice\] .*"wasm_vm wasmtime" is served by wasmer with the cranelift compiler: this module has no wasmtime in .*nginx\.conf:\d+/
--- no_error_log
[error]
[crit]
[alert]
[emerg]

=== TEST 17: wasm_vm wasmtime with a second word: the word is ignored, and the notice says so
--- http_config
wasm_vm wasmtime pooling;
wasm_module testbed $TEST_NGINX_FILTERS/testbed.wasm;
--- config
location /t { proxy_wasm testbed "resp_add=x-loaded:yes"; empty_gif; }
--- request
GET /t
--- response_headers
x-loaded: yes
--- error_log eval
qr/\[notice\] .*"wasm_vm wasmtime" is served by wasmer with the cranelift compiler \("pooling" ignored\): this module has no wasmtime in .*nginx\.conf:\d+/
--- no_error_log
[error]
[crit]
[alert]
[emerg]

=== TEST 18: a build without the singlepass compiler (the default build) refuses it, naming the cargo feature
--- skip_eval: 1: $ENV{TEST_NGINX_SINGLEPASS}
--- http_config
wasm_vm wasmer singlepass;
--- config
--- must_die
--- error_log eval
qr/wasm_vm: the singlepass compiler is not built into this module \(cargo feature "singlepass"; see README, Building\) in .*nginx\.conf:\d+/
