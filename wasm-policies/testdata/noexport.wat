;; noexport has memory but no handle_request.
(module
  (memory (export "memory") 1)
  (func (export "handle") (result i64) (i64.const 1)))
