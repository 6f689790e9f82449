;; A Proxy-Wasm ABI 0.1.0 filter written by hand (no SDK), for t/010-sdk-breadth.t.
;;
;; 0.1.0 specifics exercised: the proxy_abi_version_0_1_0 marker; `malloc` as the only
;; allocator export; proxy_get_configuration(ret_ptr, ret_size) in proxy_on_configure;
;; proxy_on_request_headers / proxy_on_response_headers with TWO params (ctx, num_headers);
;; proxy_get_header_map_value returning OK with an empty value for a missing key.
;;
;;   proxy_on_configure        keeps the plugin configuration (per root context) and logs
;;                             "abi_0_1_0 configured: status=<s> len=<n> config=<configuration>"
;;   proxy_on_request_headers  adds request header x-abi: 0.1.0, reads the missing header
;;                             x-abi-missing and logs "abi_0_1_0 missing header: status=<s> len=<n>"
;;   proxy_on_response_headers adds response header x-abi-config: <configuration of its root>
(module
  (import "env" "proxy_log" (func $proxy_log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_configuration" (func $proxy_get_configuration (param i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $proxy_add_header_map_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value"
    (func $proxy_get_header_map_value (param i32 i32 i32 i32 i32) (result i32)))

  ;; Layout: 0x40/0x44 return slots; 0x100.. constant strings; 0x400 root -> configuration
  ;; table (64 roots x (ptr, len)); 0x800 http context -> root table (256 contexts);
  ;; 0xc00 log line buffer (1 KiB); 0x1000.. malloc heap.
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 0x1000))

  (data (i32.const 0x100) "x-abi")                                   ;; 5
  (data (i32.const 0x108) "0.1.0")                                   ;; 5
  (data (i32.const 0x110) "x-abi-config")                            ;; 12
  (data (i32.const 0x120) "x-abi-missing")                           ;; 13
  (data (i32.const 0x140) "abi_0_1_0 missing header: status=")       ;; 33
  (data (i32.const 0x170) " len=")                                   ;; 5
  (data (i32.const 0x180) "abi_0_1_0 configured: status=")           ;; 29
  (data (i32.const 0x1a0) " config=")                                ;; 8

  (func (export "proxy_abi_version_0_1_0"))

  ;; Bump allocator: 8-byte aligned, grows memory as needed, never frees.
  (func $malloc (export "malloc") (param $size i32) (result i32)
    (local $ptr i32) (local $end i32)
    (local.set $ptr (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (local.set $end (i32.add (local.get $ptr) (local.get $size)))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.eq
              (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
                                               (i32.const 16))
                                    (i32.const 1)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  ;; Copies len bytes from src to dst; returns dst + len.
  (func $copy (param $dst i32) (param $src i32) (param $len i32) (result i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $len)))
        (i32.store8 (local.get $dst) (i32.load8_u (local.get $src)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 1)))
        (local.set $src (i32.add (local.get $src) (i32.const 1)))
        (local.set $len (i32.sub (local.get $len) (i32.const 1)))
        (br $next)))
    (local.get $dst))

  ;; Writes the decimal form of the unsigned value v at dst; returns the end.
  (func $utoa (param $dst i32) (param $v i32) (result i32)
    (local $n i32) (local $t i32) (local $i i32)
    ;; count digits
    (local.set $n (i32.const 1))
    (local.set $t (local.get $v))
    (block $counted
      (loop $more
        (br_if $counted (i32.lt_u (local.get $t) (i32.const 10)))
        (local.set $t (i32.div_u (local.get $t) (i32.const 10)))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $more)))
    ;; write from the last digit back
    (local.set $i (local.get $n))
    (loop $digit
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i32.store8 (i32.add (local.get $dst) (local.get $i))
                  (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (br_if $digit (i32.ne (local.get $i) (i32.const 0))))
    (i32.add (local.get $dst) (local.get $n)))

  ;; Slot addresses of the tables.
  (func $root_slot (param $root i32) (result i32)
    (i32.add (i32.const 0x400) (i32.shl (i32.and (local.get $root) (i32.const 63)) (i32.const 3))))
  (func $ctx_slot (param $ctx i32) (result i32)
    (i32.add (i32.const 0x800) (i32.shl (i32.and (local.get $ctx) (i32.const 255)) (i32.const 2))))

  (func (export "proxy_on_context_create") (param $ctx i32) (param $parent i32)
    (if (i32.ne (local.get $parent) (i32.const 0))
      (then (i32.store (call $ctx_slot (local.get $ctx)) (local.get $parent)))))

  (func (export "proxy_on_vm_start") (param $root i32) (param $vm_config_size i32) (result i32)
    (i32.const 1))

  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (local $status i32) (local $ptr i32) (local $len i32) (local $p i32)
    (i32.store (i32.const 0x40) (i32.const 0))
    (i32.store (i32.const 0x44) (i32.const 0))
    (local.set $status (call $proxy_get_configuration (i32.const 0x40) (i32.const 0x44)))
    (if (i32.eqz (local.get $status))
      (then
        (local.set $ptr (i32.load (i32.const 0x40)))
        (local.set $len (i32.load (i32.const 0x44)))))
    (i32.store (call $root_slot (local.get $root)) (local.get $ptr))
    (i32.store offset=4 (call $root_slot (local.get $root)) (local.get $len))
    ;; "abi_0_1_0 configured: status=<s> len=<n> config=<configuration>" (truncated to 900 bytes)
    (local.set $p (call $copy (i32.const 0xc00) (i32.const 0x180) (i32.const 29)))
    (local.set $p (call $utoa (local.get $p) (local.get $status)))
    (local.set $p (call $copy (local.get $p) (i32.const 0x170) (i32.const 5)))
    (local.set $p (call $utoa (local.get $p) (local.get $len)))
    (local.set $p (call $copy (local.get $p) (i32.const 0x1a0) (i32.const 8)))
    (local.set $p (call $copy (local.get $p) (local.get $ptr)
      (select (local.get $len) (i32.const 900) (i32.lt_u (local.get $len) (i32.const 900)))))
    (drop (call $proxy_log (i32.const 2) (i32.const 0xc00) (i32.sub (local.get $p) (i32.const 0xc00))))
    (i32.const 1))

  ;; 0.1.0: (context_id, num_headers), no end_of_stream.
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $num_headers i32) (result i32)
    (local $status i32) (local $p i32)
    (drop (call $proxy_add_header_map_value (i32.const 0)
      (i32.const 0x100) (i32.const 5) (i32.const 0x108) (i32.const 5)))
    ;; a missing key: 0.1.0 hosts answer OK with an empty value
    (i32.store (i32.const 0x40) (i32.const 0))
    (i32.store (i32.const 0x44) (i32.const 0))
    (local.set $status (call $proxy_get_header_map_value (i32.const 0)
      (i32.const 0x120) (i32.const 13) (i32.const 0x40) (i32.const 0x44)))
    (local.set $p (call $copy (i32.const 0xc00) (i32.const 0x140) (i32.const 33)))
    (local.set $p (call $utoa (local.get $p) (local.get $status)))
    (local.set $p (call $copy (local.get $p) (i32.const 0x170) (i32.const 5)))
    (local.set $p (call $utoa (local.get $p) (i32.load (i32.const 0x44))))
    (drop (call $proxy_log (i32.const 2) (i32.const 0xc00) (i32.sub (local.get $p) (i32.const 0xc00))))
    (i32.const 0))

  ;; 0.1.0: (context_id, num_headers), no end_of_stream.
  (func (export "proxy_on_response_headers") (param $ctx i32) (param $num_headers i32) (result i32)
    (local $slot i32)
    (local.set $slot (call $root_slot (i32.load (call $ctx_slot (local.get $ctx)))))
    (drop (call $proxy_add_header_map_value (i32.const 2)
      (i32.const 0x110) (i32.const 12)
      (i32.load (local.get $slot)) (i32.load offset=4 (local.get $slot))))
    (i32.const 0))
)
