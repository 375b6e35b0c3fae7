;; foreign imports a function nocrd does not provide.
(module
  (import "env" "open_socket" (func $open (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle_request") (result i64) (i64.const 1)))
