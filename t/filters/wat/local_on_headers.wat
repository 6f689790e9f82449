;; Answers every response locally from proxy_on_response_headers (403, body "denied\n") and
;; exports no body callback, so nginx passes the original body on as it comes (file buffers
;; of a static file included): the host must discard it without reading it.
(module
  (import "env" "proxy_send_local_response"
    (func $send_local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x100) "denied\n")
  (global $heap (mut i32) (i32.const 0x1000))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $size) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    ;; status, details (none), body, headers (an empty map: 4 zero bytes), grpc status -1
    (drop (call $send_local (i32.const 403) (i32.const 0) (i32.const 0)
      (i32.const 0x100) (i32.const 7) (i32.const 0x200) (i32.const 4) (i32.const -1)))
    (i32.const 1))
)
