;; Uses the threads feature, which the host refuses: a shared memory, and
;; memory.atomic.wait32 with an infinite timeout (-1) in on_request_headers. If it ever
;; loaded, the worker would block there forever, out of reach of the CPU budget.
;; Loading it must fail `nginx -t`, naming the feature and the wasm_module line.
(module
  (memory (export "memory") 1 1 shared)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    ;; waits while the word at 0 is 0 (it is), with no timeout
    (drop (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1)))
    (i32.const 0)))
