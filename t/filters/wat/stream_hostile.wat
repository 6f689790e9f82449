;; A deliberately misbehaving L4 (stream) Proxy-Wasm filter (ABI 0.2.1). The first byte of its
;; plugin configuration picks the misbehaviour, the second byte the callback that does it:
;;   n on_new_connection   d on_downstream_data   u on_upstream_data
;;   c on_downstream_connection_close             C on_upstream_connection_close
;; Modes:
;;   t  traps (unreachable)
;;   l  loops forever
;;   m  grows memory by 65535 pages (4 GiB; the host should refuse), then loads 8 bytes at
;;      0xfffffffc, past the end of any 32-bit memory (a trap)
;;   anything else (or no configuration): Continue everywhere
;; e.g. "td" traps in on_downstream_data.
(module
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  ;; A root context's mode byte is at 8192 + (root & 0xff), its callback byte at 8448 + ...;
  ;; a stream context copies its root's: mode at 12288 + (id & 0xfff), callback at 16384 + ...
  (func (export "proxy_on_context_create") (param $ctx i32) (param $root i32)
    (if (i32.ne (local.get $root) (i32.const 0))
      (then
        (i32.store8
          (i32.add (i32.const 12288) (i32.and (local.get $ctx) (i32.const 0xfff)))
          (i32.load8_u (i32.add (i32.const 8192) (i32.and (local.get $root) (i32.const 0xff)))))
        (i32.store8
          (i32.add (i32.const 16384) (i32.and (local.get $ctx) (i32.const 0xfff)))
          (i32.load8_u (i32.add (i32.const 8448) (i32.and (local.get $root) (i32.const 0xff))))))))
  (func (export "proxy_on_configure") (param $ctx i32) (param $size i32) (result i32)
    ;; the configuration (buffer 7) lands at the address stored at 512, its size at 516
    (drop (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 2) (i32.const 512) (i32.const 516)))
    (if (i32.gt_u (i32.load (i32.const 516)) (i32.const 0))
      (then (i32.store8 (i32.add (i32.const 8192) (i32.and (local.get $ctx) (i32.const 0xff)))
                        (i32.load8_u (i32.load (i32.const 512))))))
    (if (i32.gt_u (i32.load (i32.const 516)) (i32.const 1))
      (then (i32.store8 (i32.add (i32.const 8448) (i32.and (local.get $ctx) (i32.const 0xff)))
                        (i32.load8_u (i32.add (i32.load (i32.const 512)) (i32.const 1))))))
    (i32.const 1))
  ;; misbehaves if the stream context's callback byte is `where`
  (func $maybe (param $ctx i32) (param $where i32)
    (local $mode i32)
    (if (i32.ne (i32.load8_u (i32.add (i32.const 16384) (i32.and (local.get $ctx) (i32.const 0xfff))))
                (local.get $where))
      (then (return)))
    (local.set $mode (i32.load8_u (i32.add (i32.const 12288) (i32.and (local.get $ctx) (i32.const 0xfff)))))
    (if (i32.eq (local.get $mode) (i32.const 116)) ;; t
      (then unreachable))
    (if (i32.eq (local.get $mode) (i32.const 108)) ;; l
      (then (loop $forever (br $forever))))
    (if (i32.eq (local.get $mode) (i32.const 109)) ;; m
      (then
        (drop (memory.grow (i32.const 65535)))
        (drop (i64.load (i32.const 0xfffffffc))))))
  (func (export "proxy_on_new_connection") (param $ctx i32) (result i32)
    (call $maybe (local.get $ctx) (i32.const 110)) (i32.const 0)) ;; n
  (func (export "proxy_on_downstream_data") (param $ctx i32) (param $len i32) (param $eos i32) (result i32)
    (call $maybe (local.get $ctx) (i32.const 100)) (i32.const 0)) ;; d
  (func (export "proxy_on_upstream_data") (param $ctx i32) (param $len i32) (param $eos i32) (result i32)
    (call $maybe (local.get $ctx) (i32.const 117)) (i32.const 0)) ;; u
  (func (export "proxy_on_downstream_connection_close") (param $ctx i32) (param $peer i32)
    (call $maybe (local.get $ctx) (i32.const 99))) ;; c
  (func (export "proxy_on_upstream_connection_close") (param $ctx i32) (param $peer i32)
    (call $maybe (local.get $ctx) (i32.const 67))) ;; C
  (func (export "proxy_on_done") (param $ctx i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param $ctx i32))
  (func (export "proxy_on_delete") (param $ctx i32)))
