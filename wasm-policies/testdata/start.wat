;; start has a start function, which would run at instantiation, before
;; any deadline applies; nocrd refuses it.
(module
  (memory (export "memory") 1)
  (func $init)
  (start $init)
  (func (export "handle_request") (result i64) (i64.const 1)))
