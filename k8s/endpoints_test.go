package k8s_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
)

// runCache starts an endpoint cache on ns and waits for its watch.
func runCache(t *testing.T, kube *k8s.Client, ns string, onGone func(string)) *k8s.EndpointCache {
	t.Helper()
	c, err := kube.NewEndpointCache(ns, k8s.EndpointCacheOptions{Size: 8, DefaultPort: 3000, OnGone: onGone})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testenv.Eventually(t, 10*time.Second, "the workspace watch to sync", func() (bool, error) { return c.Synced(), nil })
	return c
}

func spawnReady(t *testing.T, kube *k8s.Client, id, owner string, podAnn, spawnAnn map[string]string) *k8s.Workspace {
	t.Helper()
	return spawnReadyOn(t, kube, id, owner, "", podAnn, spawnAnn)
}

// spawnReadyOn is spawnReady onto a node of the test's own (testenv.Node),
// or the shared one when node is empty.
func spawnReadyOn(t *testing.T, kube *k8s.Client, id, owner, node string, podAnn, spawnAnn map[string]string) *k8s.Workspace {
	t.Helper()
	ctx := context.Background()
	w, err := kube.SpawnWorkspace(ctx, k8s.SpawnRequest{ID: id, Owner: owner, PodAnnotations: podAnn, Annotations: spawnAnn,
		Spec: &corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "w", Image: "busybox"}}}})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if w, err = kube.WaitReady(wctx, w, nil); err != nil {
		t.Fatal(err)
	}
	return w
}

