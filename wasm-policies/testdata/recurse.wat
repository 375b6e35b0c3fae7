;; recurse never decides and has no loop: f(n) calls f(n-1) twice, so
;; f(64) makes 2^64 calls at a depth of 64. Only a check on every call
;; stops it.
(module
  (memory (export "memory") 1)
  (func $f (param $n i32)
    (if (local.get $n)
      (then
        (call $f (i32.sub (local.get $n) (i32.const 1)))
        (call $f (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "handle_request") (result i64)
    (call $f (i32.const 64))
    (i64.const 1)))
