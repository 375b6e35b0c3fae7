package policies

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkInstantiate is the cost of one new instance of a compiled module
// (paid when the pool grows, never per request) and the linear memory it
// starts with.
func BenchmarkInstantiate(b *testing.B) {
	dir := b.TempDir()
	wat := filepath.Join(dir, "readonly.wasm")
	if out, err := exec.Command("wat2wasm", "testdata/readonly.wat", "-o", wat).CombinedOutput(); err != nil {
		b.Fatalf("wat2wasm: %v\n%s", err, out)
	}
	gow := filepath.Join(dir, "inject-identity.wasm")
	build := exec.Command("go", "build", "-buildmode=c-shared", "-o", gow, "./examples/inject-identity")
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build guest: %v\n%s", err, out)
	}
	for _, g := range []struct{ name, path string }{{"WAT", wat}, {"Go", gow}} {
		b.Run(g.name, func(b *testing.B) {
			ctx := context.Background()
			h, err := NewHost(ctx, Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close(ctx)
			m, err := h.Load(ctx, g.path, nil, time.Second)
			if err != nil {
				b.Fatal(err)
			}
			var mem uint32
			b.ReportAllocs()
			for b.Loop() {
				inst, err := m.instantiate(ctx)
				if err != nil {
					b.Fatal(err)
				}
				mem = inst.mod.Memory().Size()
				m.made++ // discard counts it down
				m.discard(inst)
			}
			b.ReportMetric(float64(mem)/(1<<10), "KiB-memory/instance")
		})
	}
}
