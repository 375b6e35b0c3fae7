;; command is a WASI command module, as TinyGo's wasi target builds an
;; http-wasm guest: its _start runs main, which installs the handler;
;; until then handle_request runs the SDK's default handler, which lets
;; every request through. Here main's handler refuses everything, so a
;; host that never runs _start lets through what the policy refuses.
(module
  (import "http_handler" "set_status_code" (func $set_status_code (param i32)))
  (import "http_handler" "write_body" (func $write_body (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "refused by main's handler")
  (global $installed (mut i32) (i32.const 0))

  (func (export "_start") (global.set $installed (i32.const 1)))

  (func (export "handle_request") (result i64)
    (if (i32.eqz (global.get $installed))
      (then (return (i64.const 1)))) ;; the SDK's default: next
    (call $set_status_code (i32.const 403))
    (call $write_body (i32.const 1) (i32.const 64) (i32.const 25))
    (i64.const 0)))
