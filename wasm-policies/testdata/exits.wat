;; exits is a WASI command module whose _start ends with proc_exit, as a Go
;; guest built without -buildmode=c-shared does when main returns: the
;; instance is gone once _start is done, so it can never decide.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $proc_exit (i32.const 0)))
  (func (export "handle_request") (result i64) (i64.const 1)))
