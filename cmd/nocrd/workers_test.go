package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
)

// children returns the pids of pid's child processes (which every thread
// lists of its own).
func children(t *testing.T, pid int) []int {
	t.Helper()
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var pids []int
	for _, file := range files {
		b, _ := os.ReadFile(file)
		for _, f := range strings.Fields(string(b)) {
			n, _ := strconv.Atoi(f)
			pids = append(pids, n)
		}
	}
	slices.Sort(pids)
	return pids
}

// listeners counts the listening TCP sockets on port (decimal), from
// /proc/net/tcp.
func listeners(t *testing.T, port string) int {
	t.Helper()
	p, _ := strconv.Atoi(port)
	want := fmt.Sprintf(":%04X", p)
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasSuffix(f[1], want) && f[3] == "0A" {
			n++
		}
	}
	return n
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	// A zombie has exited; only its parent has not collected it yet.
	return err == nil && !strings.Contains(string(b), ") Z ")
}

// proxiedOK is the count of nocrd_proxy_requests_total{outcome="proxied",status="200"}
// in a scrape.
func proxiedOK(t *testing.T, scrape string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^nocrd_proxy_requests_total\{outcome="proxied",status="200"\} (\d+)$`).FindStringSubmatch(scrape)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestProxyWorkers runs the binary with two proxy workers: connections are
// spread over both, the primary adds up their metrics, a worker that dies
// is replaced while the other keeps serving, and no worker outlives the
// primary, whether it stops in order or is killed.
func TestProxyWorkers(t *testing.T) {
	ns := testenv.Namespace(t)
	s := newSigner(t)
	tmp := t.TempDir() // the primary keeps its sockets here
	base, primary := startNocrdProcess(t, ns, s, "PROXY_WORKERS=2", "TMPDIR="+tmp)
	alice := s.token(t, "alice", nil)
	cs := mcpClient(t, base, alice, nil)
	ip := spawn(t, cs, "w1", nil)
	startWorkspaceServer(t, "alice-w1", net.JoinHostPort(ip, "3000"))

	// Each request on a connection of its own: the kernel picks a worker
	// for each connection.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+alice)
		resp, err := fresh.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	const n = 32
	for i := range n {
		if code, body := get("/route/w1/hello?i=" + strconv.Itoa(i)); code != 200 || !strings.Contains(body, "alice-w1") {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}

	dirs, _ := filepath.Glob(filepath.Join(tmp, "nocrd-workers-*"))
	if len(dirs) != 1 {
		t.Fatalf("want one worker directory in %s, found %v", tmp, dirs)
	}
	unix := func(sock string) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	}
	sum := 0
	for i := range 2 {
		resp, err := unix(workerSocket(dirs[0], i)).Get("http://w/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := proxiedOK(t, string(b))
		if got == 0 {
			t.Errorf("worker %d proxied none of %d connections", i, n)
		}
		sum += got
	}
	_, b := do(t, "GET", base+"/metrics", nil, nil)
	if total := proxiedOK(t, string(b)); total != sum || total < n {
		t.Errorf("public /metrics counts %d proxied requests; the workers %d; sent %d", total, sum, n)
	}
	if !strings.Contains(string(b), "nocrd_proxy_workers_running 2\n") {
		t.Errorf("metrics lack nocrd_proxy_workers_running 2:\n%s", b)
	}

	t.Run("a dead worker is replaced", func(t *testing.T) {
		workers := children(t, primary.Pid)
		if len(workers) != 2 {
			t.Fatalf("primary %d has children %v, want 2 workers", primary.Pid, workers)
		}
		if err := syscall.Kill(workers[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// The connections the dead worker held, and those queued on its
		// socket, are reset (the kernel's doing, as with nginx's reuseport
		// workers). Once it is gone, the other worker takes every new
		// connection while its replacement starts.
		// The kernel may close a dead process's sockets after it has
		// exited: wait for one listener on the port.
		port := base[strings.LastIndexByte(base, ':')+1:]
		testenv.Eventually(t, 5*time.Second, "the killed worker's socket to close", func() (bool, error) {
			n := listeners(t, port)
			return !alive(workers[0]) && n == 1, fmt.Errorf("%d listeners on port %s", n, port)
		})
		var wg sync.WaitGroup
		errs := make(chan string, 8)
		for range 8 {
			wg.Go(func() {
				if code, body := get("/route/w1/during"); code != 200 {
					errs <- fmt.Sprintf("%d %s", code, body)
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Errorf("request while a worker restarts: %s", e)
		}
		testenv.Eventually(t, 20*time.Second, "a new worker", func() (bool, error) {
			now := children(t, primary.Pid)
			return len(now) == 2 && !alive(workers[0]) && now[0] != workers[0] && now[1] != workers[0], fmt.Errorf("children %v", now)
		})
		testenv.Eventually(t, 20*time.Second, "readiness with the new worker", func() (bool, error) {
			resp, err := http.Get(base + "/readyz")
			if err != nil {
				return false, err
			}
			resp.Body.Close()
			return resp.StatusCode == 200, fmt.Errorf("readyz %d", resp.StatusCode)
		})
		for i := range 8 {
			if code, body := get("/route/w1/after"); code != 200 {
				t.Errorf("request %d after the restart: %d %s", i, code, body)
			}
		}
	})
}

// TestProxyWorkersStop checks that no worker outlives the primary: after
// SIGINT the primary stops them and exits 0; killed outright, the kernel
// stops them (parent-death signal). Its directory of sockets goes too
// when it stops in order.
func TestProxyWorkersStop(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			tmp := t.TempDir()
			cmd := exec.Command(testenv.NocrdBinary(t), "--host", "127.0.0.1", "--port", "0", "--proxy-workers", "2", "--log-level", "error")
			cmd.Env = append(os.Environ(), "KUBECONFIG="+testenv.Kubeconfig(t), "REAPER_INTERVAL=0", "TMPDIR="+tmp)
			var stderr syncBuffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var workers []int
			testenv.Eventually(t, 30*time.Second, "two workers listening", func() (bool, error) {
				workers = children(t, cmd.Process.Pid)
				socks, _ := filepath.Glob(filepath.Join(tmp, "nocrd-workers-*", "w*.sock"))
				return len(workers) == 2 && len(socks) == 2, fmt.Errorf("children %v, sockets %v; stderr %s", workers, socks, stderr.String())
			})
			_ = cmd.Process.Signal(sig)
			select {
			case err := <-done:
				if sig == syscall.SIGINT && err != nil {
					t.Errorf("primary exited with %v after SIGINT: %s", err, stderr.String())
				}
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("primary did not stop within 15 s of %v", sig)
			}
			testenv.Eventually(t, 10*time.Second, "the workers to stop", func() (bool, error) {
				return !alive(workers[0]) && !alive(workers[1]), fmt.Errorf("workers %v still running", workers)
			})
			if sig == syscall.SIGINT {
				if dirs, _ := filepath.Glob(filepath.Join(tmp, "nocrd-workers-*")); len(dirs) != 0 {
					t.Errorf("the primary left %v behind", dirs)
				}
			}
		})
	}
}

// TestProxyWorkersPortTaken: workers that cannot open the port stop the
// primary's start-up, with the reason in the log.
func TestProxyWorkersPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	cmd := exec.Command(testenv.NocrdBinary(t), "--host", "127.0.0.1", "--port", port, "--proxy-workers", "2")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+testenv.Kubeconfig(t), "REAPER_INTERVAL=0", "TMPDIR="+t.TempDir())
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("exit: %v, want status 1", err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("nocrd did not give up within 30 s")
	}
	for _, want := range []string{"address already in use", "stopped while starting"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, stderr.String())
		}
	}
}

// TestObserveDeletionInput: a worker's control socket takes only a POSTed
// pod at pathDeleted, and says what was wrong with anything else.
func TestObserveDeletionInput(t *testing.T) {
	kube, err := k8s.NewForConfig(k8s.Config{Mode: k8s.ModeNamespaced, Namespace: "default"}, testenv.AdminConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(observeDeletion(kube))
	defer srv.Close()
	for _, c := range []struct {
		name, method, body string
		status             int
		says               string
	}{
		{"a pod", http.MethodPost, `{"metadata":{"name":"ws-a","namespace":"default","resourceVersion":"7"}}`, http.StatusNoContent, ""},
		{"not JSON", http.MethodPost, `ws-a`, http.StatusBadRequest, "not a pod"},
		{"no name", http.MethodPost, `{"metadata":{}}`, http.StatusBadRequest, "not a pod"},
		{"GET", http.MethodGet, ``, http.StatusMethodNotAllowed, "POST only"},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+pathDeleted, strings.NewReader(c.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(string(b), c.says) {
			t.Errorf("%s: %d %q, want %d saying %q", c.name, resp.StatusCode, b, c.status, c.says)
		}
	}
}
