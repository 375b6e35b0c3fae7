// Package testcluster brings up a real Kubernetes control plane on 127.0.0.1
// for nocrd's tests and its local demo: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler built from source, and KWOK
// simulating a node so that scheduled pods become Running with a pod IP.
//
// Every daemon is started in its own session with its PID recorded in the
// cluster directory, so a cluster outlives the process that started it
// (make cluster-up) and can be stopped from another one (make cluster-down).
package testcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// NodeName is the simulated node. Its pod CIDR lies in 127.0.0.0/8, so a
// test server bound on podIP:port stands in for a workspace container; a
// /16 leaves room for benchmarks with hundreds of pods.
const (
	NodeName = "kwok-node-0"
	PodCIDR  = "127.1.0.0/16"
)

// InPodCIDR reports whether ip is a pod IP of the test cluster.
func InPodCIDR(ip string) bool {
	_, n, _ := net.ParseCIDR(PodCIDR)
	a := net.ParseIP(ip)
	return a != nil && n.Contains(a)
}

// Cluster is a running (or recorded) test cluster.
type Cluster struct {
	// Dir holds certificates, data, logs, PID files and kubeconfigs.
	Dir string
	// Kubeconfig is an admin (system:masters) kubeconfig for the cluster.
	Kubeconfig string
	// Server is the API server URL.
	Server string
	// KWOKModuleDir is where KWOK's stage files and CRDs were read from.
	KWOKModuleDir string

	out io.Writer
	// tied daemons get SIGKILL when the process that started them dies.
	tied bool
	// exited holds, per daemon started by this process, a channel closed
	// when it exits, so waits end at once when a daemon dies.
	exited map[string]chan struct{}
}

// order is the start order; Stop runs it backwards so the API server stops
// before etcd.
var order = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// Start builds (or reuses) the binaries and starts a cluster in dir, which
// must not hold a running cluster, that outlives this process (until Stop).
// Progress goes to out.
func Start(ctx context.Context, dir string, out io.Writer) (*Cluster, error) {
	return start(ctx, dir, out, false)
}

// StartTied is Start for a cluster that must not outlive this process: the
// kernel kills every daemon when the process dies, even by a panic or
// SIGKILL that leaves no chance to call Stop. Tests and nocrd-cluster run
// use it.
func StartTied(ctx context.Context, dir string, out io.Writer) (*Cluster, error) {
	return start(ctx, dir, out, true)
}

