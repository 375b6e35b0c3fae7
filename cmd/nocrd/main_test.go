package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nocrd/nocrd/internal/testcert"
	"github.com/nocrd/nocrd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestBinaryExitCodes runs the real binary: bad input exits 2 with a
// message naming the flag and variable, --help and --version exit 0.
func TestBinaryExitCodes(t *testing.T) {
	bin := testenv.NocrdBinary(t)
	cases := []struct {
		args     []string
		env      []string
		code     int
		stdout   string
		stderr   string
		noStdout bool
	}{
		{args: []string{"--version"}, code: 0, stdout: "nocrd "},
		{args: []string{"--help"}, code: 0, stdout: "--transport"},
		{args: []string{"--transport", "x"}, code: 2, stderr: "--transport/TRANSPORT", noStdout: true},
		{env: []string{"PORT=abc"}, code: 2, stderr: "--port/PORT", noStdout: true},
		{args: []string{"--nope"}, code: 2, stderr: "flag provided but not defined", noStdout: true},
		{args: []string{"--kubeconfig", "/does/not/exist"}, code: 1, stderr: "/does/not/exist"},
		{args: []string{"--resource-tools"}, env: []string{"AUTH_ENABLED=true", "JWT_SECRET=s"}, code: 2, stderr: "--resource-tools/RESOURCE_TOOLS: with AUTH_ENABLED the generic resource tools must call Kubernetes with each caller's own token", noStdout: true},
		{args: []string{"--resource-tools-caller-token"}, code: 2, stderr: "--resource-tools-caller-token/RESOURCE_TOOLS_CALLER_TOKEN: applies to the resource tools", noStdout: true},
	}
	for _, c := range cases {
		cmd := exec.Command(bin, c.args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, c.env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code || !strings.Contains(stdout.String(), c.stdout) || !strings.Contains(stderr.String(), c.stderr) || c.noStdout && stdout.Len() > 0 {
			t.Errorf("nocrd %v %v: exit %d, stdout %q, stderr %q; want exit %d, stdout ~%q, stderr ~%q",
				c.env, c.args, code, stdout.String(), stderr.String(), c.code, c.stdout, c.stderr)
		}
	}
}

// TestServeHTTPS runs nocrd in-process with a TLS certificate and talks MCP
// to it over HTTPS; cancelling the context shuts it down cleanly.
func TestServeHTTPS(t *testing.T) {
	ns := testenv.Namespace(t)
	first := testcert.New(t, 1)
	certFile, keyFile := first.WriteFiles(t, t.TempDir())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	var stderr syncBuffer
	go func() {
		done <- run(ctx, []string{"--host", "127.0.0.1", "--port", port, "--tls-cert", certFile, "--tls-key", keyFile, "-n", ns, "--base-url", "/gw"},
			[]string{"KUBECONFIG=" + testenv.Kubeconfig(t)}, nil, &bytes.Buffer{}, &stderr)
	}()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: first.ClientConfig()}}
	url := "https://127.0.0.1:" + port + "/gw/mcp"
	// healthy reports whether c, trusting one certificate, gets /healthz.
	healthy := func(c *http.Client) func() (bool, error) {
		return func() (bool, error) {
			resp, err := c.Get("https://127.0.0.1:" + port + "/gw/healthz")
			if err != nil {
				return false, err
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		}
	}
	testenv.Eventually(t, 20*time.Second, "nocrd to serve HTTPS", healthy(client))
	cs, err := mcpsdk.NewClient(&mcpsdk.Implementation{Name: "t", Version: "1"}, nil).
		Connect(ctx, &mcpsdk.StreamableClientTransport{Endpoint: url, HTTPClient: client}, nil)
	if err != nil {
		t.Fatalf("connect over https: %v\n%s", err, stderr.String())
	}
	res, err := cs.CallTool(ctx, &mcpsdk.CallToolParams{Name: "current_namespace", Arguments: map[string]any{}})
	if err != nil || res.IsError || res.Content[0].(*mcpsdk.TextContent).Text != "Namespace: "+ns+"\nMode: cluster" {
		t.Fatalf("current_namespace over https: %v %+v", err, res)
	}
	cs.Close()

	// The certificate is renewed in place (as cert-manager renews a
	// Secret): new connections get the new one, without a restart.
	second := testcert.New(t, 2)
	for f, b := range map[string][]byte{keyFile: second.KeyPEM, certFile: second.CertPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	renewed := &http.Client{Transport: &http.Transport{TLSClientConfig: second.ClientConfig()}}
	testenv.Eventually(t, 10*time.Second, "new connections to get the renewed certificate", healthy(renewed))
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("run exited %d after shutdown: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nocrd did not stop after its context ended")
	}
	if !strings.Contains(stderr.String(), "https://127.0.0.1:"+port+"/gw/mcp") {
		t.Errorf("start-up log does not name the endpoint: %s", stderr.String())
	}
}

// TestDemoSetup is idempotent: it creates the namespace and the example
// template once, and a second run changes nothing.
func TestDemoSetup(t *testing.T) {
	ns := "demo-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	admin := testenv.Admin(t)
	t.Cleanup(func() { _ = admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	env := []string{"KUBECONFIG=" + testenv.Kubeconfig(t)}
	var out1, out2, errb bytes.Buffer
	if code := run(context.Background(), []string{"demo-setup", "-n", ns}, env, nil, &out1, &errb); code != 0 {
		t.Fatalf("demo-setup exit %d: %s", code, errb.String())
	}
	if code := run(context.Background(), []string{"demo-setup", "-n", ns}, env, nil, &out2, &errb); code != 0 {
		t.Fatalf("second demo-setup exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out1.String(), "created namespace "+ns) || !strings.Contains(out1.String(), "created template") ||
		!strings.Contains(out2.String(), "already exists") || strings.Contains(out2.String(), "created") {
		t.Errorf("demo-setup output: first %q, second %q", out1.String(), out2.String())
	}
	cm, err := admin.CoreV1().ConfigMaps(ns).Get(context.Background(), exampleTemplate, metav1.GetOptions{})
	if err != nil || cm.Labels["nogoo9/pod-template"] != "true" || !strings.Contains(cm.Data["spec"], "busybox") {
		t.Errorf("example template: %v %+v", err, cm)
	}
	// The namespace enforces Pod Security's baseline: the API server
	// refuses a pod on the node's network there.
	host := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "host"},
		Spec: corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := admin.CoreV1().Pods(ns).Create(context.Background(), host, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "PodSecurity") {
		t.Errorf("a hostNetwork pod in the demo namespace: %v, want a PodSecurity refusal", err)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
