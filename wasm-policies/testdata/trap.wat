;; trap fails every decision.
(module
  (memory (export "memory") 1)
  (func (export "handle_request") (result i64) unreachable))
