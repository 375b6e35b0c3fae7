;; smuggle tries to add a second header through a value with CRLF.
(module
  (import "http_handler" "set_header_value" (func $set_header_value (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "x-a")
  (data (i32.const 16) "1\r\nx-admin: yes")
  (func (export "handle_request") (result i64)
    (call $set_header_value (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 16) (i32.const 15))
    (i64.const 1)))
