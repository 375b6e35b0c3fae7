// Package testenv gives nocrd's tests what they share: the real test
// cluster (one per make test run, or one per test binary run alone), a
// fresh namespace per test, identities with limited rights, and the built
// nocrd binary.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"go.uber.org/goleak"

	"github.com/nocrd/nocrd/internal/testcluster"
)

var kubeconfig string

// Main runs a package's tests against the test cluster and exits. A cluster
// that cannot start fails the run: tests never skip for want of one.
func Main(m *testing.M) {
	kc, stop, err := testcluster.ForTests(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: cannot start the test cluster:", err)
		os.Exit(1)
	}
	kubeconfig = kc
	code := m.Run()
	stop()
	if code == 0 {
		if err := goleak.Find(leakIgnores...); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: goroutines leaked:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// leakIgnores are goroutines that libraries start once per process and
// never stop; anything else still running after the tests is a leak.
var leakIgnores = []goleak.Option{
	// klog's flush daemon, started by client-go's logging on first use.
	goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	// Connections to the API server held by client-go's process-wide
	// transport cache.
	goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
	// fasthttp's worker-pool cleaner ends on its own timer after a server
	// shuts down; its date updater lives for the process.
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	// The coarse clock (internal/clock) advances for the process.
	goleak.IgnoreAnyFunction("github.com/nocrd/nocrd/internal/clock.advance"),
}

// Kubeconfig returns the admin kubeconfig path of the test cluster.
func Kubeconfig(t testing.TB) string {
	t.Helper()
	if kubeconfig == "" {
		t.Fatal("testenv.Main must run the package's tests (add TestMain)")
	}
	return kubeconfig
}

// KubeconfigPath is Kubeconfig for code without a testing.TB, such as
// testable examples; it is empty outside Main.
func KubeconfigPath() string { return kubeconfig }

// AdminConfig returns a system:masters REST config for the test cluster.
func AdminConfig(t testing.TB) *rest.Config {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", Kubeconfig(t))
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// Admin returns a system:masters clientset for the test cluster.
func Admin(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(AdminConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// Namespace creates a namespace with a unique name for one test and deletes
// it when the test ends, so tests are independent.
func Namespace(t testing.TB) string {
	t.Helper()
	ns := "t-" + randomSuffix()
	cs := Admin(t)
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		err := cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", ns, err)
		}
	})
	return ns
}

// Node adds a KWOK node of the test's own, with the pod CIDR cidr, and
// removes it when the test ends; pods placed on it with spec.nodeName get
// their IPs from cidr. KWOK keeps a pool of IPs per pod CIDR and hands a
// new pod one of the pool's freed IPs at random (a new one when none is
// free), so on the shared node, where other test packages free and take
// IPs all the time, a freed IP can go anywhere. On this node, whose taint
// keeps every other pod off it, a test that frees an IP gets it back
// within as many new pods as the pool has freed IPs. Give each test a
// CIDR of its own inside 127.0.0.0/8, apart from testcluster.PodCIDR: two
// nodes with one CIDR share a pool.
func Node(t testing.TB, cidr string) string {
	t.Helper()
	cs := Admin(t)
	ctx := context.Background()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "t-" + randomSuffix(), Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"}},
		Spec: corev1.NodeSpec{PodCIDR: cidr,
			Taints: []corev1.Taint{{Key: "nocrd.test/own-node", Effect: corev1.TaintEffectNoSchedule}}},
	}
	nodes := cs.CoreV1().Nodes()
	if _, err := nodes.Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Its pods first, while KWOK still runs the node to finish them.
		ctx := context.Background()
		onNode := metav1.ListOptions{FieldSelector: "spec.nodeName=" + node.Name}
		zero := int64(0)
		pods, err := cs.CoreV1().Pods("").List(ctx, onNode)
		if err != nil {
			t.Errorf("list the pods on node %s: %v", node.Name, err)
			return
		}
		for _, p := range pods.Items {
			if err := cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete pod %s/%s: %v", p.Namespace, p.Name, err)
			}
		}
		Eventually(t, 30*time.Second, "the pods on node "+node.Name+" to be gone", func() (bool, error) {
			pods, err := cs.CoreV1().Pods("").List(ctx, onNode)
			return err == nil && len(pods.Items) == 0, err
		})
		if err := nodes.Delete(ctx, node.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete node %s: %v", node.Name, err)
		}
	})
	Eventually(t, 30*time.Second, "KWOK to make node "+node.Name+" ready", func() (bool, error) {
		n, err := nodes.Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
	return node.Name
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ServiceAccountConfig returns a REST config that authenticates as the
// ServiceAccount ns/name with a fresh TokenRequest token, so a test runs
// with exactly the rights RBAC gives that account.
func ServiceAccountConfig(t testing.TB, ns, name string) *rest.Config {
	t.Helper()
	cs := Admin(t)
	ctx := context.Background()
	_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	exp := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("request token for %s/%s: %v", ns, name, err)
	}
	admin := AdminConfig(t)
	return &rest.Config{
		Host:            admin.Host,
		BearerToken:     tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: admin.CAFile, CAData: admin.CAData},
	}
}