// stopAndWaitGone deletes a workspace and waits until its pod object is gone.
func stopAndWaitGone(t *testing.T, kube *k8s.Client, ns string, w *k8s.Workspace) {
	t.Helper()
	if _, err := kube.StopWorkspace(context.Background(), ns, w.ID, w.Owner); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "pod "+w.PodName+" to be deleted", func() (bool, error) {
		_, err := kube.Kubernetes().CoreV1().Pods(ns).Get(context.Background(), w.PodName, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

func lookupState(t *testing.T, c *k8s.EndpointCache, id string) k8s.Endpoint {
	t.Helper()
	ep, err := c.Lookup(context.Background(), id)
	if err != nil {
		t.Fatalf("lookup %s: %v", id, err)
	}
	return ep
}

// TestEndpointCacheFollowsWorkspaces: a workspace is cached on its first
// lookup and the watch then keeps the entry right through readiness,
// port annotation and deletion (TestEndpointCacheIPReuse has another
// workspace take over its IP, as KWOK and real CNIs may).
func TestEndpointCacheFollowsWorkspaces(t *testing.T) {
	kube, ns := k8s.NewNamespaced(t)
	var mu sync.Mutex
	var gone []string
	cache := runCache(t, kube, ns, func(a string) { mu.Lock(); gone = append(gone, a); mu.Unlock() })

	if ep := lookupState(t, cache, "nobody"); ep.State != k8s.EndpointAbsent {
		t.Fatalf("unknown id: state %v, want absent", ep.State)
	}
	if _, err := cache.Lookup(context.Background(), "bad/id"); err == nil {
		t.Fatal("an invalid id was looked up")
	}

	// Cached before it is ready; the watch brings it to ready.
	ctx := context.Background()
	w, err := kube.SpawnWorkspace(ctx, k8s.SpawnRequest{ID: "alpha", Owner: "alice",
		PodAnnotations: map[string]string{"pod-ready.stage.kwok.x-k8s.io/delay": "1s", "pod-ready.stage.kwok.x-k8s.io/jitter-delay": "1s", "pod-delete.stage.kwok.x-k8s.io/jitter-delay": "0ms"},
		Spec:           &corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "busybox"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if ep := lookupState(t, cache, "alpha"); ep.State != k8s.EndpointNotReady || ep.Owner != "alice" {
		t.Fatalf("new workspace: %+v, want not ready, owner alice", ep)
	}
	missesBefore := cache.Stats().Misses
	testenv.Eventually(t, 30*time.Second, "alpha to become ready in the cache", func() (bool, error) {
		return lookupState(t, cache, "alpha").State == k8s.EndpointReady, nil
	})
	if m := cache.Stats().Misses; m != missesBefore {
		t.Fatalf("the watch did not keep alpha current: %d more lookups went to the API server", m-missesBefore)
	}
	alpha := lookupState(t, cache, "alpha")
	pod, err := kube.GetPod(ctx, ns, w.PodName)
	if err != nil {
		t.Fatal(err)
	}
	if want := net.JoinHostPort(pod.Status.PodIP, "3000"); alpha.Addr != want {
		t.Fatalf("alpha at %s, want %s", alpha.Addr, want)
	}

	// The workspace port annotation is honoured.
	spawnReady(t, kube, "beta", "bob", nil, map[string]string{k8s.AnnotationWorkspacePort: "8080"})
	var beta k8s.Endpoint
	testenv.Eventually(t, 5*time.Second, "beta to be ready in the cache", func() (bool, error) {
		beta = lookupState(t, cache, "beta")
		return beta.State == k8s.EndpointReady, nil
	})
	if _, port, _ := net.SplitHostPort(beta.Addr); beta.State != k8s.EndpointReady || port != "8080" {
		t.Fatalf("beta: %+v, want ready on port 8080", beta)
	}

	// Deleting: not ready as soon as the deletion starts, absent once gone.
	if _, err := kube.StopWorkspace(ctx, ns, "alpha", "alice"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "alpha to stop being routable", func() (bool, error) {
		return lookupState(t, cache, "alpha").State != k8s.EndpointReady, nil
	})
	stopAndWaitGone(t, kube, ns, w)
	testenv.Eventually(t, 5*time.Second, "alpha to be absent", func() (bool, error) {
		return lookupState(t, cache, "alpha").State == k8s.EndpointAbsent, nil
	})
	mu.Lock()
	if !slices.Contains(gone, alpha.Addr) {
		t.Errorf("OnGone was not told about %s (got %v)", alpha.Addr, gone)
	}
	mu.Unlock()
}

// TestEndpointCacheIPReuse: after a workspace is deleted and a new one gets
// its IP, the old id never resolves to that IP again, and the new id
// resolves to it. The workspaces run on a node of the test's own, so that
// no other test's pod takes the freed IP (see testenv.Node).
func TestEndpointCacheIPReuse(t *testing.T) {
	kube, ns := k8s.NewNamespaced(t)
	node := testenv.Node(t, ipReuseCIDR)
	cache := runCache(t, kube, ns, nil)
	fast := map[string]string{
		"pod-ready.stage.kwok.x-k8s.io/delay": "0ms", "pod-ready.stage.kwok.x-k8s.io/jitter-delay": "0ms",
		"pod-delete.stage.kwok.x-k8s.io/delay": "0ms", "pod-delete.stage.kwok.x-k8s.io/jitter-delay": "0ms",
		"pod-create.stage.kwok.x-k8s.io/delay": "0ms",
	}
	spawn := func(id, owner string) (*k8s.Workspace, k8s.Endpoint) {
		w := spawnReadyOn(t, kube, id, owner, node, fast, nil)
		var ep k8s.Endpoint
		testenv.Eventually(t, 5*time.Second, id+" to be ready in the cache", func() (bool, error) {
			ep = lookupState(t, cache, id)
			return ep.State == k8s.EndpointReady, nil
		})
		return w, ep
	}
	old, oldEp := spawn("old", "alice")
	if ip, _, _ := net.SplitHostPort(oldEp.Addr); !ipInCIDR(ip, ipReuseCIDR) {
		t.Fatalf("old got %s, not an IP of node %s (%s)", oldEp.Addr, node, ipReuseCIDR)
	}
	stopAndWaitGone(t, kube, ns, old)
	for round := 0; round < 64; round++ {
		id := fmt.Sprintf("new-%d", round)
		_, newEp := spawn(id, "bob")
		if ep := lookupState(t, cache, "old"); ep.State != k8s.EndpointAbsent {
			t.Fatalf("round %d: deleted workspace still resolves: %+v", round, ep)
		}
		if newEp.Addr == oldEp.Addr {
			if newEp.Owner != "bob" {
				t.Fatalf("reused IP resolves wrongly: %+v", newEp)
			}
			t.Logf("round %d: %s moved from workspace old to workspace %s", round, newEp.Addr, id)
			return
		}
	}
	t.Fatalf("KWOK did not hand the freed IP %s to any of 64 new workspaces", oldEp.Addr)
}

// ipReuseCIDR is the pod CIDR of TestEndpointCacheIPReuse's node.
const ipReuseCIDR = "127.3.0.0/24"

func ipInCIDR(ip, cidr string) bool {
	_, n, err := net.ParseCIDR(cidr)
	return err == nil && n.Contains(net.ParseIP(ip))
}

// TestEndpointCacheRefusesHostNetwork: two workspaces on their node's
// network share the node's IP, and an address there may belong to either
// (or to the node): neither is routed, and neither evicts the other.
func TestEndpointCacheRefusesHostNetwork(t *testing.T) {
	kube, ns := k8s.NewNamespaced(t)
	cache := runCache(t, kube, ns, nil)
	ctx := context.Background()
	var pods []string
	for _, owner := range []string{"alice", "bob"} {
		w, err := kube.SpawnWorkspace(ctx, k8s.SpawnRequest{ID: "host-" + owner, Owner: owner,
			PodAnnotations: map[string]string{"pod-ready.stage.kwok.x-k8s.io/delay": "0ms", "pod-ready.stage.kwok.x-k8s.io/jitter-delay": "0ms"},
			Spec:           &corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "w", Image: "busybox"}}}})
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		w, err = kube.WaitReady(wctx, w, nil)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, w.PodName)
	}
	var ips []string
	for _, name := range pods {
		p, err := kube.GetPod(ctx, ns, name)
		if err != nil {
			t.Fatal(err)
		}
		ips = append(ips, p.Status.PodIP)
	}
	if ips[0] == "" || ips[0] != ips[1] {
		t.Logf("the two pods have IPs %v", ips) // the test holds either way
	}
	for range 2 {
		for _, id := range []string{"host-alice", "host-bob"} {
			if ep := lookupState(t, cache, id); ep.State != k8s.EndpointHostNetwork {
				t.Errorf("%s: %+v, want host network (not routed)", id, ep)
			}
		}
	}
	if s := cache.Stats(); s.Misses != 2 {
		t.Errorf("%d lookups went to the API server, want 2 (one per id): the entries evicted each other", s.Misses)
	}
}

// TestEndpointCacheKeepsWorkspacesOverUnknownIDs: lookups of ids no
// workspace has (a client trying random ones) are remembered apart from
// the workspaces, as many as the cache's size, so they never push a
// workspace's entry out and send its next request to the API server.
func TestEndpointCacheKeepsWorkspacesOverUnknownIDs(t *testing.T) {
	kube, ns := k8s.NewNamespaced(t)
	cache := runCache(t, kube, ns, nil) // room for 8
	if _, err := kube.SpawnWorkspace(context.Background(), k8s.SpawnRequest{ID: "real", Owner: "alice",
		Spec: &corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "busybox"}}}}); err != nil {
		t.Fatal(err)
	}
	if ep := lookupState(t, cache, "real"); ep.State == k8s.EndpointAbsent {
		t.Fatalf("real: %+v", ep)
	}
	for i := range 40 {
		if ep := lookupState(t, cache, fmt.Sprintf("nobody-%d", i)); ep.State != k8s.EndpointAbsent {
			t.Fatalf("nobody-%d: %+v", i, ep)
		}
	}
	before := cache.Stats()
	if ep := lookupState(t, cache, "real"); ep.State == k8s.EndpointAbsent {
		t.Fatalf("real: %+v", ep)
	}
	if after := cache.Stats(); after.Misses != before.Misses {
		t.Errorf("after 40 unknown ids, the workspace's next lookup went to the API server")
	}
	if s := cache.Stats(); s.Len != 1+8 {
		t.Errorf("the cache holds %d entries, want the workspace and 8 unknown ids (its size)", s.Len)
	}
	// An unknown id seen once more is still answered without the API
	// server while it was remembered, and correctly either way.
	if ep := lookupState(t, cache, "nobody-0"); ep.State != k8s.EndpointAbsent {
		t.Errorf("nobody-0: %+v", ep)
	}
}
