package policies_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	policies "github.com/nocrd/nocrd/wasm-policies"
)

// BenchmarkDecision is one route decision through the ABI on a pooled
// instance, the deadline included: the WAT guest reads the method (one
// host call); the Go guest reads a header and sets another. The parallel
// runs make decisions from every P at once, as a loaded proxy does, which
// adds the pool's contention and the instances' cache footprint. The
// request is a benchRequest, so that what is counted is the host's own
// allocations.
func BenchmarkDecision(b *testing.B) {
	for _, g := range []struct{ name, path string }{
		{"WAT", wat(b, "readonly")},
		{"Go", goGuest(b, "examples/inject-identity")},
	} {
		h := newHost(b, policies.Options{})
		m := load(b, h, g.path, "X-User", time.Second)
		decide := func(b *testing.B, req policies.Request, resp *policies.Response) {
			if next, err := m.Handle(req, resp); !next || err != nil {
				b.Fatalf("next=%v %v", next, err)
			}
		}
		b.Run(g.name, func(b *testing.B) {
			req := benchRequest{request("GET", "/files", "X-Nocrd-Subject", "alice")}
			var resp policies.Response
			b.ReportAllocs()
			for b.Loop() {
				decide(b, req, &resp)
			}
			if g.name == "Go" {
				if v := headerValues(req.Message, "X-User"); len(v) != 1 || v[0] != "alice" {
					b.Fatalf("X-User: %q, want the subject once", v)
				}
			}
		})
		b.Run(g.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := benchRequest{request("GET", "/files", "X-Nocrd-Subject", "alice")}
				var resp policies.Response
				for pb.Next() {
					decide(b, req, &resp)
				}
			})
		})
	}
}

// benchRequest is a Message whose SetHeader writes over the value a header
// has, as the proxy's request does, where Message copies the name and the
// value (two allocations) every time.
type benchRequest struct{ *policies.Message }

func (r benchRequest) SetHeader(name, value []byte) {
	for i, f := range r.Header {
		if bytes.EqualFold(f.Name, name) {
			r.Header[i].Value = append(f.Value[:0], value...)
			return
		}
	}
	r.Message.SetHeader(name, value)
}

// BenchmarkCompileGoGuest compiles the Go guest from scratch and from the
// on-disk compilation cache, as start-up does.
func BenchmarkCompileGoGuest(b *testing.B) {
	path := goGuest(b, "examples/inject-identity")
	for _, cached := range []bool{false, true} {
		name := "cold"
		if cached {
			name = "cached"
		}
		b.Run(name, func(b *testing.B) {
			dir := ""
			if cached {
				dir = b.TempDir()
				h := newHost(b, policies.Options{CacheDir: dir})
				load(b, h, path, "", time.Second) // fills the cache
			}
			for b.Loop() {
				h, err := policies.NewHost(context.Background(), policies.Options{CacheDir: dir})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := h.Load(context.Background(), path, nil, time.Second); err != nil {
					b.Fatal(err)
				}
				_ = h.Close(context.Background())
			}
		})
	}
}
