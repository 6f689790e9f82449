;; Returns raw action values, for the Lua-path tests (t/lua/): api7's library loops forever
;; on an on_http return code of 2..99 and crashes on Pause with no pending call; ours must
;; do neither.
;;   proxy_on_request_headers   returns 2 (not Continue, not Pause: AssemblyScript's
;;                              ContinueAndEndStream)
;;   proxy_on_response_headers  returns 1 (Pause) with nothing pending
;;   proxy_on_request_body      returns 7
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 0x1000))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $size) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 2))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 7))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 1))
)
