package k8s

import (
	"testing"

	"github.com/nocrd/nocrd/internal/testenv"
)

// NewNamespaced returns a client in namespaced mode on a namespace of
// the test's own in the test cluster, and that namespace; for this
// package's tests, internal and external.
func NewNamespaced(t testing.TB) (*Client, string) {
	t.Helper()
	ns := testenv.Namespace(t)
	kube, err := NewForConfig(Config{Mode: ModeNamespaced, Namespace: ns}, testenv.AdminConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	return kube, ns
}
