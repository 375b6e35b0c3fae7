package main

import (
	"strings"
	"testing"
	"time"
)

// TestRender: the table's ratios come from the samples, the policy and
// baseline lines appear only when their rows were measured, and a row
// left out (-only) does not break the rest.
func TestRender(t *testing.T) {
	s := func(rps, cpu float64) sample { return sample{rps: rps, p50: 1, p99: 2, cpu: cpu, requests: rps * 5} }
	base := map[string][]sample{
		"direct": {s(80000, 10), s(60000, 12)},
		"nginx":  {s(40000, 20), s(30000, 24)},
		rowJWT:   {s(36000, 25), s(27000, 30)},
	}
	targets := []target{{name: "direct"}, {name: "nginx"}, {name: rowJWT}}
	for _, tc := range []struct {
		name  string
		extra map[string][]sample
		want  []string
		never []string
	}{
		{"JWT only", nil,
			[]string{"| nocrd + JWT (ES256) | 31500 | 0.45× | 0.90× | 0.90× |", "36000, 27000", "25.0, 30.0"},
			[]string{"baseline binary", "With a Wasm route policy"}},
		{"baseline", map[string][]sample{rowBaseline: {s(40000, 30), s(27000, 30)}},
			[]string{"share of the baseline binary with JWT (requests/s): 0.94× (ratio of the medians), 0.95× (median of the ratios within each run); CPU per request 27.5 µs against 30.0 µs, 0.92×"},
			[]string{"With a Wasm route policy"}},
		{"policies", map[string][]sample{rowPolicyWAT: {s(36000, 26), s(27000, 31)}, rowPolicyGo: {s(34200, 27), s(25650, 32)}},
			[]string{"WAT guest 1.00×, Go guest 0.95× (ratio of the medians); 1.00× and 0.95× (median of the ratios within each run)"},
			[]string{"baseline binary"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			results, ts := map[string][]sample{}, append([]target(nil), targets...)
			for k, v := range base {
				results[k] = v
			}
			for k, v := range tc.extra {
				results[k] = v
				ts = append(ts, target{name: k})
			}
			out := render(ts, results, map[string]float64{}, 2, 5*time.Second, time.Second, 64)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("table lacks %q:\n%s", w, out)
				}
			}
			for _, n := range tc.never {
				if strings.Contains(out, n) {
					t.Errorf("table has %q:\n%s", n, out)
				}
			}
		})
	}
}

// TestMedianInterval: the order statistics that bound the median with at
// least 95% confidence, and none below 6 values.
func TestMedianInterval(t *testing.T) {
	seq := func(n int) []float64 { // n, n-1, ..., 1: the order must not matter
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = float64(n - i)
		}
		return xs
	}
	for _, c := range []struct {
		n      int
		lo, hi float64
		ok     bool
	}{
		{0, 0, 0, false},
		{5, 0, 0, false},
		{6, 1, 6, true},   // P(none of 6 below) = 1/64
		{9, 2, 8, true},   // P(at most 1 of 9) = 10/512
		{25, 8, 18, true}, // P(at most 7 of 25) = 0.022, P(at most 8) = 0.054
		{2000, 956, 1045, true},
	} {
		lo, hi, ok := medianInterval(seq(c.n))
		if lo != c.lo || hi != c.hi || ok != c.ok {
			t.Errorf("n=%d: %v-%v %v, want %v-%v %v", c.n, lo, hi, ok, c.lo, c.hi, c.ok)
		}
	}
}

// TestRenderInterval: with 6 runs or more the per-run ratio carries its
// interval, the smallest and largest of six ratios (median 0.905).
func TestRenderInterval(t *testing.T) {
	s := func(rps float64) sample { return sample{rps: rps, p50: 1, p99: 2, cpu: 20, requests: rps * 5} }
	results := map[string][]sample{"direct": {}, "nginx": {}, rowJWT: {}}
	for _, r := range []float64{0.85, 0.88, 0.9, 0.91, 0.93, 0.95} {
		results["direct"] = append(results["direct"], s(80000))
		results["nginx"] = append(results["nginx"], s(40000))
		results[rowJWT] = append(results[rowJWT], s(40000*r))
	}
	out := render([]target{{name: "direct"}, {name: "nginx"}, {name: rowJWT}}, results, map[string]float64{}, 6, 5*time.Second, time.Second, 64)
	if want := "| 0.91× (0.85-0.95) |"; !strings.Contains(out, want) {
		t.Errorf("table lacks %q:\n%s", want, out)
	}
}
