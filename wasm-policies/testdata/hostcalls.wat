;; hostcalls runs the program in its request body, for FuzzHostCalls: a
;; sequence of 21-byte records, an opcode byte and five little-endian i32
;; arguments, each calling one host function with those arguments (the
;; opcode modulo 20, in the order of the table in hostcalls_test.go; the
;; last opcode returns its first argument as handle_request's result). The
;; program is read to offset 32768 and may overwrite itself. After the last
;; record the guest lets the request through.
(module
  (import "http_handler" "enable_features" (func $enable_features (param i32) (result i32)))
  (import "http_handler" "get_config" (func $get_config (param i32 i32) (result i32)))
  (import "http_handler" "log_enabled" (func $log_enabled (param i32) (result i32)))
  (import "http_handler" "log" (func $log (param i32 i32 i32)))
  (import "http_handler" "get_method" (func $get_method (param i32 i32) (result i32)))
  (import "http_handler" "set_method" (func $set_method (param i32 i32)))
  (import "http_handler" "get_uri" (func $get_uri (param i32 i32) (result i32)))
  (import "http_handler" "set_uri" (func $set_uri (param i32 i32)))
  (import "http_handler" "get_protocol_version" (func $get_protocol_version (param i32 i32) (result i32)))
  (import "http_handler" "get_source_addr" (func $get_source_addr (param i32 i32) (result i32)))
  (import "http_handler" "get_header_names" (func $get_header_names (param i32 i32 i32) (result i64)))
  (import "http_handler" "get_header_values" (func $get_header_values (param i32 i32 i32 i32 i32) (result i64)))
  (import "http_handler" "set_header_value" (func $set_header_value (param i32 i32 i32 i32 i32)))
  (import "http_handler" "add_header_value" (func $add_header_value (param i32 i32 i32 i32 i32)))
  (import "http_handler" "remove_header" (func $remove_header (param i32 i32 i32)))
  (import "http_handler" "read_body" (func $read_body (param i32 i32 i32) (result i64)))
  (import "http_handler" "write_body" (func $write_body (param i32 i32 i32)))
  (import "http_handler" "get_status_code" (func $get_status_code (result i32)))
  (import "http_handler" "set_status_code" (func $set_status_code (param i32)))
  (memory (export "memory") 1)

  (func (export "handle_request") (result i64)
    (local $pc i32) (local $end i32) (local $op i32)
    (local $a i32) (local $b i32) (local $c i32) (local $d i32) (local $e i32)
    (local.set $pc (i32.const 32768))
    (local.set $end (i32.add (local.get $pc)
      (i32.wrap_i64 (call $read_body (i32.const 0) (local.get $pc) (i32.const 32768)))))
    (block $done
      (loop $next
        (br_if $done (i32.gt_u (i32.add (local.get $pc) (i32.const 21)) (local.get $end)))
        (local.set $op (i32.rem_u (i32.load8_u (local.get $pc)) (i32.const 20)))
        (local.set $a (i32.load offset=1 (local.get $pc)))
        (local.set $b (i32.load offset=5 (local.get $pc)))
        (local.set $c (i32.load offset=9 (local.get $pc)))
        (local.set $d (i32.load offset=13 (local.get $pc)))
        (local.set $e (i32.load offset=17 (local.get $pc)))
        (local.set $pc (i32.add (local.get $pc) (i32.const 21)))
        (block $op19
         (block $op18
          (block $op17
           (block $op16
            (block $op15
             (block $op14
              (block $op13
               (block $op12
                (block $op11
                 (block $op10
                  (block $op9
                   (block $op8
                    (block $op7
                     (block $op6
                      (block $op5
                       (block $op4
                        (block $op3
                         (block $op2
                          (block $op1
                           (block $op0
                            (br_table $op0 $op1 $op2 $op3 $op4 $op5 $op6 $op7 $op8 $op9 $op10 $op11 $op12 $op13 $op14 $op15 $op16 $op17 $op18 $op19 (local.get $op)))
                           ;; 0: get_method
                           (drop (call $get_method (local.get $a) (local.get $b))) (br $next))
                          ;; 1: set_method
                          (call $set_method (local.get $a) (local.get $b)) (br $next))
                         ;; 2: get_uri
                         (drop (call $get_uri (local.get $a) (local.get $b))) (br $next))
                        ;; 3: set_uri
                        (call $set_uri (local.get $a) (local.get $b)) (br $next))
                       ;; 4: get_header_names
                       (drop (call $get_header_names (local.get $a) (local.get $b) (local.get $c))) (br $next))
                      ;; 5: get_header_values
                      (drop (call $get_header_values (local.get $a) (local.get $b) (local.get $c) (local.get $d) (local.get $e))) (br $next))
                     ;; 6: set_header_value
                     (call $set_header_value (local.get $a) (local.get $b) (local.get $c) (local.get $d) (local.get $e)) (br $next))
                    ;; 7: add_header_value
                    (call $add_header_value (local.get $a) (local.get $b) (local.get $c) (local.get $d) (local.get $e)) (br $next))
                   ;; 8: remove_header
                   (call $remove_header (local.get $a) (local.get $b) (local.get $c)) (br $next))
                  ;; 9: read_body
                  (drop (call $read_body (local.get $a) (local.get $b) (local.get $c))) (br $next))
                 ;; 10: write_body
                 (call $write_body (local.get $a) (local.get $b) (local.get $c)) (br $next))
                ;; 11: get_status_code
                (drop (call $get_status_code)) (br $next))
               ;; 12: set_status_code
               (call $set_status_code (local.get $a)) (br $next))
              ;; 13: get_config
              (drop (call $get_config (local.get $a) (local.get $b))) (br $next))
             ;; 14: log
             (call $log (local.get $a) (local.get $b) (local.get $c)) (br $next))
            ;; 15: log_enabled
            (drop (call $log_enabled (local.get $a))) (br $next))
           ;; 16: get_source_addr
           (drop (call $get_source_addr (local.get $a) (local.get $b))) (br $next))
          ;; 17: enable_features
          (drop (call $enable_features (local.get $a))) (br $next))
         ;; 18: get_protocol_version
         (drop (call $get_protocol_version (local.get $a) (local.get $b))) (br $next))
        ;; 19: return a
        (return (i64.extend_i32_u (local.get $a)))))
    (i64.const 1))

  (func (export "handle_response") (param i32 i32)))
