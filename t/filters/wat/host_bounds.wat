;; Host-side allocations a plugin can drive (ABI 0.2.1). The first byte of the plugin
;; configuration picks what on_request_headers does (r: on_configure):
;;   t  table.grow by 2^30 elements (a table without maximum); logs whether it failed
;;   f  fd_write to stderr of 1024 iovecs of 15 MiB each; logs SUCCESS
;;   a  proxy_get_property from an allocator that itself calls proxy_get_property
;;   h  adds 1000-byte request headers until refused; logs whether 1024 were accepted
;;   r  (on_configure) sets distinct root properties until refused; logs whether 256 were
;;   anything else: Continue. Messages are logged at WARN.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_property" (func $set_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (table $t 1 funcref)
  (global $heap (mut i32) (i32.const 65536))
  (global $alloc_nests (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (data (i32.const 1024) "v")
  (data (i32.const 1032) "root properties capped at 256")
  (data (i32.const 1064) "root properties not capped")
  (data (i32.const 1096) "table.grow failed as it should")
  (data (i32.const 1128) "table.grow succeeded past the limit")
  (data (i32.const 1168) "a small table.grow succeeded")
  (data (i32.const 1200) "fd_write flood returned SUCCESS")
  (data (i32.const 1232) "plugin_name")
  (data (i32.const 1248) "outer get_property OK")
  (data (i32.const 1272) "x-flood")
  (data (i32.const 1280) "header edits capped at 1024")
  (data (i32.const 1312) "header edits not capped")
  (data (i32.const 1336) "nested return_bytes refused: INTERNAL_FAILURE")
  (data (i32.const 1384) "nested return_bytes allowed")
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (local $i i32)
    (drop (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 1) (i32.const 512) (i32.const 516)))
    (if (i32.gt_u (i32.load (i32.const 516)) (i32.const 0))
      (then (i32.store8 (i32.add (i32.const 8192) (i32.and (local.get $root) (i32.const 0xff)))
                        (i32.load8_u (i32.load (i32.const 512))))))
    ;; r: sets distinct root-context properties until refused
    (if (i32.eq (i32.load8_u (i32.add (i32.const 8192) (i32.and (local.get $root) (i32.const 0xff)))) (i32.const 114))
      (then
        (i32.store8 (i32.const 4096) (i32.const 112))
        (block $done
          (loop $next
            (i32.store (i32.const 4097) (i32.add (local.get $i) (i32.const 0x01010101)))
            (br_if $done (i32.ne (call $set_property (i32.const 4096) (i32.const 5) (i32.const 1024) (i32.const 1)) (i32.const 0)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $next (i32.lt_u (local.get $i) (i32.const 100000)))))
        (if (i32.eq (local.get $i) (i32.const 256))
          (then (drop (call $log (i32.const 3) (i32.const 1032) (i32.const 29))))
          (else (drop (call $log (i32.const 3) (i32.const 1064) (i32.const 26)))))))
    (i32.const 1))
  (func (export "proxy_on_context_create") (param $ctx i32) (param $root i32)
    (if (i32.ne (local.get $root) (i32.const 0))
      (then
        (i32.store8
          (i32.add (i32.const 12288) (i32.and (local.get $ctx) (i32.const 0xfff)))
          (i32.load8_u (i32.add (i32.const 8192) (i32.and (local.get $root) (i32.const 0xff))))))))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32) (param i32) (result i32)
    (local $mode i32) (local $i i32) (local $st i32)
    (local.set $mode (i32.load8_u (i32.add (i32.const 12288) (i32.and (local.get $ctx) (i32.const 0xfff)))))
    ;; t: table.grow by 2^30 elements (8 GiB of host memory), then by 1000
    (if (i32.eq (local.get $mode) (i32.const 116))
      (then
        (if (i32.eq (table.grow $t (ref.null func) (i32.const 0x40000000)) (i32.const -1))
          (then (drop (call $log (i32.const 3) (i32.const 1096) (i32.const 30))))
          (else (drop (call $log (i32.const 3) (i32.const 1128) (i32.const 35)))))
        (if (i32.ne (table.grow $t (ref.null func) (i32.const 1000)) (i32.const -1))
          (then (drop (call $log (i32.const 3) (i32.const 1168) (i32.const 28)))))))
    ;; f: 16 MiB of memory, then fd_write(stderr) of 1024 iovecs of 15 MiB each (15 GiB)
    (if (i32.eq (local.get $mode) (i32.const 102))
      (then
        (if (i32.lt_u (memory.size) (i32.const 256))
          (then (drop (memory.grow (i32.sub (i32.const 256) (memory.size))))))
        (memory.fill (i32.const 0x100000) (i32.const 65) (i32.const 0xF00000))
        (local.set $i (i32.const 0))
        (loop $iov
          (i32.store (i32.add (i32.const 0x40000) (i32.mul (local.get $i) (i32.const 8))) (i32.const 0x100000))
          (i32.store (i32.add (i32.const 0x40004) (i32.mul (local.get $i) (i32.const 8))) (i32.const 0xF00000))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $iov (i32.lt_u (local.get $i) (i32.const 1024))))
        (if (i32.eqz (call $fd_write (i32.const 2) (i32.const 0x40000) (i32.const 1024) (i32.const 3072)))
          (then (drop (call $log (i32.const 3) (i32.const 1200) (i32.const 31)))))))
    ;; a: a hostcall that returns data, from an allocator that does the same (see below)
    (if (i32.eq (local.get $mode) (i32.const 97))
      (then
        (global.set $alloc_nests (i32.const 1))
        (local.set $st (call $get_property (i32.const 1232) (i32.const 11) (i32.const 528) (i32.const 532)))
        (global.set $alloc_nests (i32.const 0))
        (if (i32.eqz (local.get $st)) (then (drop (call $log (i32.const 3) (i32.const 1248) (i32.const 21)))))))
    ;; h: adds 1000-byte request headers until refused
    (if (i32.eq (local.get $mode) (i32.const 104))
      (then
        (memory.fill (i32.const 0x9000) (i32.const 118) (i32.const 1000))
        (local.set $i (i32.const 0))
        (block $done
          (loop $next
            (br_if $done (i32.ne (call $add_header (i32.const 0) (i32.const 1272) (i32.const 7) (i32.const 0x9000) (i32.const 1000)) (i32.const 0)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $next (i32.lt_u (local.get $i) (i32.const 100000)))))
        (if (i32.eq (local.get $i) (i32.const 1024))
          (then (drop (call $log (i32.const 3) (i32.const 1280) (i32.const 27))))
          (else (drop (call $log (i32.const 3) (i32.const 1312) (i32.const 23)))))))
    (i32.const 0))
  ;; The allocator: while $alloc_nests is set, it first makes a hostcall that returns data,
  ;; which calls this allocator again: without a bound, that recursion never ends.
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (if (global.get $alloc_nests)
      (then
        (if (i32.eq (call $get_property (i32.const 1232) (i32.const 11) (i32.const 520) (i32.const 524)) (i32.const 10))
          (then (drop (call $log (i32.const 3) (i32.const 1336) (i32.const 45))))
          (else (drop (call $log (i32.const 3) (i32.const 1384) (i32.const 27)))))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
)
