package k8s_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
)

// TestReaperDeletesExpiredWorkspaces spawns a workspace with a short TTL
// and one with a long one; the reaper, holding its Lease, deletes only the
// expired one, and releases the Lease when stopped.
func TestReaperDeletesExpiredWorkspaces(t *testing.T) {
	kube, ns := k8s.NewNamespaced(t)
	ctx := context.Background()
	spec := &corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "busybox"}}}
	for id, ttl := range map[string]string{"short": "1s", "long": "1h"} {
		if _, err := kube.SpawnWorkspace(ctx, k8s.SpawnRequest{ID: id, Spec: spec, Annotations: map[string]string{k8s.AnnotationTTL: ttl}}); err != nil {
			t.Fatal(err)
		}
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- kube.RunReaper(rctx, 200*time.Millisecond, "test-reaper", slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()

	admin := testenv.Admin(t)
	testenv.Eventually(t, 30*time.Second, "the expired workspace to be deleted", func() (bool, error) {
		p, err := admin.CoreV1().Pods(ns).Get(ctx, "ws-anonymous-short", metav1.GetOptions{})
		return apierrors.IsNotFound(err) || err == nil && p.DeletionTimestamp != nil, err
	})
	lease, err := admin.CoordinationV1().Leases(ns).Get(ctx, k8s.ReaperLease, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "test-reaper" {
		t.Errorf("reaper lease = %+v, %v", lease, err)
	}
	if p, err := admin.CoreV1().Pods(ns).Get(ctx, "ws-anonymous-long", metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Errorf("the unexpired workspace was touched: %v %v", err, p)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("reaper did not stop")
	}
	testenv.Eventually(t, 10*time.Second, "the lease to be released", func() (bool, error) {
		l, err := admin.CoordinationV1().Leases(ns).Get(ctx, k8s.ReaperLease, metav1.GetOptions{})
		return err == nil && (l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == ""), fmt.Errorf("%v %+v", err, l)
	})
}

// TestReaperWithoutItsNamespace returns at once, saying why, instead of
// failing to take its Lease every few seconds forever.
func TestReaperWithoutItsNamespace(t *testing.T) {
	kube, err := k8s.NewForConfig(k8s.Config{Mode: k8s.ModeCluster, Namespace: "no-such-namespace"}, testenv.AdminConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := kube.RunReaper(ctx, time.Second, "t", slog.New(slog.NewTextHandler(&logs, nil))); err != nil || ctx.Err() != nil {
		t.Fatalf("RunReaper = %v (ctx %v)", err, ctx.Err())
	}
	if !strings.Contains(logs.String(), "lease namespace does not exist") {
		t.Errorf("log = %q", logs.String())
	}
}
