;; A deliberately misbehaving Proxy-Wasm filter (ABI 0.2.1). The first byte of its plugin
;; configuration picks the misbehaviour, the second byte the callback that does it (default:
;; on_request_headers): q request headers, B request body, h response headers, b response
;; body, d on_done, g on_log, x on_delete, k on_tick (ticking every 50 ms), c on_configure,
;; v on_vm_start. In callbacks other than on_request_headers only l and t apply. Modes:
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
  (import "env" "proxy_set_tick_period_milliseconds" (func $set_tick (param i32) (result i32)))
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
      (then
        (i32.store8
          (i32.add (i32.const 12288) (i32.and (local.get $ctx) (i32.const 0xfff)))
          (i32.load8_u (i32.add (i32.const 8192) (i32.and (local.get $root) (i32.const 0xff)))))
        (i32.store8
          (i32.add (i32.const 16384) (i32.and (local.get $ctx) (i32.const 0xfff)))
          (i32.load8_u (i32.add (i32.const 8448) (i32.and (local.get $root) (i32.const 0xff))))))))
  ;; the mode of an HTTP context if it misbehaves in callback `where`, else 0
  (func $mode_in (param $ctx i32) (param $where i32) (result i32)
    (local $w i32)
    (local.set $w (i32.load8_u (i32.add (i32.const 16384) (i32.and (local.get $ctx) (i32.const 0xfff)))))
    (if (i32.eqz (local.get $w)) (then (local.set $w (i32.const 113)))) ;; default q
    (if (result i32) (i32.eq (local.get $w) (local.get $where))
      (then (i32.load8_u (i32.add (i32.const 12288) (i32.and (local.get $ctx) (i32.const 0xfff)))))
      (else (i32.const 0))))
  ;; l loops, t traps
  (func $misbehave (param $mode i32)
    (if (i32.eq (local.get $mode) (i32.const 108)) (then (loop $forever (br $forever))))
    (if (i32.eq (local.get $mode) (i32.const 116)) (then unreachable)))
  (func $root_misbehave (param $root i32) (param $where i32)
    (if (i32.eq (i32.load8_u (i32.add (i32.const 8448) (i32.and (local.get $root) (i32.const 0xff)))) (local.get $where))
      (then (call $misbehave (i32.load8_u (i32.add (i32.const 8192) (i32.and (local.get $root) (i32.const 0xff))))))))
  (func (export "proxy_on_vm_start") (param $root i32) (param i32) (result i32)
    ;; the vm configuration's first two bytes: mode and 'v' make on_vm_start misbehave
    (drop (call $get_buffer (i32.const 6) (i32.const 0) (i32.const 2) (i32.const 512) (i32.const 516)))
    (if (i32.eq (i32.load (i32.const 516)) (i32.const 2))
      (then
        (if (i32.eq (i32.load8_u (i32.add (i32.load (i32.const 512)) (i32.const 1))) (i32.const 118))
          (then (call $misbehave (i32.load8_u (i32.load (i32.const 512))))))))
    (i32.const 1))
  (func (export "proxy_on_configure") (param $ctx i32) (param $size i32) (result i32)
    ;; the configuration lands at the address stored at 512: mode byte, then callback byte
    (drop (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 2) (i32.const 512) (i32.const 516)))
    (if (i32.gt_u (i32.load (i32.const 516)) (i32.const 0))
      (then (i32.store8 (i32.add (i32.const 8192) (i32.and (local.get $ctx) (i32.const 0xff)))
                        (i32.load8_u (i32.load (i32.const 512))))))
    (if (i32.gt_u (i32.load (i32.const 516)) (i32.const 1))
      (then (i32.store8 (i32.add (i32.const 8448) (i32.and (local.get $ctx) (i32.const 0xff)))
                        (i32.load8_u (i32.add (i32.load (i32.const 512)) (i32.const 1))))))
    (call $root_misbehave (local.get $ctx) (i32.const 99)) ;; c
    (if (i32.eq (i32.load8_u (i32.add (i32.const 8448) (i32.and (local.get $ctx) (i32.const 0xff)))) (i32.const 107))
      (then (drop (call $set_tick (i32.const 50)))))
    (i32.const 1))
  (func $say (param $msg i32) (param $len i32)
    (drop (call $log (i32.const 3) (local.get $msg) (local.get $len))))
  (func $recurse (param $n i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get $n) (i32.const 1))) (i32.const 1)))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (local $mode i32)
    (local.set $mode (call $mode_in (local.get $ctx) (i32.const 113)))
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
  (func (export "proxy_on_request_body") (param $ctx i32) (param i32 i32) (result i32)
    (call $misbehave (call $mode_in (local.get $ctx) (i32.const 66))) (i32.const 0)) ;; B
  (func (export "proxy_on_response_headers") (param $ctx i32) (param i32 i32) (result i32)
    (call $misbehave (call $mode_in (local.get $ctx) (i32.const 104))) (i32.const 0)) ;; h
  (func (export "proxy_on_response_body") (param $ctx i32) (param i32 i32) (result i32)
    (call $misbehave (call $mode_in (local.get $ctx) (i32.const 98))) (i32.const 0)) ;; b
  (func (export "proxy_on_done") (param $ctx i32) (result i32)
    (call $misbehave (call $mode_in (local.get $ctx) (i32.const 100))) (i32.const 1)) ;; d
  (func (export "proxy_on_log") (param $ctx i32)
    (call $misbehave (call $mode_in (local.get $ctx) (i32.const 103)))) ;; g
  (func (export "proxy_on_delete") (param $ctx i32)
    (call $misbehave (call $mode_in (local.get $ctx) (i32.const 120)))) ;; x
  (func (export "proxy_on_tick") (param $root i32)
    (call $root_misbehave (local.get $root) (i32.const 107)))) ;; k
