;; inject sets the request header x-policy: <config> and lets it through.
(module
  (import "http_handler" "get_config" (func $get_config (param i32 i32) (result i32)))
  (import "http_handler" "set_header_value" (func $set_header_value (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "x-policy")
  (func (export "handle_request") (result i64)
    (local $len i32)
    (local.set $len (call $get_config (i32.const 64) (i32.const 256)))
    (call $set_header_value (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 64) (local.get $len))
    (i64.const 1)))
