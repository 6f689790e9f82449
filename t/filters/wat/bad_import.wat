;; A Proxy-Wasm module that imports a hostcall no host provides.
(module
  (import "env" "proxy_does_not_exist" (func $nope (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024)))
