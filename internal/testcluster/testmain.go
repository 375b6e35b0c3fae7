package testcluster

import (
	"context"
	"fmt"
	"io"
	"os"
)

// EnvKubeconfig names the variable through which make test hands one running
// cluster to every test package.
const EnvKubeconfig = "NOCRD_TEST_KUBECONFIG"

// ForTests returns the admin kubeconfig of a cluster for a test binary: the
// one named by NOCRD_TEST_KUBECONFIG when set, else a cluster started now in
// a temporary directory. stop tears down only a cluster that ForTests
// started. A cluster that cannot start is an error: tests never skip.
func ForTests(out io.Writer) (kubeconfig string, stop func(), err error) {
	if kc := os.Getenv(EnvKubeconfig); kc != "" {
		if _, err := os.Stat(kc); err != nil {
			return "", nil, fmt.Errorf("%s=%s: %w", EnvKubeconfig, kc, err)
		}
		return kc, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "nocrd-testcluster-")
	if err != nil {
		return "", nil, err
	}
	c, err := StartTied(context.Background(), dir, out)
	if err != nil {
		return "", nil, err
	}
	return c.Kubeconfig, func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintln(out, "testcluster: stop:", err)
		}
		_ = os.RemoveAll(dir)
	}, nil
}
