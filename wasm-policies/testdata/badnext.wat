;; badnext answers next=7, which the ABI does not define.
(module
  (memory (export "memory") 1)
  (func (export "handle_request") (result i64) (i64.const 7)))
