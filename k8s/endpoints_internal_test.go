package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/nocrd/nocrd/internal/testenv"
)

func testPod(uid, rv, ip string, ready bool, deleting bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ws-" + uid, UID: types.UID(uid), ResourceVersion: rv,
			Labels:      map[string]string{LabelType: TypeWorkspace, LabelWorkspaceID: "w", LabelUserSub: "alice"},
			Annotations: map[string]string{AnnotationOwner: "alice"}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
	}
	if ready {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	}
	if deleting {
		now := metav1.Now()
		p.DeletionTimestamp = &now
	}
	return p
}

// TestApplyOrdering folds event sequences into a cache entry and checks
// the result: only newer resourceVersions win, a different pod claiming the
// id drops the entry, and an IP taken by another workspace is given up.
func TestApplyOrdering(t *testing.T) {
	type ev struct {
		typ watch.EventType
		pod *corev1.Pod
	}
	cases := []struct {
		name   string
		start  *cacheEntry // cached for id "w"
		events []ev
		want   EndpointState // EndpointAbsent with cached=false means dropped
		cached bool
		gone   string
	}{
		{"older event ignored", &cacheEntry{rv: 10, ep: Endpoint{UID: "a", Addr: "10.0.0.1:3000", State: EndpointReady}},
			[]ev{{watch.Deleted, testPod("a", "9", "10.0.0.1", true, false)}}, EndpointReady, true, ""},
		{"newer delete makes absent", &cacheEntry{rv: 10, ep: Endpoint{UID: "a", Addr: "10.0.0.1:3000", State: EndpointReady}},
			[]ev{{watch.Deleted, testPod("a", "11", "10.0.0.1", true, false)}}, EndpointAbsent, true, "10.0.0.1:3000"},
		{"terminating is not ready", &cacheEntry{rv: 10, ep: Endpoint{UID: "a", Addr: "10.0.0.1:3000", State: EndpointReady}},
			[]ev{{watch.Modified, testPod("a", "11", "10.0.0.1", true, true)}}, EndpointNotReady, true, "10.0.0.1:3000"},
		{"becomes ready", &cacheEntry{rv: 10, ep: Endpoint{UID: "a", State: EndpointNotReady}},
			[]ev{{watch.Modified, testPod("a", "11", "10.0.0.1", true, false)}}, EndpointReady, true, ""},
		{"absent id appears", &cacheEntry{rv: 10, ep: Endpoint{State: EndpointAbsent}},
			[]ev{{watch.Added, testPod("b", "11", "", false, false)}}, EndpointNotReady, true, ""},
		{"second pod claims the id", &cacheEntry{rv: 10, ep: Endpoint{UID: "a", Addr: "10.0.0.1:3000", State: EndpointReady}},
			[]ev{{watch.Added, testPod("b", "11", "", false, false)}}, EndpointAbsent, false, "10.0.0.1:3000"},
		{"other pod's deletion leaves entry", &cacheEntry{rv: 10, ep: Endpoint{UID: "a", Addr: "10.0.0.1:3000", State: EndpointReady}},
			[]ev{{watch.Deleted, testPod("b", "11", "10.0.0.9", true, false)}}, EndpointReady, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var gone string
			e := &EndpointCache{opts: EndpointCacheOptions{DefaultPort: 3000, OnGone: func(a string) { gone = a }},
				byIP: map[string]string{}, flights: map[string]*flight{}}
			if err := e.initLRUs(4); err != nil {
				t.Fatal(err)
			}
			e.mu.Lock()
			e.put("w", tc.start)
			e.mu.Unlock()
			for _, x := range tc.events {
				e.apply(x.typ, x.pod)
			}
			ent, ok := e.peek("w")
			if ok != tc.cached {
				t.Fatalf("cached = %v, want %v", ok, tc.cached)
			}
			if ok && ent.ep.State != tc.want {
				t.Fatalf("state %v, want %v", ent.ep.State, tc.want)
			}
			if gone != tc.gone {
				t.Fatalf("OnGone(%q), want %q", gone, tc.gone)
			}
		})
	}

	// An IP taken by another workspace's pod is given up by the cached one.
	e := &EndpointCache{opts: EndpointCacheOptions{DefaultPort: 3000}, byIP: map[string]string{}, flights: map[string]*flight{}}
	_ = e.initLRUs(4)
	e.mu.Lock()
	e.put("w", &cacheEntry{rv: 10, ep: Endpoint{UID: "a", Addr: "10.0.0.1:3000", State: EndpointReady}})
	e.mu.Unlock()
	other := testPod("z", "12", "10.0.0.1", true, false)
	other.Labels[LabelWorkspaceID] = "other"
	e.apply(watch.Modified, other)
	if _, ok := e.peek("w"); ok {
		t.Fatal("a workspace kept an IP another workspace's pod now has")
	}
}

