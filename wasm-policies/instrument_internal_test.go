package policies

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestEntryCheck: instrument leaves a function's entry check out only where
// every path to a call of the module's own functions first passes a loop
// head: in leaves, in functions that call only imports, and in functions
// that reach a loop through straight-line code, as Go-built ones do.
func TestEntryCheck(t *testing.T) {
	const prelude = `(import "http_handler" "log" (func $log (param i32 i32 i32)))
	(memory 1) (global $g (mut i32) (i32.const 0)) (table 1 funcref) (type $v (func))
	(func $leaf)`
	for _, c := range []struct {
		name, fn string
		entry    bool
	}{
		{"a leaf with a loop", `(func (loop (br_if 0 (global.get $g))))`, false},
		{"calls only imports", `(func (call $log (i32.const 0) (i32.const 0) (i32.const 0)))`, false},
		{"straight to a loop, as Go builds", `(func $a (local i32) (local.set 0 (global.get $g)) (block (loop (call $a))))`, false},
		{"a call before the loop", `(func (call $leaf) (loop (call $leaf)))`, true},
		{"a branch before the loop", `(func $a (block (br_if 0 (global.get $g)) (loop (call $a))))`, true},
		{"an if before the loop", `(func $a (if (global.get $g) (then (call $a))) (loop))`, true},
		{"recursion without a loop", `(func $a (call $a))`, true},
		{"an indirect call", `(func (call_indirect (type $v) (i32.const 0)))`, true},
		{"a loop that does not start the function", `(func $a (call $a) (block (loop (call $a))))`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "m.wat")
			if err := os.WriteFile(src, []byte("(module "+prelude+"\n"+c.fn+")"), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("wat2wasm", src, "-o", filepath.Join(dir, "m.wasm")).CombinedOutput(); err != nil {
				t.Fatalf("wat2wasm: %v\n%s", err, out)
			}
			in, err := os.ReadFile(filepath.Join(dir, "m.wasm"))
			if err != nil {
				t.Fatal(err)
			}
			out, err := instrument(in)
			if err != nil {
				t.Fatal(err)
			}
			entries := entryChecks(t, out, checkCode(1, 1)) // the import is function 0, the module's own global 0
			if len(entries) != 2 || entries[0] {
				t.Fatalf("entry checks %v, want [false (the leaf) %v]", entries, c.entry)
			}
			if entries[1] != c.entry {
				t.Errorf("entry check %v, want %v", entries[1], c.entry)
			}
		})
	}
}

// entryChecks reports, for each function of the module's code section,
// whether its body starts with check.
func entryChecks(t *testing.T, wasm, check []byte) []bool {
	t.Helper()
	r := reader{b: wasm, off: 8}
	for !r.done() {
		id, payload := r.byte(), r.bytes(r.u32())
		if id != secCode {
			continue
		}
		c := reader{b: payload}
		var got []bool
		for n := c.u32(); n > 0 && c.err == nil; n-- {
			fn := reader{b: c.bytes(c.u32())}
			for groups := fn.u32(); groups > 0; groups-- {
				fn.u32()
				fn.byte()
			}
			got = append(got, bytes.HasPrefix(fn.b[fn.off:], check))
		}
		if c.err != nil {
			t.Fatal(c.err)
		}
		return got
	}
	t.Fatal("no code section")
	return nil
}
