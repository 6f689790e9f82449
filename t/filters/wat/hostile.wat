;; A deliberately misbehaving Proxy-Wasm filter (ABI 0.2.1). The first byte of its plugin
;; configuration picks what on_request_headers does:
;;   l  loops forever                 r  recurses until the stack is exhausted
;;   t  traps (unreachable)           m  grows memory by 1 GiB (logs whether it failed)
;;   w  passes wild pointers to hostcalls (logs the statuses it got)
;;   d  sends a local response twice (logs the second status)
;;   c  switches to a context that does not exist (logs the status)
;;   anything else: Continue
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (data (i32.const 1024) "memory.grow failed as it should")
  (data (i32.const 1088) "memory.grow succeeded past the limit")
  (data (i32.const 1152) "wild log pointer: INVALID_MEMORY_ACCESS")
  (data (i32.const 1216) "wild header pointer: INVALID_MEMORY_ACCESS")
  (data (i32.const 1280) "second local response: BAD_ARGUMENT")
  (data (i32.const 1344) "unknown context: BAD_ARGUMENT")
  (data (i32.const 1408) "unexpected status")
  (data (i32.const 1472) "denied")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  ;; Modes: a root context's at 8192 + root id, an HTTP context's (its root's) at
  ;; 12288 + (id & 0xfff).
  (func (export "proxy_on_context_create") (param $ctx i32) (param $root i32)
    (if (i32.ne (local.get $root) (i32.const 0))
      (then (i32.store8
              (i32.add (i32.const 12288) (i32.and (local.get $ctx) (i32.const 0xfff)))
              (i32.load8_u (i32.add (i32.const 8192) (i32.and (local.get $root) (i32.const 0xff))))))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param $ctx i32) (param $size i32) (result i32)
    ;; the configuration lands at the address stored at 512; its first byte is the mode
    (drop (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 1) (i32.const 512) (i32.const 516)))
    (if (i32.gt_u (i32.load (i32.const 516)) (i32.const 0))
      (then (i32.store8 (i32.add (i32.const 8192) (i32.and (local.get $ctx) (i32.const 0xff)))
                        (i32.load8_u (i32.load (i32.const 512))))))
    (i32.const 1))
  (func $say (param $msg i32) (param $len i32)
    (drop (call $log (i32.const 3) (local.get $msg) (local.get $len))))
  (func $recurse (param $n i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get $n) (i32.const 1))) (i32.const 1)))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (local $mode i32)
    (local.set $mode (i32.load8_u (i32.add (i32.const 12288) (i32.and (local.get $ctx) (i32.const 0xfff)))))
    (if (i32.eq (local.get $mode) (i32.const 108)) ;; l
      (then (loop $forever (br $forever))))
    (if (i32.eq (local.get $mode) (i32.const 116)) ;; t
      (then unreachable))
    (if (i32.eq (local.get $mode) (i32.const 114)) ;; r
      (then (drop (call $recurse (i32.const 0)))))
    (if (i32.eq (local.get $mode) (i32.const 109)) ;; m
      (then
        (if (i32.eq (memory.grow (i32.const 16384)) (i32.const -1))
          (then (call $say (i32.const 1024) (i32.const 31)))
          (else (call $say (i32.const 1088) (i32.const 36))))))
    (if (i32.eq (local.get $mode) (i32.const 119)) ;; w
      (then
        (if (i32.eq (call $log (i32.const 3) (i32.const 0x7fffff00) (i32.const 4096)) (i32.const 6))
          (then (call $say (i32.const 1152) (i32.const 39)))
          (else (call $say (i32.const 1408) (i32.const 17))))
        (if (i32.eq (call $get_header (i32.const 0) (i32.const -16) (i32.const -1) (i32.const 512) (i32.const 516)) (i32.const 6))
          (then (call $say (i32.const 1216) (i32.const 42)))
          (else (call $say (i32.const 1408) (i32.const 17))))))
    (if (i32.eq (local.get $mode) (i32.const 100)) ;; d
      (then
        (drop (call $local (i32.const 403) (i32.const 0) (i32.const 0) (i32.const 1472) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const -1)))
        (if (i32.eq (call $local (i32.const 500) (i32.const 0) (i32.const 0) (i32.const 1472) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const -1)) (i32.const 2))
          (then (call $say (i32.const 1280) (i32.const 35)))
          (else (call $say (i32.const 1408) (i32.const 17))))
        (return (i32.const 1))))
    (if (i32.eq (local.get $mode) (i32.const 99)) ;; c
      (then
        (if (i32.eq (call $effective (i32.const 999999)) (i32.const 2))
          (then (call $say (i32.const 1344) (i32.const 29)))
          (else (call $say (i32.const 1408) (i32.const 17))))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))
