package k8s_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
)

type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// noKWOKDelay turns off the delays KWOK's pod stages add on purpose, so
// that the benchmark measures nocrd and the API server, not the simulator.
var noKWOKDelay = map[string]string{
	"pod-create.stage.kwok.x-k8s.io/delay": "0ms", "pod-create.stage.kwok.x-k8s.io/jitter-delay": "0ms",
	"pod-ready.stage.kwok.x-k8s.io/delay": "0ms", "pod-ready.stage.kwok.x-k8s.io/jitter-delay": "0ms",
	"pod-delete.stage.kwok.x-k8s.io/delay": "0ms",
}

// BenchmarkSpawnToReady spawns N workspaces at once through the SDK against
// the test cluster and measures, per workspace, the time from the spawn
// call to Running-and-Ready with an IP, and the API requests each spawn
// costs. The client is configured as nocrd configures its own: no
// client-side rate limit, the API server's Priority and Fairness deciding.
func BenchmarkSpawnToReady(b *testing.B) {
	for _, n := range []int{1, 50, 500} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			ns := testenv.Namespace(b)
			var requests atomic.Int64
			rc := testenv.AdminConfig(b)
			rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt, &requests} }
			kube, err := k8s.NewForConfig(k8s.Config{Mode: k8s.ModeNamespaced, Namespace: ns}, rc)
			if err != nil {
				b.Fatal(err)
			}
			admin := testenv.Admin(b)
			ctx := context.Background()
			spec := &corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "busybox"}}}
			var latencies []time.Duration
			var perSpawn float64
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				before := requests.Load()
				lat := make([]time.Duration, n)
				var wg sync.WaitGroup
				for j := range n {
					wg.Go(func() {
						start := time.Now()
						w, err := kube.SpawnWorkspace(ctx, k8s.SpawnRequest{ID: fmt.Sprintf("b%d-%d", i, j), Spec: spec, PodAnnotations: noKWOKDelay})
						if err == nil {
							_, err = kube.WaitReady(ctx, w, nil)
						}
						if err != nil {
							b.Error(err)
							return
						}
						lat[j] = time.Since(start)
					})
				}
				wg.Wait()
				latencies = append(latencies, lat...)
				perSpawn += float64(requests.Load()-before) / float64(n)

				b.StopTimer()
				zero := int64(0)
				if err := admin.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}); err != nil {
					b.Fatal(err)
				}
				testenv.Eventually(b, 2*time.Minute, "benchmark pods to go", func() (bool, error) {
					l, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
					return err == nil && len(l.Items) == 0, err
				})
				b.StartTimer()
			}
			slices.Sort(latencies)
			pct := func(p float64) float64 {
				return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(perSpawn/float64(b.N), "api-req/spawn")
		})
	}
}

// BenchmarkEndpointLookup measures the route cache on the proxy's hot
// path: a hit is an LRU lookup; the watch keeps it current.
func BenchmarkEndpointLookup(b *testing.B) {
	ns := testenv.Namespace(b)
	kube, err := k8s.NewForConfig(k8s.Config{Mode: k8s.ModeNamespaced, Namespace: ns}, testenv.AdminConfig(b))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	w, err := kube.SpawnWorkspace(ctx, k8s.SpawnRequest{ID: "hot", PodAnnotations: noKWOKDelay,
		Spec: &corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "busybox"}}}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := kube.WaitReady(ctx, w, nil); err != nil {
		b.Fatal(err)
	}
	cache, err := kube.NewEndpointCache("", k8s.EndpointCacheOptions{})
	if err != nil {
		b.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = cache.Run(rctx) }()
	defer func() { cancel(); <-done }()
	for !cache.Synced() {
		time.Sleep(10 * time.Millisecond)
	}
	if ep, err := cache.Lookup(ctx, "hot"); err != nil || ep.State != k8s.EndpointReady {
		b.Fatalf("%+v %v", ep, err)
	}
	// The proxy passes the id as a view of its request buffer.
	buf := []byte("hot")
	id := unsafe.String(unsafe.SliceData(buf), len(buf))
	b.ReportAllocs()
	for b.Loop() {
		if ep, _ := cache.Lookup(ctx, id); ep.State != k8s.EndpointReady {
			b.Fatal("not ready")
		}
	}
}
