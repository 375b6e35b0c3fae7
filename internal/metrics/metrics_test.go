package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestExposition(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("nocrd_test_total", "A test counter.", "outcome", "ok")
	c.Add(3)
	r.Counter("nocrd_test_total", "A test counter.", "outcome", "denied").Inc()
	g := r.Gauge("nocrd_open", "Open things.")
	g.Add(5)
	g.Add(-2)
	h := r.Histogram("nocrd_latency_seconds", "Latency.", []float64{0.001, 0.01})
	for _, v := range []float64{0.0005, 0.002, 0.002, 5} {
		h.Observe(v)
	}
	r.GaugeFunc("nocrd_fn", "From a func.", func() float64 { return 1.5 }, "k", `quo"te`)
	r.CounterCollector("nocrd_dyn_total", "Dynamic.", func(emit func(Labels, float64)) {
		emit(Labels{"status", "200"}, 7)
	})
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	got := rec.Body.String()
	want := `# HELP nocrd_dyn_total Dynamic.
# TYPE nocrd_dyn_total counter
nocrd_dyn_total{status="200"} 7
# HELP nocrd_fn From a func.
# TYPE nocrd_fn gauge
nocrd_fn{k="quo\"te"} 1.5
# HELP nocrd_latency_seconds Latency.
# TYPE nocrd_latency_seconds histogram
nocrd_latency_seconds_bucket{le="0.001"} 1
nocrd_latency_seconds_bucket{le="0.01"} 3
nocrd_latency_seconds_bucket{le="+Inf"} 4
nocrd_latency_seconds_sum 5.0045
nocrd_latency_seconds_count 4
# HELP nocrd_open Open things.
# TYPE nocrd_open gauge
nocrd_open 3
# HELP nocrd_test_total A test counter.
# TYPE nocrd_test_total counter
nocrd_test_total{outcome="ok"} 3
nocrd_test_total{outcome="denied"} 1
`
	if got != want {
		t.Fatalf("exposition:\n%s\nwant:\n%s", got, want)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("content type %q", ct)
	}
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c_total", "c")
	h := r.Histogram("h_seconds", "h", []float64{0.1, 1})
	if n := testing.AllocsPerRun(100, func() { c.Inc(); h.Observe(0.5) }); n != 0 {
		t.Fatalf("%v allocations per observation", n)
	}
}

func TestKindConflictPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("registering one name as two kinds did not panic")
		}
	}()
	r := NewRegistry()
	r.Counter("x", "x")
	r.Gauge("x", "x")
}

func TestMerge(t *testing.T) {
	a := NewRegistry()
	a.Counter("req_total", "Requests.", "code", "200").Add(3)
	a.Gauge("open", "Open connections.").Set(2)
	a.Histogram("lat_seconds", "Latency.", []float64{0.1}).Observe(0.05)
	b := NewRegistry()
	b.Counter("req_total", "Requests.", "code", "200").Add(4)
	b.Counter("req_total", "Requests.", "code", "502").Add(1)
	b.Histogram("lat_seconds", "Latency.", []float64{0.1}).Observe(0.5)
	b.Counter("only_b_total", "Only in b.").Inc()
	var sa, sb strings.Builder
	_, _ = a.WriteTo(&sa)
	_, _ = b.WriteTo(&sb)
	var out strings.Builder
	if err := Merge(&out, []byte(sa.String()), []byte(sb.String())); err != nil {
		t.Fatal(err)
	}
	want := `# HELP lat_seconds Latency.
# TYPE lat_seconds histogram
lat_seconds_bucket{le="0.1"} 1
lat_seconds_bucket{le="+Inf"} 2
lat_seconds_sum 0.55
lat_seconds_count 2
# HELP open Open connections.
# TYPE open gauge
open 2
# HELP req_total Requests.
# TYPE req_total counter
req_total{code="200"} 7
req_total{code="502"} 1
# HELP only_b_total Only in b.
# TYPE only_b_total counter
only_b_total 1
`
	if out.String() != want {
		t.Fatalf("merged:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestMergeRejectsGarbage(t *testing.T) {
	for _, in := range []string{"nonsense", "x{a=\"b\"} notanumber"} {
		err := Merge(io.Discard, []byte("# TYPE x counter\nx 1\n"), []byte(in))
		if err == nil || !strings.Contains(err.Error(), "scrape 2, line 1") {
			t.Errorf("Merge(%q) = %v, want an error naming scrape 2, line 1", in, err)
		}
	}
}
