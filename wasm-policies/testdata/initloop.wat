;; initloop never finishes _initialize: Load must give up on it in time.
(module
  (memory (export "memory") 1)
  (func (export "_initialize") (loop $forever (br $forever)))
  (func (export "handle_request") (result i64) (i64.const 1)))
