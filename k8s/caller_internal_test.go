package k8s

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestCallerGuards: acting for a caller, CreatePod refuses nocrd's own
// keys (without one it takes them, as ever); and the patch checkPatch
// returns applies to the pod it checked and to no other pod of that name.
func TestCallerGuards(t *testing.T) {
	kube, ns := NewNamespaced(t)
	ctx := context.Background()
	spec := &corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}
	forged := metav1.ObjectMeta{Name: "forged", Labels: map[string]string{LabelType: TypeWorkspace}, Annotations: map[string]string{AnnotationOwner: "alice"}}
	if _, err := kube.CreatePod(WithCaller(ctx, Caller{Subject: "bob"}), "", forged, spec); err == nil || !strings.Contains(err.Error(), "nogoo9/type is nocrd's own") {
		t.Errorf("bob created a pod labelled as a workspace: %v", err)
	}
	if _, err := kube.CreatePod(ctx, "", forged, spec); err != nil {
		t.Errorf("without a caller: %v", err)
	}

	p, err := kube.CreatePod(WithCaller(ctx, Caller{Subject: "bob"}), "", metav1.ObjectMeta{Name: "plain"}, spec)
	if err != nil {
		t.Fatal(err)
	}
	stale := p.DeepCopy()
	stale.UID = types.UID("0e6f2a8e-0000-4000-8000-000000000000") // a pod of that name since deleted
	for _, c := range []struct {
		base *corev1.Pod
		ok   bool
	}{{stale, false}, {p, true}} {
		patch, err := kube.checkPatch(WithCaller(ctx, Caller{Subject: "bob"}), c.base, []byte(`{"metadata":{"labels":{"team":"x"}}}`))
		if err != nil {
			t.Fatal(err)
		}
		_, err = kube.kube.CoreV1().Pods(ns).Patch(ctx, "plain", types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		if (err == nil) != c.ok {
			t.Errorf("patch %s based on uid %s: %v", patch, c.base.UID, err)
		}
	}
	if _, err := kube.checkPatch(WithCaller(ctx, Caller{Subject: "bob"}), p, []byte(`{"metadata":{"$patch":"replace","labels":{"nogoo9/type":"workspace"}}}`)); err == nil {
		t.Error("a replacing patch set a nogoo9/ label")
	}
}
