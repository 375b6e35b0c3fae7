;; interim answers its instance's first request with 101 Switching
;; Protocols, which is no final answer, and lets any later one through: an
;; instance that answered malformed must never be used again.
(module
  (import "http_handler" "set_status_code" (func $set_status_code (param i32)))
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  (func (export "handle_request") (result i64)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (if (result i64) (i32.gt_u (global.get $calls) (i32.const 1))
      (then (i64.const 1))
      (else
        (call $set_status_code (i32.const 101))
        (i64.const 0)))))