// TestMissRacingDelete: a lookup lists a ready pod, and before it can cache
// the answer the watch delivers that pod's deletion. The stale list must
// not be cached, and the lookup must not answer ready.
func TestMissRacingDelete(t *testing.T) {
	kube, ns := NewNamespaced(t)
	ctx := context.Background()
	w, err := kube.SpawnWorkspace(ctx, SpawnRequest{ID: "r", Spec: &corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "busybox"}}},
		PodAnnotations: map[string]string{"pod-ready.stage.kwok.x-k8s.io/delay": "0ms", "pod-ready.stage.kwok.x-k8s.io/jitter-delay": "0ms"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.WaitReady(ctx, w, nil); err != nil {
		t.Fatal(err)
	}
	cache, err := kube.NewEndpointCache("", EndpointCacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = cache.Run(rctx) }()
	defer func() { cancel(); <-done }()
	testenv.Eventually(t, 10*time.Second, "watch sync", func() (bool, error) { return cache.Synced(), nil })

	raced := false
	cache.afterFetch = func(id string) {
		if raced {
			return
		}
		raced = true
		if err := kube.Kubernetes().CoreV1().Pods(ns).Delete(ctx, w.PodName, metav1.DeleteOptions{}); err != nil {
			t.Error(err)
		}
		testenv.Eventually(t, 10*time.Second, "the watch to see the deletion", func() (bool, error) {
			cache.mu.Lock()
			defer cache.mu.Unlock()
			return cache.flights[id] != nil && cache.flights[id].eventRV > 0, nil
		})
	}
	ep, err := cache.Lookup(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if !raced {
		t.Fatal("the race was not staged")
	}
	if ep.State == EndpointReady {
		t.Fatalf("a lookup that raced with a deletion answered ready: %+v", ep)
	}
	if ep, _ := cache.Lookup(ctx, "r"); ep.State == EndpointReady {
		t.Fatalf("the stale answer was cached: %+v", ep)
	}
}

// TestStopIsSeenBeforeTheWatch: a workspace stopped through this process's
// client stops being routed when StopWorkspace returns, while the watch
// event of the deletion is still held back, and OnGone hears of its address.
func TestStopIsSeenBeforeTheWatch(t *testing.T) {
	kube, ns := NewNamespaced(t)
	ctx := context.Background()
	spawnReadyNow(t, kube, "s")
	gone := make(chan string, 4)
	cache := runHeldCache(t, kube, EndpointCacheOptions{OnGone: func(a string) { gone <- a }})

	ep, err := cache.Lookup(ctx, "s")
	if err != nil || ep.State != EndpointReady {
		t.Fatalf("before the stop: %+v %v, want ready", ep, err)
	}
	if _, err := kube.StopWorkspace(ctx, ns, "s", "alice"); err != nil {
		t.Fatal(err)
	}
	// The watch is held: only the stop itself can have told the cache.
	if ep, err := cache.Lookup(ctx, "s"); err != nil || ep.State == EndpointReady {
		t.Fatalf("right after the stop: %+v %v, want not ready", ep, err)
	}
	select {
	case a := <-gone:
		if a != ep.Addr {
			t.Fatalf("OnGone got %s, want %s", a, ep.Addr)
		}
	default:
		t.Fatal("OnGone was not called by the stop")
	}
	if st := cache.Stats(); st.Misses != 1 {
		t.Fatalf("%d misses: the stopped entry was dropped rather than updated", st.Misses)
	}
}

// TestStopInAnotherProcessIsPassedOn: a workspace stopped through another
// client (the primary process, when proxy workers hold the route caches)
// stops being routed by this one's cache once the other's OnDelete hook
// has passed the API server's answer on to ObserveDeletion, over JSON as
// between processes, while this cache's watch is still held back.
func TestStopInAnotherProcessIsPassedOn(t *testing.T) {
	ns := testenv.Namespace(t)
	cfg := Config{Mode: ModeNamespaced, Namespace: ns}
	worker, err := NewForConfig(cfg, testenv.AdminConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	primary, err := NewForConfig(cfg, testenv.AdminConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	var passed []string
	primary.OnDelete(func(_ context.Context, p *corev1.Pod) {
		b, err := json.Marshal(p)
		if err != nil {
			t.Error(err)
			return
		}
		var got corev1.Pod
		if err := json.Unmarshal(b, &got); err != nil {
			t.Error(err)
			return
		}
		passed = append(passed, got.Name)
		worker.ObserveDeletion(&got)
	})
	ctx := context.Background()
	w := spawnReadyNow(t, primary, "s")
	cache := runHeldCache(t, worker, EndpointCacheOptions{})

	if ep, err := cache.Lookup(ctx, "s"); err != nil || ep.State != EndpointReady {
		t.Fatalf("before the stop: %+v %v, want ready", ep, err)
	}
	if _, err := primary.StopWorkspace(ctx, ns, "s", "alice"); err != nil {
		t.Fatal(err)
	}
	if len(passed) != 1 || passed[0] != w.PodName {
		t.Fatalf("OnDelete was told of %v, want [%s]", passed, w.PodName)
	}
	if ep, err := cache.Lookup(ctx, "s"); err != nil || ep.State == EndpointReady {
		t.Fatalf("right after the stop: %+v %v, want not ready", ep, err)
	}
	// Without the hook, only the watch would tell: the cache still routes.
	primary.OnDelete(nil)
	spawnReadyNow(t, primary, "t")
	if ep, err := cache.Lookup(ctx, "t"); err != nil || ep.State != EndpointReady {
		t.Fatalf("t before its stop: %+v %v, want ready", ep, err)
	}
	if _, err := primary.StopWorkspace(ctx, ns, "t", "alice"); err != nil {
		t.Fatal(err)
	}
	if len(passed) != 1 {
		t.Fatalf("a removed hook was told of %v", passed[1:])
	}
	if ep, _ := cache.Lookup(ctx, "t"); ep.State != EndpointReady {
		t.Fatalf("with the watch held and no hook, t is %v: the test does not stage what it means to", ep.State)
	}
}

// spawnReadyNow spawns workspace id for alice with KWOK's readiness delay
// off and waits until it is ready.
func spawnReadyNow(t *testing.T, kube *Client, id string) *Workspace {
	t.Helper()
	ctx := context.Background()
	w, err := kube.SpawnWorkspace(ctx, SpawnRequest{ID: id, Owner: "alice", Spec: &corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "busybox"}}},
		PodAnnotations: map[string]string{"pod-ready.stage.kwok.x-k8s.io/delay": "0ms", "pod-ready.stage.kwok.x-k8s.io/jitter-delay": "0ms"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.WaitReady(ctx, w, nil); err != nil {
		t.Fatal(err)
	}
	return w
}

// runHeldCache runs a route cache whose watch holds back every event until
// the test ends, so that only what is folded in by other means shows.
func runHeldCache(t *testing.T, kube *Client, opts EndpointCacheOptions) *EndpointCache {
	t.Helper()
	cache, err := kube.NewEndpointCache("", opts)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	cache.onEvent = func() { <-release }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = cache.Run(ctx) }()
	t.Cleanup(func() { close(release); cancel(); <-done })
	testenv.Eventually(t, 10*time.Second, "watch sync", func() (bool, error) { return cache.Synced(), nil })
	return cache
}

// TestWatchEndsAndResumes: the API server ends every watch after its
// timeout (30 to 60 minutes by default, a second or two here). The cache
// resumes it from the last resourceVersion it saw: it stays synced, so
// /readyz stays ready; it keeps its entries, so lookups do not go back to
// the API server; and it still follows the pods.
func TestWatchEndsAndResumes(t *testing.T) {
	kube, ns := NewNamespaced(t)
	ctx := context.Background()
	w := spawnReadyNow(t, kube, "a")
	cache, err := kube.NewEndpointCache("", EndpointCacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cache.watchTimeout = time.Second
	var watches atomic.Int32
	cache.beforeWatch = func() error { watches.Add(1); return nil }
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = cache.Run(rctx) }()
	defer func() { cancel(); <-done }()
	testenv.Eventually(t, 10*time.Second, "watch sync", func() (bool, error) { return cache.Synced(), nil })
	if ep, err := cache.Lookup(ctx, "a"); err != nil || ep.State != EndpointReady {
		t.Fatalf("lookup: %+v %v, want ready", ep, err)
	}

	deadline := time.Now().Add(15 * time.Second)
	for watches.Load() < 4 { // the first watch and three resumed ones
		if !cache.Synced() {
			t.Fatalf("the cache stopped being synced after %d watches", watches.Load())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d watches in 15 s: the API server did not end them", watches.Load())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if ep, err := cache.Lookup(ctx, "a"); err != nil || ep.State != EndpointReady {
		t.Fatalf("lookup after the watches ended: %+v %v, want ready", ep, err)
	}
	if st := cache.Stats(); st.Misses != 1 {
		t.Fatalf("%d misses: the cache was emptied when a watch ended", st.Misses)
	}

	// Deleted behind the cache's back (a stop through this client would
	// tell the cache itself): only a resumed watch can say so.
	if err := kube.Kubernetes().CoreV1().Pods(ns).Delete(ctx, w.PodName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the resumed watch to see the deletion", func() (bool, error) {
		ep, err := cache.Lookup(ctx, "a")
		return err == nil && ep.State != EndpointReady, err
	})
	if st := cache.Stats(); st.Misses != 1 || st.Invalidations == 0 {
		t.Fatalf("stats %+v: the deletion should have come as an event for the cached entry", st)
	}
}

// TestWatchBackoffStartsOver: failed watches wait longer each time, but a
// failure after the watch ran again waits the first wait, not the last.
func TestWatchBackoffStartsOver(t *testing.T) {
	kube, _ := NewNamespaced(t)
	cache, err := kube.NewEndpointCache("", EndpointCacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cache.watchTimeout = time.Second
	cache.backoffBase = 20 * time.Millisecond
	var mu sync.Mutex
	var calls []time.Time
	cache.beforeWatch = func() error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, time.Now())
		// Six failures in a row (the waits grow to 640 ms), then a watch
		// that runs until the server ends it, and one failure as it is
		// resumed.
		if n := len(calls); n <= 6 || n == 8 {
			return errors.New("staged failure")
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = cache.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testenv.Eventually(t, 15*time.Second, "the ninth watch", func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(calls) >= 9, nil
	})
	mu.Lock()
	defer mu.Unlock()
	if grown := calls[6].Sub(calls[5]); grown < 500*time.Millisecond {
		t.Fatalf("after six failures in a row the wait was %v, want 640 ms", grown)
	}
	if again := calls[8].Sub(calls[7]); again > 400*time.Millisecond {
		t.Fatalf("after a watch that ran, a failure waited %v, want 20 ms", again)
	}
}
