package policies_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	policies "github.com/nocrd/nocrd/wasm-policies"
)

// TestInstrument: every guest nocrd ships or tests with, in WebAssembly
// text and built by Go, still compiles after instrumenting and exports the
// same functions (Load then finds the stop global, or fails), and a guest
// keeps its own globals.
func TestInstrument(t *testing.T) {
	guests := map[string]string{"inject-identity (Go)": goGuest(t, "examples/inject-identity")}
	files, _ := filepath.Glob("testdata/*.wat")
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".wat")
		if name != "start" {
			guests[name] = wat(t, name)
		}
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer rt.Close(ctx)
	for name, path := range guests {
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			out, err := policies.Instrument(in)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) <= len(in) || !bytes.Equal(out[:8], in[:8]) {
				t.Errorf("instrumented %d bytes into %d", len(in), len(out))
			}
			code, err := rt.CompileModule(ctx, out)
			if err != nil {
				t.Fatalf("the instrumented module does not compile: %v", err)
			}
			defer code.Close(ctx)
			before, err := rt.CompileModule(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			defer before.Close(ctx)
			for export, def := range before.ExportedFunctions() {
				if got, ok := code.ExportedFunctions()[export]; !ok || !equalTypes(got.ParamTypes(), def.ParamTypes()) || !equalTypes(got.ResultTypes(), def.ResultTypes()) {
					t.Errorf("export %s changed", export)
				}
			}
		})
	}

	// The guest with globals of its own still counts right.
	h := newHost(t, policies.Options{})
	m := load(t, h, wat(t, "counter"), "", time.Second)
	defer m.Close(ctx)
	if next, err := m.Handle(request("GET", "/"), &policies.Response{}); !next || err != nil {
		t.Errorf("counter: next=%v %v", next, err)
	}
}

func equalTypes(a, b []api.ValueType) bool { return bytes.Equal(a, b) }

// TestInstrumentRenumbers: importing the deadline check moves every
// function the module defines up one index, and each place that names one
// follows (testdata/renumber.wat): the guest reaches every function it
// means to, and a trap's stack trace names the function that trapped.
func TestInstrumentRenumbers(t *testing.T) {
	h := newHost(t, policies.Options{})
	m := load(t, h, wat(t, "renumber", "--debug-names"), "", time.Second)
	defer m.Close(context.Background())
	if next, err := m.Handle(request("GET", "/"), &policies.Response{}); !next || err != nil {
		t.Errorf("GET: next=%v %v, want every function reached", next, err)
	}
	_, err := m.Handle(request("PUT", "/"), &policies.Response{})
	var fe *policies.FaultError
	if !errors.As(err, &fe) || fe.Reason != "trap" || !strings.Contains(err.Error(), ".boom(") {
		t.Errorf("PUT: %v, want a trap in boom", err)
	}
}

// TestInstrumentRefuses: what instrument cannot rewrite safely is an error
// saying why, never a module that would run without a deadline.
func TestInstrumentRefuses(t *testing.T) {
	start, err := os.ReadFile(wat(t, "start"))
	if err != nil {
		t.Fatal(err)
	}
	loop, err := os.ReadFile(wat(t, "loop"))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		wasm []byte
		want string
	}{
		"not wasm":       {[]byte("hello"), "not a WebAssembly 1.0 binary module"},
		"start function": {start, "it has a start function"},
		"truncated":      {loop[:len(loop)-3], "malformed"},
		"unknown opcode": {bytes.Replace(loop, []byte{0x03, 0x40}, []byte{0xf0, 0x40}, 1), "unknown instruction 0xf0"},
	} {
		_, err := policies.Instrument(c.wasm)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

// FuzzInstrument: no input makes instrument panic, what it accepts it can
// read again, and a module wazero compiles still compiles once instrumented
// (renumbered, with its checks).
func FuzzInstrument(f *testing.F) {
	seeds := []string{wat(f, "renumber", "--debug-names")} // with a name section
	for _, name := range []string{"loop", "counter", "readonly", "inject", "recurse", "skiploop", "bomb", "renumber"} {
		seeds = append(seeds, wat(f, name))
	}
	for _, path := range seeds {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer rt.Close(ctx)
	f.Fuzz(func(t *testing.T, wasm []byte) {
		out, err := policies.Instrument(wasm)
		if err != nil {
			return
		}
		if _, err := policies.Instrument(out); err != nil {
			t.Fatalf("instrumented output cannot be read again: %v", err)
		}
		if !plausibleCounts(wasm) {
			return // wazero would allocate for every entry a count promises
		}
		code, err := rt.CompileModule(ctx, wasm)
		if err != nil {
			return
		}
		_ = code.Close(ctx)
		code, err = rt.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("wazero compiles the module but not its instrumented form: %v", err)
		}
		_ = code.Close(ctx)
	})
}

// plausibleCounts reports whether every section of wasm that is a vector
// counts no more entries than it has bytes. wazero makes room for the
// entries a count announces before it reads them, so a fuzzed count of
// hundreds of millions exhausts a fuzzing worker's memory (seen in the
// data section, which instrument does not read).
func plausibleCounts(wasm []byte) bool {
	for rest := wasm[8:]; len(rest) > 0; {
		id := rest[0]
		size, n := binary.Uvarint(rest[1:])
		if n <= 0 || uint64(len(rest)-1-n) < size {
			return false
		}
		payload := rest[1+n : 1+n+int(size)]
		rest = rest[1+n+int(size):]
		switch id {
		case 0, 8: // custom, start
			continue
		case 12: // data count: a number, not a vector
			if count, m := binary.Uvarint(payload); m <= 0 || count > uint64(len(wasm)) {
				return false
			}
			continue
		}
		if count, m := binary.Uvarint(payload); m <= 0 || count > uint64(len(payload)) {
			return false
		}
	}
	return true
}
