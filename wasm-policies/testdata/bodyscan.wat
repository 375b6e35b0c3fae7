;; bodyscan refuses a request whose body starts with "DROP", as a guest
;; that inspects bodies (a WAF rule) would: it reads the request body and
;; lets the request through when it is empty or harmless. A host that
;; cannot give it the body must not make it believe the body is empty.
(module
  (import "http_handler" "read_body" (func $read_body (param i32 i32 i32) (result i64)))
  (import "http_handler" "set_status_code" (func $set_status_code (param i32)))
  (import "http_handler" "write_body" (func $write_body (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "refused body")

  (func (export "handle_request") (result i64)
    (local $len i32)
    (local.set $len (i32.wrap_i64 (call $read_body (i32.const 0) (i32.const 1024) (i32.const 4))))
    ;; "DROP" as a little-endian i32: 0x504f5244
    (if (i32.and (i32.eq (local.get $len) (i32.const 4))
                 (i32.eq (i32.load (i32.const 1024)) (i32.const 0x504f5244)))
      (then
        (call $set_status_code (i32.const 403))
        (call $write_body (i32.const 1) (i32.const 64) (i32.const 12))
        (return (i64.const 0))))
    (i64.const 1)))