func start(ctx context.Context, dir string, out io.Writer, tied bool) (c *Cluster, err error) {
	bins, err := EnsureBinaries(ctx, out)
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if Running(dir) {
		return nil, fmt.Errorf("a cluster is already running in %s", dir)
	}
	// Clear what a previous cluster left, keeping nothing but the directory.
	for _, sub := range []string{"pki", "etcd-data", "logs", "pids", "kwok"} {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			return nil, err
		}
	}
	for _, sub := range []string{"logs", "pids", "kwok"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	c = &Cluster{Dir: dir, Kubeconfig: filepath.Join(dir, "kubeconfig"), KWOKModuleDir: bins.KWOKModuleDir, out: out, tied: tied, exited: map[string]chan struct{}{}}
	defer func() {
		if err != nil {
			fmt.Fprintln(out, c.LogTails(30))
			_ = c.Stop()
		}
	}()

	started := time.Now()
	p, err := newPKI(filepath.Join(dir, "pki"))
	if err != nil {
		return c, fmt.Errorf("make certificates: %w", err)
	}
	ports, err := freePorts(6)
	if err != nil {
		return c, err
	}
	etcdPort, etcdPeer, apiPort, cmPort, schedPort, kwokPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	c.Server = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	for _, kc := range []struct{ file, user string }{
		{c.Kubeconfig, "admin"},
		{filepath.Join(dir, "controller-manager.kubeconfig"), "controller-manager"},
		{filepath.Join(dir, "scheduler.kubeconfig"), "scheduler"},
	} {
		if err := p.kubeconfig(kc.file, c.Server, kc.user); err != nil {
			return c, err
		}
	}

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	fmt.Fprintf(out, "testcluster: starting etcd on %s\n", etcdURL)
	if err := c.start(bins.Etcd, "etcd",
		"--name=nocrd-test",
		"--data-dir="+filepath.Join(dir, "etcd-data"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", etcdPeer),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", etcdPeer),
		fmt.Sprintf("--initial-cluster=nocrd-test=http://127.0.0.1:%d", etcdPeer),
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	); err != nil {
		return c, err
	}
	if err := c.waitHTTP(ctx, "etcd", nil, etcdURL+"/health", 60*time.Second); err != nil {
		return c, fmt.Errorf("etcd did not become healthy: %w", err)
	}

	fmt.Fprintf(out, "testcluster: starting kube-apiserver on %s\n", c.Server)
	if err := c.start(bins.KubeAPIServer, "kube-apiserver",
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--tls-cert-file="+p.path("apiserver.crt"),
		"--tls-private-key-file="+p.path("apiserver.key"),
		"--client-ca-file="+p.path("ca.crt"),
		"--service-account-issuer="+ServiceAccountIssuer,
		"--service-account-key-file="+p.path("sa.pub"),
		"--service-account-signing-key-file="+p.path("sa.key"),
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		"--kubelet-client-certificate="+p.path("apiserver-kubelet-client.crt"),
		"--kubelet-client-key="+p.path("apiserver-kubelet-client.key"),
		"--kubelet-preferred-address-types=InternalIP",
		"--profiling=false",
		// The reconciler refuses a loopback advertise address; nothing in the
		// test cluster reaches the API server through the kubernetes Service.
		"--endpoint-reconciler-type=none",
		"--v=0",
	); err != nil {
		return c, err
	}
	admin, err := c.adminHTTPClient(p)
	if err != nil {
		return c, err
	}
	if err := c.waitHTTP(ctx, "kube-apiserver", admin, c.Server+"/readyz", 120*time.Second); err != nil {
		return c, fmt.Errorf("kube-apiserver did not become ready: %w", err)
	}

	fmt.Fprintln(out, "testcluster: starting kube-controller-manager and kube-scheduler")
	if err := c.start(bins.ControllerManager, "kube-controller-manager",
		"--kubeconfig="+filepath.Join(dir, "controller-manager.kubeconfig"),
		"--authentication-kubeconfig="+filepath.Join(dir, "controller-manager.kubeconfig"),
		"--authorization-kubeconfig="+filepath.Join(dir, "controller-manager.kubeconfig"),
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", cmPort),
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+p.path("sa.key"),
		"--root-ca-file="+p.path("ca.crt"),
		"--cluster-name=nocrd-test",
		"--controllers=*",
		"--v=0",
	); err != nil {
		return c, err
	}
	if err := c.start(bins.Scheduler, "kube-scheduler",
		"--kubeconfig="+filepath.Join(dir, "scheduler.kubeconfig"),
		"--authentication-kubeconfig="+filepath.Join(dir, "scheduler.kubeconfig"),
		"--authorization-kubeconfig="+filepath.Join(dir, "scheduler.kubeconfig"),
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", schedPort),
		"--leader-elect=false",
		"--v=0",
	); err != nil {
		return c, err
	}

	cs, err := c.clients()
	if err != nil {
		return c, err
	}
	if err := cs.installKWOKCRDs(ctx, bins.KWOKModuleDir); err != nil {
		return c, err
	}
	if err := cs.createNode(ctx); err != nil {
		return c, err
	}

	kwokConfig, err := writeKWOKConfig(filepath.Join(dir, "kwok", "kwok.yaml"), bins.KWOKModuleDir)
	if err != nil {
		return c, err
	}
	fmt.Fprintf(out, "testcluster: starting kwok for node %s (pod CIDR %s)\n", NodeName, PodCIDR)
	if err := c.start(bins.KWOK, "kwok",
		"--kubeconfig="+c.Kubeconfig,
		"--config="+kwokConfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--enable-crds=Logs,ClusterLogs",
		"--node-ip=127.0.0.1",
		fmt.Sprintf("--node-port=%d", kwokPort),
		fmt.Sprintf("--server-address=127.0.0.1:%d", kwokPort),
		"--cidr="+PodCIDR,
		"--node-lease-duration-seconds=40",
	); err != nil {
		return c, err
	}
	if err := cs.waitReady(ctx, 120*time.Second); err != nil {
		return c, err
	}
	fmt.Fprintf(out, "testcluster: cluster ready in %s; KUBECONFIG=%s\n", time.Since(started).Round(100*time.Millisecond), c.Kubeconfig)
	return c, nil
}

