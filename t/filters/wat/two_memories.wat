;; Uses the multi-memory feature, which the host refuses: a second memory that
;; on_request_headers grows by 1 GiB, next to the exported one. wasm_max_memory bounds each
;; memory, so N memories would hold N times the cap. Loading it must fail `nginx -t`,
;; naming the feature and the wasm_module line.
(module
  (memory $m (export "memory") 1)
  (memory $extra 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (memory.grow $extra (i32.const 16384)))
    (i32.const 0)))
