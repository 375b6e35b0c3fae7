// Command nocrd-cluster starts and stops nocrd's local test cluster: a real
// etcd, kube-apiserver, kube-controller-manager and kube-scheduler on
// 127.0.0.1, with KWOK simulating a node.
//
//	nocrd-cluster up [-dir DIR]       start (idempotent: a healthy cluster is kept)
//	nocrd-cluster down [-dir DIR]     stop
//	nocrd-cluster status [-dir DIR]   exit 0 when every daemon runs
//	nocrd-cluster kubeconfig [-dir DIR]  print the admin kubeconfig path
//	nocrd-cluster run [-dir DIR] -- CMD ARGS...
//	    start a fresh cluster, run CMD with NOCRD_TEST_KUBECONFIG and
//	    KUBECONFIG set to its admin kubeconfig, stop the cluster, and exit
//	    with CMD's status (make test runs go test this way)
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/nocrd/nocrd/internal/testcluster"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", defaultDir(), "cluster directory (certificates, data, logs, kubeconfig)")
	_ = fs.Parse(os.Args[2:])

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	kubeconfig := filepath.Join(*dir, "kubeconfig")
	switch os.Args[1] {
	case "up":
		if testcluster.Healthy(*dir) {
			fmt.Printf("nocrd-cluster: already running; KUBECONFIG=%s\n", kubeconfig)
			return
		}
		if testcluster.Running(*dir) {
			fmt.Println("nocrd-cluster: a partial cluster is running; restarting it")
			if err := testcluster.Stop(*dir); err != nil {
				fail(err)
			}
		}
		if _, err := testcluster.Start(ctx, *dir, os.Stdout); err != nil {
			fail(err)
		}
	case "down":
		if err := testcluster.Stop(*dir); err != nil {
			fail(err)
		}
		fmt.Println("nocrd-cluster: stopped")
	case "status":
		if !testcluster.Healthy(*dir) {
			fmt.Println("nocrd-cluster: not running")
			os.Exit(1)
		}
		fmt.Printf("nocrd-cluster: running; KUBECONFIG=%s\n", kubeconfig)
	case "kubeconfig":
		fmt.Println(kubeconfig)
	case "run":
		os.Exit(runWith(ctx, *dir, fs.Args()))
	default:
		usage()
	}
}

// runWith runs a command against a cluster started for it alone.
func runWith(ctx context.Context, dir string, args []string) int {
	if len(args) == 0 {
		usage()
	}
	if testcluster.Running(dir) {
		fail(fmt.Errorf("a cluster is already running in %s; use another -dir", dir))
	}
	c, err := testcluster.StartTied(ctx, dir, os.Stdout)
	if err != nil {
		fail(err)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	failures := &failureLines{max: 200}
	cmd.Stdin = os.Stdin
	cmd.Stdout, cmd.Stderr = io.MultiWriter(os.Stdout, failures), io.MultiWriter(os.Stderr, failures)
	cmd.Env = append(os.Environ(), testcluster.EnvKubeconfig+"="+c.Kubeconfig, "KUBECONFIG="+c.Kubeconfig)
	err = cmd.Run()
	code := 0
	if err != nil {
		code = 1
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() > 0 {
			code = exit.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "nocrd-cluster: %s failed: %v\n", args[0], err)
		fmt.Fprintln(os.Stderr, c.LogTails(20))
		// Last, so that a report that keeps only the end still says what
		// failed and why.
		if out := failures.String(); out != "" {
			fmt.Fprintf(os.Stderr, "==== failures reported by %s ====\n%s", args[0], out)
		}
	}
	if !testcluster.Healthy(dir) {
		fmt.Fprintln(os.Stderr, "nocrd-cluster: a cluster component died during the run")
		fmt.Fprintln(os.Stderr, c.LogTails(40))
		if code == 0 {
			code = 1
		}
	}
	if err := c.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "nocrd-cluster: stop:", err)
	}
	fmt.Println("nocrd-cluster: stopped")
	return code
}

// failureLines keeps the lines of go test output that say what failed: the
// --- FAIL lines, the test log lines under them, panics and the FAIL
// summaries. It keeps the last max of them.
type failureLines struct {
	max     int
	mu      sync.Mutex
	partial []byte
	lines   []string
	inFail  bool // under a --- FAIL line: keep its indented log lines
	inPanic bool // after a panic: keep everything up to the FAIL line
}

func (f *failureLines) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.partial = append(f.partial, p...)
	for {
		i := bytes.IndexByte(f.partial, '\n')
		if i < 0 {
			break
		}
		f.line(string(f.partial[:i]))
		f.partial = f.partial[i+1:]
	}
	if len(f.partial) > 64<<10 {
		f.partial = f.partial[:0] // a line this long is no test report
	}
	return len(p), nil
}

func (f *failureLines) line(l string) {
	trimmed := strings.TrimLeft(l, " \t")
	switch {
	case strings.HasPrefix(l, "panic:"):
		f.inPanic = true
	case strings.HasPrefix(trimmed, "--- FAIL"):
		f.inFail = true
	case strings.HasPrefix(trimmed, "--- PASS"), strings.HasPrefix(trimmed, "--- SKIP"), strings.HasPrefix(l, "=== RUN"),
		strings.HasPrefix(l, "ok "):
		f.inFail = false
	case strings.HasPrefix(l, "FAIL"):
		f.inFail, f.inPanic = false, false
		f.keep(l)
		return
	}
	if f.inPanic || (f.inFail && (l != trimmed || strings.HasPrefix(trimmed, "--- FAIL"))) {
		f.keep(l)
	}
}

func (f *failureLines) keep(l string) {
	if len(l) > 2000 {
		l = l[:2000] + "…"
	}
	f.lines = append(f.lines, l)
	if len(f.lines) > f.max {
		f.lines = f.lines[len(f.lines)-f.max:]
	}
}

func (f *failureLines) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.lines) == 0 {
		return ""
	}
	return strings.Join(f.lines, "\n") + "\n"
}

func defaultDir() string {
	if d := os.Getenv("NOCRD_CLUSTER_DIR"); d != "" {
		return d
	}
	cache, err := testcluster.CacheDir()
	if err != nil {
		fail(err)
	}
	return filepath.Join(cache, "cluster")
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: nocrd-cluster up|down|status|kubeconfig|run [-dir DIR] [-- CMD ARGS...]")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "nocrd-cluster:", err)
	os.Exit(1)
}
