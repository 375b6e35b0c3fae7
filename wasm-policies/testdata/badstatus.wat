;; badstatus stops the request with a status that is not one.
(module
  (import "http_handler" "set_status_code" (func $set_status_code (param i32)))
  (memory (export "memory") 1)
  (func (export "handle_request") (result i64)
    (call $set_status_code (i32.const 999))
    (i64.const 0)))
