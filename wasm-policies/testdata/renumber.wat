;; renumber names its functions in every place instrument renumbers when it
;; imports the deadline check, which moves each of them up one index:
;; calls, call_indirect through active and passive element segments, ref.func
;; in code, in a global's initial value and in a declarative segment,
;; exports, and (built with --debug-names) the name section. GET adds up
;; what each path returns and lets the request through only if every one
;; reached its function; any other method runs into $boom, a trap whose
;; stack trace names it.
(module
  (import "http_handler" "get_method" (func $get_method (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (type $ret (func (result i32)))
  (table $t 7 funcref)
  (elem (table $t) (i32.const 0) func $one $two)
  (elem (table $t) (i32.const 5) funcref (ref.func $one) (ref.null func))
  (table $u 1 funcref)
  (elem (table $u) (i32.const 0) func $four)
  (elem declare func $three)
  (elem $passive funcref (ref.func $four) (ref.null func))
  (global $g funcref (ref.func $two))

  (func $one (result i32) (i32.const 1))
  (func $two (result i32) (i32.const 20))
  (func $three (result i32) (i32.const 300))
  (func $four (result i32) (i32.const 4000))
  (func $boom (unreachable))

  (func (export "handle_request") (result i64)
    (drop (call $get_method (i32.const 0) (i32.const 16)))
    (if (i32.ne (i32.load8_u (i32.const 0)) (i32.const 0x47)) ;; "G"
      (then (call $boom)))
    (table.set $t (i32.const 2) (ref.func $three))
    (table.set $t (i32.const 3) (global.get $g))
    (table.init $t $passive (i32.const 4) (i32.const 0) (i32.const 1))
    ;; 1 + 20 + 300 + 20 + 4000 + 1 + 4000 + 1
    (i64.extend_i32_u (i32.eq (i32.const 8343)
      (i32.add
        (i32.add
          (i32.add (call_indirect $t (type $ret) (i32.const 0)) (call_indirect $t (type $ret) (i32.const 1)))
          (i32.add (call_indirect $t (type $ret) (i32.const 2)) (call_indirect $t (type $ret) (i32.const 3))))
        (i32.add
          (i32.add (call_indirect $t (type $ret) (i32.const 4)) (call_indirect $t (type $ret) (i32.const 5)))
          (i32.add (call_indirect $u (type $ret) (i32.const 0)) (call $one)))))))

  (func (export "handle_response") (param i32 i32)))