// WaitAllowed waits until the identity of rc may verb resource in ns ("":
// all namespaces), as SelfSubjectAccessReview answers. The API server's
// RBAC authorizer learns of a new Role or binding from a watch, a moment
// after the create returns; a server started at once (as a test starts
// nocrd) may otherwise see some of its rights and not others.
func WaitAllowed(t testing.TB, rc *rest.Config, ns, verb, resource string) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: resource},
	}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(), review, metav1.CreateOptions{})
		if err == nil && res.Status.Allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s in %q still not allowed after 10s: %v %+v", verb, resource, ns, err, res)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WriteKubeconfig writes a kubeconfig for rc into the test's temp dir.
func WriteKubeconfig(t testing.TB, rc *rest.Config) string {
	t.Helper()
	if rc.BearerToken == "" {
		return Kubeconfig(t)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, certificate-authority-data: %q}
users:
- name: test
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: test}
current-context: test
`, rc.Host, base64.StdEncoding.EncodeToString(rc.CAData), rc.BearerToken)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// NocrdBinary returns the nocrd binary: $NOCRD_BIN (make test builds it),
// else one built now for this test binary.
func NocrdBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("NOCRD_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nocrd-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "nocrd")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/nocrd/nocrd/cmd/nocrd")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build nocrd: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// RepoRoot returns the repository's root directory.
func RepoRoot() string { return repoRoot() }

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Eventually polls cond until it returns true or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, lastErr)
}

// ApplyYAML creates every object of a multi-document YAML manifest and
// deletes them when the test ends.
func ApplyYAML(t testing.TB, manifest string) {
	t.Helper()
	rc := AdminConfig(t)
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, doc := range strings.Split(manifest, "\n---\n") {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			t.Fatalf("decode manifest: %v", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("map %s: %v", gvk, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
		}
		if _, err := ri.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s %s: %v", gvk.Kind, obj.GetName(), err)
		}
		t.Cleanup(func() { _ = ri.Delete(context.Background(), obj.GetName(), metav1.DeleteOptions{}) })
	}
}

var (
	npmMu   sync.Mutex
	npmDone = map[string]error{}
)

// NPMInstall installs the npm dependencies of the package in dir (repo-
// relative or absolute) from its package-lock.json, once per test binary
// and only when dir has no node_modules yet, and returns dir's absolute
// path. node and npm come from make deps.
func NPMInstall(t testing.TB, dir string) string {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	npmMu.Lock()
	defer npmMu.Unlock()
	err, done := npmDone[abs]
	if !done {
		if _, serr := os.Stat(filepath.Join(abs, "node_modules", ".package-lock.json")); serr != nil {
			cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
			cmd.Dir = abs
			if out, cerr := cmd.CombinedOutput(); cerr != nil {
				err = fmt.Errorf("npm ci in %s: %w (node and npm are installed by make deps)\n%s", abs, cerr, out)
			}
		}
		npmDone[abs] = err
	}
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// kwokLogs is KWOK's Logs resource: which files its simulated kubelet
// serves as a pod's container logs.
var kwokLogs = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "logs"}

// ServePodLogs has KWOK's simulated kubelet serve the file current (CRI
// log format) as the log of pod's container, and previous, when not
// empty, as its previous instance's.
func ServePodLogs(t testing.TB, ns, pod, container, current, previous string) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(AdminConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	spec := map[string]any{"containers": []any{container}, "logsFile": current}
	if previous != "" {
		spec["previousLogsFile"] = previous
	}
	logs := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
		"metadata": map[string]any{"name": pod, "namespace": ns},
		"spec":     map[string]any{"logs": []any{spec}},
	}}
	if _, err := dyn.Resource(kwokLogs).Namespace(ns).Create(context.Background(), logs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// ServiceAccountKey returns the PEM public key the test cluster's service-
// account tokens are signed with, and their issuer, for a verifier that
// accepts those tokens.
func ServiceAccountKey(t testing.TB) (pemKey, issuer string) {
	t.Helper()
	b, err := os.ReadFile(testcluster.ServiceAccountPublicKey(filepath.Dir(Kubeconfig(t))))
	if err != nil {
		t.Fatal(err)
	}
	return string(b), testcluster.ServiceAccountIssuer
}
