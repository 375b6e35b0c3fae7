;; counter has globals of its own, a loop that uses one, and a data
;; segment: instrumenting it must change none of that. It counts to 10 in a
;; global and lets the request through only when the count is right.
(module
  (import "http_handler" "set_status_code" (func $set_status_code (param i32)))
  (memory (export "memory") 1)
  (global $base i32 (i32.const 3))
  (global $count (mut i32) (i32.const 0))
  (export "count" (global $count))
  (func (export "handle_request") (result i64)
    (global.set $count (i32.const 0))
    (block $done
      (loop $again
        (br_if $done (i32.ge_u (global.get $count) (i32.add (global.get $base) (i32.const 7))))
        (global.set $count (i32.add (global.get $count) (i32.const 1)))
        (br $again)))
    (if (result i64) (i32.eq (global.get $count) (i32.const 10))
      (then (i64.const 1))
      (else (call $set_status_code (i32.const 500)) (i64.const 0)))))
