package k8s_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/nocrd/nocrd/k8s"
)

// countingAdmitter admits every pod and records, per owner, the workspace
// count each review showed.
type countingAdmitter struct {
	mu   sync.Mutex
	seen map[string][]int
}

func (a *countingAdmitter) Admit(_ context.Context, r *k8s.AdmissionReview) (*corev1.Pod, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen[r.Owner] = append(a.seen[r.Owner], r.Workspaces.Count)
	return r.Pod, nil
}

// TestAdmissionCountsTheExactOwner: an owner that is not a valid label
// value is labelled with a hash, and another owner may be called exactly
// that hash. Each is shown, charged for and lists only its own
// workspaces.
func TestAdmissionCountsTheExactOwner(t *testing.T) {
	kube, _ := k8s.NewNamespaced(t)
	adm := &countingAdmitter{seen: map[string][]int{}}
	kube.SetAdmitter(adm)
	alice := "alice@example.com"
	mallory := k8s.OwnerLabel(alice) // a valid label value: its own label
	spawn := func(id, owner string) {
		t.Helper()
		_, err := kube.SpawnWorkspace(context.Background(), k8s.SpawnRequest{ID: id, Owner: owner,
			Spec: &corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "busybox"}}}})
		if err != nil {
			t.Fatalf("spawn %s for %s: %v", id, owner, err)
		}
	}
	spawn("a1", alice)
	spawn("m1", mallory)
	spawn("a2", alice)
	spawn("m2", mallory)
	adm.mu.Lock()
	gotAlice, gotMallory := adm.seen[alice], adm.seen[mallory]
	adm.mu.Unlock()
	if len(gotAlice) != 2 || gotAlice[0] != 0 || gotAlice[1] != 1 {
		t.Errorf("%s's reviews counted %v workspaces, want [0 1]", alice, gotAlice)
	}
	if len(gotMallory) != 2 || gotMallory[0] != 0 || gotMallory[1] != 1 {
		t.Errorf("%s's reviews counted %v workspaces, want [0 1]", mallory, gotMallory)
	}
	for owner, want := range map[string][]string{alice: {"a1", "a2"}, mallory: {"m1", "m2"}} {
		ws, err := kube.ListWorkspaces(context.Background(), "", owner)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, w := range ws {
			ids = append(ids, w.ID)
		}
		if len(ids) != 2 || !(ids[0] == want[0] && ids[1] == want[1] || ids[0] == want[1] && ids[1] == want[0]) {
			t.Errorf("%s lists %v, want %v", owner, ids, want)
		}
	}
}

// quotaAdmitter denies a spawn when the owner has max workspaces already.
type quotaAdmitter struct{ max int }

func (a quotaAdmitter) Admit(_ context.Context, r *k8s.AdmissionReview) (*corev1.Pod, error) {
	if r.Workspaces.Count >= a.max {
		return nil, fmt.Errorf("quota: %s has %d workspaces", r.Owner, r.Workspaces.Count)
	}
	return r.Pod, nil
}

// TestAdmissionSeesConcurrentSpawns: spawns of one owner made at once are
// admitted one after the other, each review counting the workspaces the
// ones before it created, so a quota holds however many an agent starts
// together. Different ids do not share the per-id lock that spawns of one
// id take.
func TestAdmissionSeesConcurrentSpawns(t *testing.T) {
	kube, _ := k8s.NewNamespaced(t)
	kube.SetAdmitter(quotaAdmitter{max: 2})
	const n = 6
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := kube.SpawnWorkspace(context.Background(), k8s.SpawnRequest{ID: fmt.Sprintf("q%d", i), Owner: "alice",
				Spec: &corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "busybox"}}}})
			errs <- err
		}()
	}
	admitted := 0
	for range n {
		if err := <-errs; err == nil {
			admitted++
		} else if !strings.Contains(err.Error(), "quota") {
			t.Errorf("spawn failed for another reason: %v", err)
		}
	}
	ws, err := kube.ListWorkspaces(context.Background(), "", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if admitted != 2 || len(ws) != 2 {
		t.Errorf("with a quota of 2, %d of %d concurrent spawns were admitted and alice has %d workspaces", admitted, n, len(ws))
	}
}
