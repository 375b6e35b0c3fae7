package policies

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// TestImmediates: the instruction reader skips exactly the bytes wazero
// reads as an instruction's immediates, typed references included, so
// instrument never takes a byte of an immediate for an instruction (or the
// reverse) and puts a check where wazero would not see one.
func TestImmediates(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []byte // an instruction and its immediates
	}{
		{"block, empty type", []byte{0x02, 0x40}},
		{"loop, i32", []byte{0x03, 0x7f}},
		{"block, exnref", []byte{0x02, 0x69}},
		{"block, a type index", []byte{0x02, 0x80, 0x01}},
		{"block, (ref null 0)", []byte{0x02, 0x63, 0x00}},
		{"loop, (ref 200)", []byte{0x03, 0x64, 0xc8, 0x01}},
		{"if, (ref null func)", []byte{0x04, 0x63, 0x70}},
		{"select t*, typed", []byte{0x1c, 0x02, 0x7f, 0x63, 0xc8, 0x01}},
		{"ref.null func", []byte{0xd0, 0x70}},
		{"ref.null of a type index", []byte{0xd0, 0xc8, 0x01}},
		{"call_ref", []byte{0x14, 0x81, 0x01}},
		{"return_call_ref", []byte{0x15, 0x00}},
		{"ref.as_non_null", []byte{0xd4}},
		{"br_on_null", []byte{0xd5, 0x02}},
		{"br_on_non_null", []byte{0xd6, 0x00}},
		{"try_table", []byte{0x1f, 0x40, 0x02, 0x00, 0x05, 0x01, 0x03, 0x00}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := reader{b: append(slices.Clone(c.in), 0x0b)} // and an end after
			if err := r.immediates(r.byte()); err != nil || r.err != nil {
				t.Fatalf("%v %v", err, r.err)
			}
			if r.off != len(c.in) {
				t.Errorf("read %d bytes, want %d", r.off, len(c.in))
			}
		})
	}
}

// TestValTypeInSections: typed references in the type, import, global
// and element sections are read whole, so the rest of each section is
// read where it starts.
func TestValTypeInSections(t *testing.T) {
	// (type (func (param (ref null 200)) (result i32)))
	types := []byte{0x01, 0x60, 0x01, 0x63, 0xc8, 0x01, 0x01, 0x7f}
	if n, err := countFuncTypes(types); n != 1 || err != nil {
		t.Errorf("type section: %d types, %v", n, err)
	}
	// (import "m" "g" (global (ref null 0))) (import "m" "t" (table 1 (ref 3)))
	imports := []byte{0x02, 0x01, 'm', 0x01, 'g', importGlob, 0x63, 0x00, 0x00, 0x01, 'm', 0x01, 't', importTable, 0x64, 0x03, 0x00, 0x01}
	if f, g, m, err := imported(imports); f != 0 || g != 1 || m != 0 || err != nil {
		t.Errorf("import section: %d funcs, %d globals, %d memories, %v", f, g, m, err)
	}
	re := renumber{imports: 1}
	// (global (ref null 0) (ref.func 1))
	globals := []byte{0x01, 0x63, 0x00, 0x00, 0xd2, 0x01, 0x0b}
	if out, err := re.globals(globals); err != nil || !bytes.Equal(out, []byte{0x01, 0x63, 0x00, 0x00, 0xd2, 0x02, 0x0b}) {
		t.Errorf("global section: % x, %v", out, err)
	}
	// (elem declare (ref null 0) (ref.func 1)): flags 7, a reference type, expressions
	elems := []byte{0x01, 0x07, 0x63, 0x00, 0x01, 0xd2, 0x01, 0x0b}
	if out, err := re.elements(elems); err != nil || !bytes.Equal(out, []byte{0x01, 0x07, 0x63, 0x00, 0x01, 0xd2, 0x02, 0x0b}) {
		t.Errorf("element section: % x, %v", out, err)
	}
	// (table 1 (ref null 0) (ref.func 1)): a table with an initial value
	tables := []byte{0x01, 0x40, 0x00, 0x63, 0x00, 0x00, 0x01, 0xd2, 0x01, 0x0b}
	if out, err := re.tables(tables); err != nil || !bytes.Equal(out, []byte{0x01, 0x40, 0x00, 0x63, 0x00, 0x00, 0x01, 0xd2, 0x02, 0x0b}) {
		t.Errorf("table section: % x, %v", out, err)
	}
}