// start launches one daemon in its own session, logging to logs/<name>.log
// and recording its PID in pids/<name>.pid.
func (c *Cluster) start(bin, name string, args ...string) error {
	logf, err := os.Create(filepath.Join(c.Dir, "logs", name+".log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = c.Dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if c.tied {
		// Delivered when the starting thread exits; the Go runtime keeps its
		// threads for the life of the process.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	// Reap the child if it exits while this process lives, so a dead daemon
	// is not mistaken for a running one.
	done := make(chan struct{})
	c.exited[name] = done
	go func() { _ = cmd.Wait(); close(done) }()
	return os.WriteFile(filepath.Join(c.Dir, "pids", name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
}

// Stop stops the daemons recorded in c.Dir.
func (c *Cluster) Stop() error { return Stop(c.Dir) }

// Stop stops the cluster recorded in dir, newest daemon first, waiting for
// each to exit (SIGTERM, then SIGKILL after 10 s). Stopping a stopped
// cluster is not an error.
func Stop(dir string) error {
	var errs []error
	for i := len(order) - 1; i >= 0; i-- {
		name := order[i]
		pidFile := filepath.Join(dir, "pids", name+".pid")
		pid, ok := readPID(pidFile)
		if !ok {
			continue
		}
		if alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			deadline := time.Now().Add(10 * time.Second)
			for alive(pid) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if alive(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				for j := 0; alive(pid) && j < 100; j++ {
					time.Sleep(50 * time.Millisecond)
				}
				if alive(pid) {
					errs = append(errs, fmt.Errorf("%s (pid %d) did not exit", name, pid))
					continue
				}
			}
		}
		_ = os.Remove(pidFile)
	}
	return errors.Join(errs...)
}

// Running reports whether any daemon recorded in dir is alive.
func Running(dir string) bool {
	for _, name := range order {
		if pid, ok := readPID(filepath.Join(dir, "pids", name+".pid")); ok && alive(pid) {
			return true
		}
	}
	return false
}

// Healthy reports whether every daemon recorded in dir is alive.
func Healthy(dir string) bool {
	for _, name := range order {
		pid, ok := readPID(filepath.Join(dir, "pids", name+".pid"))
		if !ok || !alive(pid) {
			return false
		}
	}
	return true
}

func readPID(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil && pid > 0
}

// alive reports whether pid is a live process (not a zombie).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// LogTails returns the last n lines of every component log, for failure
// reports.
func (c *Cluster) LogTails(n int) string { return LogTails(c.Dir, n) }

// LogTails returns the last n lines of every component log in dir.
func LogTails(dir string, n int) string {
	var b strings.Builder
	for _, name := range order {
		data, err := os.ReadFile(filepath.Join(dir, "logs", name+".log"))
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "==== %s (last %d lines) ====\n%s\n", name, n, tail(string(data), n))
	}
	return b.String()
}

func (c *Cluster) adminHTTPClient(p *pki) (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(p.path("admin.crt"), p.path("admin.key"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			RootCAs:      pool,
			MinVersion:   tls.VersionTLS12,
		}},
	}, nil
}

// waitHTTP polls url until it answers 200, the timeout passes, or the
// daemon that should answer exits.
func (c *Cluster) waitHTTP(ctx context.Context, daemon string, client *http.Client, url string, timeout time.Duration) error {
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("%s: %s: %s", url, resp.Status, tail(string(body), 5))
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.exited[daemon]:
			return fmt.Errorf("%s exited (see %s)", daemon, filepath.Join(c.Dir, "logs", daemon+".log"))
		case <-time.After(250 * time.Millisecond):
		}
	}
	return last
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
