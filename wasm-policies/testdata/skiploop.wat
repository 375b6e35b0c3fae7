;; skiploop never decides: like recurse, f(n) calls f(n-1) twice, and f
;; opens with a loop that a branch always skips. A loop stands in for the
;; check at a function's entry only when nothing can skip it.
(module
  (memory (export "memory") 1)
  (func $f (param $n i32)
    (block $skip
      (br_if $skip (i32.const 1))
      (loop $never))
    (if (local.get $n)
      (then
        (call $f (i32.sub (local.get $n) (i32.const 1)))
        (call $f (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "handle_request") (result i64)
    (call $f (i32.const 64))
    (i64.const 1)))
