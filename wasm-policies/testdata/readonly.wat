;; readonly lets GET and HEAD through and answers anything else with 403.
;; It is written in WebAssembly text to show the ABI needs no SDK, and to
;; measure the host's own cost: one host call to read the method, and for
;; a refusal two more to write the answer.
(module
  (import "http_handler" "get_method" (func $get_method (param i32 i32) (result i32)))
  (import "http_handler" "set_status_code" (func $set_status_code (param i32)))
  (import "http_handler" "write_body" (func $write_body (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "read-only workspace")

  (func (export "handle_request") (result i64)
    (local $len i32)
    (local.set $len (call $get_method (i32.const 0) (i32.const 16)))
    ;; "GET": 0x47 0x45 0x54; "HEAD": 0x48 0x45 0x41 0x44
    (if (i32.and (i32.eq (local.get $len) (i32.const 3))
                 (i32.eq (i32.load (i32.const 0)) (i32.or (i32.and (i32.load (i32.const 0)) (i32.const 0xff000000)) (i32.const 0x544547))))
      (then (return (i64.const 1))))
    (if (i32.and (i32.eq (local.get $len) (i32.const 4))
                 (i32.eq (i32.load (i32.const 0)) (i32.const 0x44414548)))
      (then (return (i64.const 1))))
    (call $set_status_code (i32.const 403))
    (call $write_body (i32.const 1) (i32.const 64) (i32.const 19))
    (i64.const 0))

  (func (export "handle_response") (param i32 i32)))
