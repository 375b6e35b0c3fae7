;; outofbounds asks the host to write the method past its memory.
(module
  (import "http_handler" "get_method" (func $get_method (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle_request") (result i64)
    (drop (call $get_method (i32.const 65534) (i32.const 16)))
    (i64.const 1)))
