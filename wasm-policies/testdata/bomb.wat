;; bomb grows its memory until it cannot, then traps, as a guest that runs
;; out of memory does.
(module
  (memory (export "memory") 1)
  (func (export "handle_request") (result i64)
    (loop $grow
      (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable))
