// Package metrics is a small Prometheus text-format registry: counters,
// gauges and histograms whose hot-path operations are a single atomic add
// and never allocate. nocrd keeps to the design card's dependency list, so
// it writes the exposition format itself (version 0.0.4).
package metrics

import (
	"bufio"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Counter is a monotonically increasing value.
type Counter struct{ v atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value returns the current count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Gauge is a value that goes up and down.
type Gauge struct{ v atomic.Int64 }

// Add adds n (which may be negative).
func (g *Gauge) Add(n int64) { g.v.Add(n) }

// Set sets the value.
func (g *Gauge) Set(n int64) { g.v.Store(n) }

// Value returns the current value.
func (g *Gauge) Value() int64 { return g.v.Load() }

// Histogram counts observations into fixed upper bounds.
type Histogram struct {
	bounds []float64
	counts []atomic.Uint64 // len(bounds)+1; the last is +Inf
	sum    atomic.Uint64   // float64 bits
	count  atomic.Uint64
}

// NewHistogram returns a histogram with the given ascending upper bounds.
func NewHistogram(bounds ...float64) *Histogram {
	if !sort.Float64sAreSorted(bounds) {
		panic("metrics: histogram bounds must be ascending")
	}
	return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe records v.
func (h *Histogram) Observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v)
	h.counts[i].Add(1)
	h.count.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.count.Load() }

// Labels are one series' label pairs, in order: name, value, name, value...
type Labels []string

type series struct {
	labels Labels
	value  func() float64 // counter or gauge
	hist   *Histogram
}

type family struct {
	name, help, kind string
	series           []series
	collect          func(emit func(Labels, float64)) // dynamic series
}

// Registry holds metric families and writes them in the text format.
type Registry struct {
	mu       sync.Mutex
	families map[string]*family
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{families: map[string]*family{}} }

func (r *Registry) family(name, help, kind string) *family {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.families[name]
	if f == nil {
		f = &family{name: name, help: help, kind: kind}
		r.families[name] = f
	} else if f.kind != kind {
		panic("metrics: " + name + " registered as " + f.kind + " and " + kind)
	}
	return f
}

func (r *Registry) add(name, help, kind string, s series) {
	f := r.family(name, help, kind)
	r.mu.Lock()
	f.series = append(f.series, s)
	r.mu.Unlock()
}

// Counter registers and returns a counter series.
func (r *Registry) Counter(name, help string, labels ...string) *Counter {
	c := &Counter{}
	r.add(name, help, "counter", series{labels: labels, value: func() float64 { return float64(c.Value()) }})
	return c
}

// Gauge registers and returns a gauge series.
func (r *Registry) Gauge(name, help string, labels ...string) *Gauge {
	g := &Gauge{}
	r.add(name, help, "gauge", series{labels: labels, value: func() float64 { return float64(g.Value()) }})
	return g
}

// CounterFunc registers a counter series read from f at scrape time.
func (r *Registry) CounterFunc(name, help string, f func() float64, labels ...string) {
	r.add(name, help, "counter", series{labels: labels, value: f})
}

// GaugeFunc registers a gauge series read from f at scrape time.
func (r *Registry) GaugeFunc(name, help string, f func() float64, labels ...string) {
	r.add(name, help, "gauge", series{labels: labels, value: f})
}

// Histogram registers and returns a histogram series.
func (r *Registry) Histogram(name, help string, bounds []float64, labels ...string) *Histogram {
	h := NewHistogram(bounds...)
	r.add(name, help, "histogram", series{labels: labels, hist: h})
	return h
}

// CounterCollector registers a counter family whose series collect emits
// at scrape time, for label sets not known in advance.
func (r *Registry) CounterCollector(name, help string, collect func(emit func(Labels, float64))) {
	f := r.family(name, help, "counter")
	r.mu.Lock()
	f.collect = collect
	r.mu.Unlock()
}

// WriteTo writes every family in the Prometheus text format, sorted by name.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	fams := make([]*family, 0, len(r.families))
	for _, f := range r.families {
		cp := *f
		cp.series = slices.Clone(f.series)
		fams = append(fams, &cp)
	}
	r.mu.Unlock()
	slices.SortFunc(fams, func(a, b *family) int { return strings.Compare(a.name, b.name) })
	bw := bufio.NewWriter(w)
	for _, f := range fams {
		bw.WriteString("# HELP " + f.name + " " + escapeHelp(f.help) + "\n")
		bw.WriteString("# TYPE " + f.name + " " + f.kind + "\n")
		for _, s := range f.series {
			if s.hist != nil {
				writeHistogram(bw, f.name, s.labels, s.hist)
				continue
			}
			writeSample(bw, f.name, s.labels, s.value())
		}
		if f.collect != nil {
			f.collect(func(l Labels, v float64) { writeSample(bw, f.name, l, v) })
		}
	}
	return 0, bw.Flush()
}

func writeHistogram(bw *bufio.Writer, name string, labels Labels, h *Histogram) {
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		writeSample(bw, name+"_bucket", append(slices.Clone(labels), "le", strconv.FormatFloat(b, 'g', -1, 64)), float64(cum))
	}
	cum += h.counts[len(h.bounds)].Load()
	writeSample(bw, name+"_bucket", append(slices.Clone(labels), "le", "+Inf"), float64(cum))
	writeSample(bw, name+"_sum", labels, math.Float64frombits(h.sum.Load()))
	writeSample(bw, name+"_count", labels, float64(cum))
}

func writeSample(bw *bufio.Writer, name string, labels Labels, v float64) {
	bw.WriteString(name)
	if len(labels) > 0 {
		bw.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				bw.WriteByte(',')
			}
			bw.WriteString(labels[i] + "=" + strconv.Quote(labels[i+1]))
		}
		bw.WriteByte('}')
	}
	bw.WriteByte(' ')
	bw.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	bw.WriteByte('\n')
}

func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

// Handler serves the registry at a Prometheus scrape endpoint.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = r.WriteTo(w)
	})
}
