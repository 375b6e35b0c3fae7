package k8s

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSpawnReclaimsOrphanedServiceAccount: a nocrd stopped between
// creating a workspace's ServiceAccount and its pod leaves the account
// with no pod to own it. The next spawn of that workspace replaces it
// instead of failing on its name for ever; an account that a pod owns, or
// that is younger than orphanAge (a spawn may still be on its way to its
// pod), is left alone.
func TestSpawnReclaimsOrphanedServiceAccount(t *testing.T) {
	kube, ns := NewNamespaced(t)
	ctx := context.Background()
	req := SpawnRequest{ID: "w1", Owner: "alice", Annotations: map[string]string{AnnotationIAMRoleARN: "arn:aws:iam::1:role/new"},
		Spec: &corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "busybox"}}}}
	name := WorkspacePodName("alice", "w1")
	// What the interrupted spawn left: the account, labelled as its pod
	// would have been, and no pod.
	leftover := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels:      map[string]string{LabelType: TypeWorkspace, LabelWorkspaceID: "w1", LabelUserSub: OwnerLabel("alice")},
		Annotations: map[string]string{AnnotationEKSRoleARN: "arn:aws:iam::1:role/old"}}}
	old, err := kube.kube.CoreV1().ServiceAccounts(ns).Create(ctx, leftover, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := kube.SpawnWorkspace(ctx, req); err == nil || !strings.Contains(err.Error(), "try again") {
		t.Fatalf("spawn next to an account younger than orphanAge: %v, want an error saying to try again", err)
	}
	defer func(age time.Duration) { orphanAge = age }(orphanAge)
	orphanAge = 0
	w, err := kube.SpawnWorkspace(ctx, req)
	if err != nil {
		t.Fatalf("spawn next to an orphaned account: %v", err)
	}
	sa, err := kube.kube.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sa.UID == old.UID || sa.Annotations[AnnotationEKSRoleARN] != "arn:aws:iam::1:role/new" || len(sa.OwnerReferences) != 1 || sa.OwnerReferences[0].Name != w.PodName {
		t.Errorf("the account after the spawn: uid %s (old %s), annotations %v, owners %v", sa.UID, old.UID, sa.Annotations, sa.OwnerReferences)
	}

	// Another owner's account of the same name is never taken.
	other := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: WorkspacePodName("bob", "w2"),
		Labels: map[string]string{LabelType: TypeWorkspace, LabelWorkspaceID: "w-other", LabelUserSub: OwnerLabel("bob")}}}
	if other, err = kube.kube.CoreV1().ServiceAccounts(ns).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.SpawnWorkspace(ctx, SpawnRequest{ID: "w2", Owner: "bob", Annotations: req.Annotations, Spec: req.Spec}); err == nil {
		t.Error("a spawn took an account labelled for another workspace")
	}
	if sa, err := kube.kube.CoreV1().ServiceAccounts(ns).Get(ctx, other.Name, metav1.GetOptions{}); err != nil || sa.UID != other.UID {
		t.Errorf("the other workspace's account was replaced: %v", err)
	}
}
