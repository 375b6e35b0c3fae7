// Command bench measures whole-system proxy throughput: one fasthttp
// backend standing in for a workspace, reached directly, through nginx
// configured as an equivalent keep-alive reverse proxy, through the
// nocrd binary (routing only; with ES256 JWT ownership checks; and with
// JWT plus a Wasm route policy, the WAT guest and the Go inject-identity
// guest), and through the other proxies users would pick (HAProxy and
// JupyterHub's configurable-http-proxy, peers.go), each loaded by wrk in
// the same run, interleaved, several times. It
// writes the medians as a markdown table and an SVG chart into
// bench/results/.
//
//	go run ./bench -kubeconfig $KUBECONFIG -nocrd bin/nocrd [-policies bin/policies] [-runs 10] [-duration 2s]
//
// With -baseline, another nocrd binary (an older build, say) is measured
// with JWT too, in the same runs, and the table gives the change's ratio
// to it: an A/B test of a change that the machine's drift affects alike.
//
// make bench runs it on a cluster started for the run.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"github.com/valyala/fasthttp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nocrd/nocrd/k8s"
)

type target struct {
	name   string
	url    string
	header string
	pid    func() []int // processes whose peak RSS is reported
}

type sample struct {
	rps, p50, p99 float64 // requests/s, ms, ms
	// cpu is the CPU time the target's processes used per request, in
	// µs (for direct, the harness, which serves as the backend).
	cpu float64
	// requests and non2xx count the run's answers, and those that were
	// not 2xx or 3xx.
	requests, non2xx float64
}

// maxNon2xx is the share of answers that may fail before a run is an
// error: a route policy's wall-clock deadline can pass for a thread the
// saturated machine did not schedule, and the request is then refused
// (fail closed). Such refusals are reported, not hidden.
const maxNon2xx = 1e-4

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "cluster to spawn the workspace on")
	nocrdBin := flag.String("nocrd", "bin/nocrd", "nocrd binary")
	runs := flag.Int("runs", 10, "interleaved runs per target (the median is reported)")
	duration := flag.Duration("duration", 2*time.Second, "length of each wrk run")
	warmup := flag.Duration("warmup", 0, "load each target for this long, unmeasured, before each run")
	conns := flag.Int("connections", 64, "wrk connections")
	out := flag.String("out", "bench/results", "directory for the table and chart")
	policyDir := flag.String("policies", "bin/policies", "the example policies built by make policies")
	only := flag.String("only", "", "measure only the targets whose name matches this regular expression (direct and nginx always run)")
	flag.StringVar(&baselineBin, "baseline", "", "another nocrd binary to measure with JWT in the same runs, for an A/B comparison")
	flag.Parse()
	re, err := checkFlags(*runs, *duration, *warmup, *conns, *only, baselineBin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	onlyRe = re
	if err := run(*kubeconfig, *nocrdBin, *policyDir, *runs, *duration, *warmup, *conns, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// checkFlags says which flag is wrong, if any, and compiles -only. wrk
// takes whole seconds, so the durations must be whole seconds.
func checkFlags(runs int, duration, warmup time.Duration, conns int, only, baseline string) (*regexp.Regexp, error) {
	if baseline != "" {
		if st, err := os.Stat(baseline); err != nil || st.IsDir() {
			return nil, fmt.Errorf("-baseline: %s is not a nocrd binary", baseline)
		}
	}
	switch {
	case runs < 1:
		return nil, fmt.Errorf("-runs: must be at least 1, got %d", runs)
	case conns < 1:
		return nil, fmt.Errorf("-connections: must be at least 1, got %d", conns)
	case duration < time.Second || duration%time.Second != 0:
		return nil, fmt.Errorf("-duration: must be a whole number of seconds, at least 1s (wrk's unit), got %s", duration)
	case warmup < 0 || warmup%time.Second != 0:
		return nil, fmt.Errorf("-warmup: must be a whole number of seconds, or 0 (wrk's unit), got %s", warmup)
	}
	if only == "" {
		return nil, nil
	}
	re, err := regexp.Compile(only)
	if err != nil {
		return nil, fmt.Errorf("-only: %w", err)
	}
	return re, nil
}

// onlyRe, when set, limits the targets measured (-only).
var onlyRe *regexp.Regexp

// baselineBin, when set, is measured as rowBaseline (-baseline).
var baselineBin string

// The rows a route policy is compared with, and the policy rows.
const (
	rowJWT       = "nocrd + JWT (ES256)"
	rowPolicyWAT = "nocrd + JWT + policy (WAT)"
	rowPolicyGo  = "nocrd + JWT + policy (Go)"
	rowBaseline  = "baseline + JWT (ES256)"
	rowOneProc   = "nocrd + JWT, 1 process"
)

// proxyWorkers is how many processes serve each nocrd target's port
// (PROXY_WORKERS): one per CPU, as nginx's worker_processes here; rowOneProc
// is nocrd + JWT as one process, to show what the workers bring.
var proxyWorkers = runtime.NumCPU()

// withWorkers is pid and its children: a nocrd and its proxy workers.
func withWorkers(pid int) []int {
	pids := []int{pid}
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, c := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(c); err == nil {
				pids = append(pids, n)
			}
		}
	}
	return pids
}

func run(kubeconfig, nocrdBin, policyDir string, runs int, duration, warmup time.Duration, conns int, out string) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return fmt.Errorf("wrk is not installed (make bench-deps installs it)")
	}
	if _, err := exec.LookPath(nginxBin()); err != nil {
		return fmt.Errorf("nginx is not installed (make bench-deps installs it)")
	}
	ctx := context.Background()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := "bench-" + hex.EncodeToString(b)
	kube, err := k8s.New(k8s.Config{Mode: k8s.ModeCluster, Namespace: ns, Kubeconfig: kubeconfig})
	if err != nil {
		return err
	}
	if _, err := kube.Kubernetes().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	defer kube.Kubernetes().CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	w, err := kube.SpawnWorkspace(ctx, k8s.SpawnRequest{ID: "bench", Owner: "alice",
		Spec: &corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "busybox"}}}})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if w, err = kube.WaitReady(wctx, w, nil); err != nil {
		return err
	}
	backendAddr := net.JoinHostPort(w.PodIP, "3000")

	// The backend: a fasthttp server answering 64 bytes, bound on the pod IP.
	body := []byte(strings.Repeat("x", 63) + "\n")
	ln, err := net.Listen("tcp", backendAddr)
	if err != nil {
		return fmt.Errorf("bind the backend on the workspace IP: %w", err)
	}
	backend := &fasthttp.Server{Handler: func(c *fasthttp.RequestCtx) { c.SetContentType("text/plain"); c.SetBody(body) }}
	go func() { _ = backend.Serve(ln) }()
	defer backend.Shutdown()

	tmp, err := os.MkdirTemp("", "nocrd-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	nginxPort := freePort()
	nginxPIDs, stopNginx, err := startNginx(tmp, nginxPort, backendAddr)
	if err != nil {
		return err
	}
	defer stopNginx()

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	tok := jwt.New()
	_ = tok.Set(jwt.SubjectKey, "alice")
	_ = tok.Set(jwt.ExpirationKey, time.Now().Add(24*time.Hour))
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, key))
	if err != nil {
		return err
	}

	// The route policies: readonly.wat lets GET through after one host
	// call; inject-identity (Go) sets a header to the verified subject.
	watPolicy := filepath.Join(tmp, "readonly.wasm")
	if b, err := exec.Command("wat2wasm", "wasm-policies/testdata/readonly.wat", "-o", watPolicy).CombinedOutput(); err != nil {
		return fmt.Errorf("wat2wasm (make deps installs wabt): %v: %s", err, b)
	}
	goPolicy := filepath.Join(policyDir, "inject-identity.wasm")
	if _, err := os.Stat(goPolicy); err != nil {
		return fmt.Errorf("%w (make policies builds it)", err)
	}

	plainPort, jwtPort, watPort, goPort, oneProcPort := freePort(), freePort(), freePort(), freePort(), freePort()
	workers := "PROXY_WORKERS=" + strconv.Itoa(proxyWorkers)
	plain, err := startNocrd(nocrdBin, kubeconfig, ns, plainPort, []string{workers})
	if err != nil {
		return err
	}
	defer stop(plain)
	withJWT, err := startNocrd(nocrdBin, kubeconfig, ns, jwtPort, []string{workers, "AUTH_ENABLED=true", "JWT_PUBLIC_KEY=" + pubPEM})
	if err != nil {
		return err
	}
	defer stop(withJWT)
	oneProc, err := startNocrd(nocrdBin, kubeconfig, ns, oneProcPort, []string{"PROXY_WORKERS=1", "AUTH_ENABLED=true", "JWT_PUBLIC_KEY=" + pubPEM})
	if err != nil {
		return err
	}
	defer stop(oneProc)
	jwtEnv := []string{workers, "AUTH_ENABLED=true", "JWT_PUBLIC_KEY=" + pubPEM, "POLICY_CACHE_DIR=" + filepath.Join(tmp, "wasm-cache")}
	withWAT, err := startNocrd(nocrdBin, kubeconfig, ns, watPort, append(jwtEnv, "POLICY_ROUTE="+watPolicy))
	if err != nil {
		return err
	}
	defer stop(withWAT)
	withGo, err := startNocrd(nocrdBin, kubeconfig, ns, goPort, append(jwtEnv, "POLICY_ROUTE="+goPolicy))
	if err != nil {
		return err
	}
	defer stop(withGo)

	// Those compared are neighbours (see the runs below): nginx and
	// nocrd + JWT, which the policy rows follow.
	targets := []target{
		{name: "direct", url: "http://" + backendAddr + "/api"}, // the backend runs in this process
		{name: "nginx", url: fmt.Sprintf("http://127.0.0.1:%d/route/bench/api", nginxPort), pid: nginxPIDs},
		{name: rowJWT, url: fmt.Sprintf("http://127.0.0.1:%d/route/bench/api", jwtPort), header: "Authorization: Bearer " + string(signed), pid: func() []int { return withWorkers(withJWT.Process.Pid) }},
		{name: rowPolicyWAT, url: fmt.Sprintf("http://127.0.0.1:%d/route/bench/api", watPort), header: "Authorization: Bearer " + string(signed), pid: func() []int { return withWorkers(withWAT.Process.Pid) }},
		{name: rowPolicyGo, url: fmt.Sprintf("http://127.0.0.1:%d/route/bench/api", goPort), header: "Authorization: Bearer " + string(signed), pid: func() []int { return withWorkers(withGo.Process.Pid) }},
		{name: "nocrd", url: fmt.Sprintf("http://127.0.0.1:%d/route/bench/api", plainPort), pid: func() []int { return withWorkers(plain.Process.Pid) }},
		{name: rowOneProc, url: fmt.Sprintf("http://127.0.0.1:%d/route/bench/api", oneProcPort), header: "Authorization: Bearer " + string(signed), pid: func() []int { return []int{oneProc.Process.Pid} }},
	}
	if baselineBin != "" {
		port := freePort()
		base, err := startNocrd(baselineBin, kubeconfig, ns, port, []string{workers, "AUTH_ENABLED=true", "JWT_PUBLIC_KEY=" + pubPEM})
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		defer stop(base)
		targets = slices.Insert(targets, slices.IndexFunc(targets, func(t target) bool { return t.name == rowJWT })+1, target{name: rowBaseline, url: fmt.Sprintf("http://127.0.0.1:%d/route/bench/api", port), header: "Authorization: Bearer " + string(signed), pid: func() []int { return withWorkers(base.Process.Pid) }})
	}
	// The other proxies users would pick, started only when measured.
	peers := []struct {
		name  string
		start func(port int) (func() []int, func(), error)
	}{
		{rowHAProxy, func(port int) (func() []int, func(), error) { return startHAProxy(tmp, port, backendAddr) }},
		{rowCHP, func(port int) (func() []int, func(), error) { return startCHP(port, backendAddr) }},
	}
	for _, p := range peers {
		if onlyRe != nil && !onlyRe.MatchString(p.name) {
			continue
		}
		port := freePort()
		pids, stopPeer, err := p.start(port)
		if err != nil {
			return err
		}
		defer stopPeer()
		targets = append(targets, target{name: p.name, url: fmt.Sprintf("http://127.0.0.1:%d/route/bench/api", port), pid: pids})
	}
	if onlyRe != nil {
		targets = slices.DeleteFunc(targets, func(t target) bool {
			return t.name != "direct" && t.name != "nginx" && !onlyRe.MatchString(t.name)
		})
	}
	// Every target must answer 200 before anything is measured.
	for _, t := range targets {
		if err := check(t); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	results := map[string][]sample{}
	for r := 1; r <= runs; r++ {
		// With -warmup, each target is loaded unmeasured first: between
		// its runs it sat idle while the others ran.
		for _, t := range runOrder(targets, r) {
			if warmup > 0 {
				if _, err := wrk(t, warmup, conns); err != nil {
					return fmt.Errorf("%s (warm-up): %w", t.name, err)
				}
			}
			pids := []int{os.Getpid()}
			if t.pid != nil {
				pids = t.pid()
			}
			used := cpuSeconds(pids)
			s, err := wrk(t, duration, conns)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			if s.requests > 0 {
				s.cpu = (cpuSeconds(pids) - used) * 1e6 / s.requests
			}
			fmt.Fprintf(os.Stderr, "run %d/%d  %-22s %9.0f req/s  p50 %6.3f ms  p99 %6.3f ms\n", r, runs, t.name, s.rps, s.p50, s.p99)
			results[t.name] = append(results[t.name], s)
		}
	}
	rss := map[string]float64{}
	for _, t := range targets {
		if t.pid == nil {
			continue
		}
		for _, pid := range t.pid() {
			rss[t.name] += peakRSS(pid)
		}
	}
	table := render(targets, results, rss, runs, duration, warmup, conns)
	fmt.Print(table)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "README.md"), []byte(table), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "throughput.svg"), []byte(chart(targets, results)), 0o644)
}

// runOrder is the order of run r (from 1): the targets forwards in odd runs
// and backwards in even ones (ABBA), so that a drift of the machine during
// two runs moves neighbours alike, and the targets compared with one
// another are listed as neighbours.
func runOrder(targets []target, r int) []target {
	if r%2 == 1 {
		return targets
	}
	back := slices.Clone(targets)
	slices.Reverse(back)
	return back
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startNginx runs nginx as a keep-alive reverse proxy equivalent to nocrd's
// routing: the /route/bench/ prefix stripped, HTTP/1.1 and pooled
// connections upstream, one worker per core, no access log.
func startNginx(dir string, port int, backend string) (func() []int, func(), error) {
	conf := fmt.Sprintf(`daemon off;
worker_processes %d;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %s;
  proxy_temp_path %s;
  upstream workspace { server %s; keepalive 128; }
  server {
    listen 127.0.0.1:%d;
    location /route/bench/ {
      proxy_pass http://workspace/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Prefix /route/bench;
    }
  }
}
`, runtime.NumCPU(), dir, dir, dir, dir, backend, port)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(nginxBin(), "-c", path, "-p", dir)
	if err := launch("nginx", cmd, port); err != nil {
		return nil, nil, err
	}
	pids := func() []int {
		ps := []int{cmd.Process.Pid}
		out, _ := exec.Command("pgrep", "-P", strconv.Itoa(cmd.Process.Pid)).Output()
		for _, f := range strings.Fields(string(out)) {
			if p, err := strconv.Atoi(f); err == nil {
				ps = append(ps, p)
			}
		}
		return ps
	}
	return pids, func() { stop(cmd) }, nil
}

// nginxBin is nginx on PATH, else Debian's /usr/sbin/nginx (not on the PATH
// of ordinary users).
func nginxBin() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	return "/usr/sbin/nginx"
}

func startNocrd(bin, kubeconfig, ns string, port int, env []string) (*exec.Cmd, error) {
	cmd := exec.Command(bin, "--host", "127.0.0.1", "--port", strconv.Itoa(port), "-n", ns, "--log-level", "error")
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+kubeconfig, "REAPER_INTERVAL=0"), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cmd, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop(cmd)
	return nil, fmt.Errorf("nocrd on port %d did not become ready", port)
}

func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
	}
}

// launch starts cmd, a proxy, with its errors on stderr, and waits until
// it listens on port; name says which one failed.
func launch(name string, cmd *exec.Cmd, port int) error {
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := waitPort(port); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func waitPort(port int) error {
	for range 100 {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("port %d never opened", port)
}

func check(t target) error {
	req, _ := http.NewRequest("GET", t.url, nil)
	if t.header != "" {
		k, v, _ := strings.Cut(t.header, ": ")
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}

var (
	rpsRe = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	latRe = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$`)
	errRe = regexp.MustCompile(`Socket errors: .*`)
	badRe = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	reqRe = regexp.MustCompile(`(\d+) requests in`)
)

// wrk runs one load test: one wrk thread, as the anchors were
// measured, so the load generator takes as little of the 2 cores as it can.
func wrk(t target, d time.Duration, conns int) (sample, error) {
	args := []string{"-t1", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(int(d/time.Second)) + "s", "--latency"}
	if t.header != "" {
		args = append(args, "-H", t.header)
	}
	out, err := exec.Command("wrk", append(args, t.url)...).CombinedOutput()
	if err != nil {
		return sample{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	if m := errRe.FindString(string(out)); m != "" {
		return sample{}, fmt.Errorf("wrk saw errors: %s\n%s%s", m, out, policyOutcomes(t.url))
	}
	var s sample
	m := rpsRe.FindStringSubmatch(string(out))
	r := reqRe.FindStringSubmatch(string(out))
	if m == nil || r == nil {
		return s, fmt.Errorf("no Requests/sec in wrk output:\n%s", out)
	}
	s.rps, _ = strconv.ParseFloat(m[1], 64)
	s.requests, _ = strconv.ParseFloat(r[1], 64)
	if b := badRe.FindStringSubmatch(string(out)); b != nil {
		s.non2xx, _ = strconv.ParseFloat(b[1], 64)
		if s.non2xx > maxNon2xx*s.requests {
			return s, fmt.Errorf("wrk saw %v answers that were not 2xx or 3xx in %v requests\n%s%s", s.non2xx, s.requests, out, policyOutcomes(t.url))
		}
		fmt.Fprintf(os.Stderr, "%s: %v of %v answers were not 2xx or 3xx\n%s\n", t.name, s.non2xx, s.requests, policyOutcomes(t.url))
	}
	for _, l := range latRe.FindAllStringSubmatch(string(out), -1) {
		v, _ := strconv.ParseFloat(l[2], 64)
		switch l[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if l[1] == "50" {
			s.p50 = v
		} else {
			s.p99 = v
		}
	}
	return s, nil
}

// policyOutcomes is the policy decisions a nocrd target counted, to say
// why some of its answers were not 2xx.
func policyOutcomes(target string) string {
	i := strings.Index(target, "/route/")
	if i < 0 {
		return ""
	}
	resp, err := http.Get(target[:i] + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = io.Copy(&b, resp.Body)
	var out []string
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(line, "nocrd_policy_decisions_total{") || strings.HasPrefix(line, "nocrd_proxy_requests_total{") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// peakRSS is the process's peak resident set (VmHWM) in MiB.
func peakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// cpuSeconds is the CPU time, user and system, the processes have used so
// far, from /proc (in USER_HZ ticks, a hundredth of a second).
func cpuSeconds(pids []int) float64 {
	var ticks float64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The fields after the command, which is in parentheses and may
		// hold spaces: the state (field 3) first, utime and stime are
		// fields 14 and 15.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 12 {
			u, _ := strconv.ParseFloat(f[11], 64)
			st, _ := strconv.ParseFloat(f[12], 64)
			ticks += u + st
		}
	}
	return ticks / 100
}

// runRatioOf is the median over runs of a's measure over b's in the same
// run, which cancels the machine's drift between runs.
func runRatioOf(a, b []sample, measure func(sample) float64) float64 {
	return median(ratios(a, b, measure))
}

// ratios are a's measure over b's, run by run.
func ratios(a, b []sample, measure func(sample) float64) []float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		rs = append(rs, measure(a[i])/measure(b[i]))
	}
	return rs
}

// runRatioText is runRatioOf for requests/s as text, followed by the
// interval of medianInterval when there are runs enough for one.
func runRatioText(a, b []sample) string {
	rs := ratios(a, b, func(s sample) float64 { return s.rps })
	if lo, hi, ok := medianInterval(rs); ok {
		return fmt.Sprintf("%.2f× (%.2f-%.2f)", median(rs), lo, hi)
	}
	return fmt.Sprintf("%.2f×", median(rs))
}

// medianInterval is a confidence interval of at least 95% for the median
// of the distribution xs were drawn from, assuming nothing of its shape:
// the k-th smallest and k-th largest value, for the largest k such that
// fewer than k of n draws fall below the median with a probability of at
// most 2.5% (the binomial distribution with p = 1/2). It needs 6 values.
func medianInterval(xs []float64) (lo, hi float64, ok bool) {
	n := len(xs)
	// below: P(fewer than k+1 below); logP: ln P(exactly k below), kept
	// in logarithms so that neither C(n, k) nor 2^-n leaves float64's
	// range however many runs there are.
	k, below, logP := 0, 0.0, -float64(n)*math.Ln2
	for ; k < n/2; k++ {
		below += math.Exp(logP)
		if below > 0.025 {
			break
		}
		logP += math.Log(float64(n-k)) - math.Log(float64(k+1))
	}
	if k == 0 {
		return 0, 0, false
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[k-1], s[n-k], true
}

// median is 0 for no values.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medians(ss []sample) sample {
	var rps, p50, p99, cpu []float64
	for _, s := range ss {
		rps, p50, p99, cpu = append(rps, s.rps), append(p50, s.p50), append(p99, s.p99), append(cpu, s.cpu)
	}
	return sample{rps: median(rps), p50: median(p50), p99: median(p99), cpu: median(cpu)}
}

func render(targets []target, results map[string][]sample, rss map[string]float64, runs int, d, warmup time.Duration, conns int) string {
	var b strings.Builder
	load := ""
	if warmup > 0 {
		load = fmt.Sprintf(" after %s of unmeasured load", warmup)
	}
	fmt.Fprintf(&b, "# Proxy throughput\n\nMedians of %d interleaved runs, each `wrk -t1 -c%d -d%s --latency`%s, a 64-byte response from a fasthttp backend on the workspace pod's IP; the runs go through the targets in the table's order and back in turn. Per run is the median over runs of the ratio within each run, which cancels the machine's drift between runs, followed (with 6 runs or more) by a 95%% confidence interval for it that assumes nothing of the noise's shape; CPU per request is the CPU time the target's processes used in a run over the requests it served (as noisy as requests/s here). wrk, the proxy and the backend share the machine (%d cores); nginx runs a worker process per core, and so does nocrd (`PROXY_WORKERS`) except in the row marked 1 process. Generated by `go run ./bench` (`make bench` runs it with `-runs 30`) on %s.\n\n",
		runs, conns, d, load, runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"))
	b.WriteString("| target | requests/s | vs direct | vs nginx | vs nginx, per run | p50 (ms) | p99 (ms) | p99 vs nginx | CPU per request (µs) | peak RSS (MiB) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	direct, nginx := medians(results["direct"]), medians(results["nginx"])
	for _, t := range targets {
		m := medians(results[t.name])
		rssCell := fmt.Sprintf("%.1f", rss[t.name])
		if t.name == "direct" {
			rssCell = "(backend, in the harness)"
		}
		cpuCell := fmt.Sprintf("%.1f", m.cpu)
		if t.name == "direct" {
			cpuCell += " (the backend)"
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.2f× | %.2f× | %s | %.3f | %.3f | %.2f× | %s | %s |\n",
			t.name, m.rps, m.rps/direct.rps, m.rps/nginx.rps, runRatioText(results[t.name], results["nginx"]), m.p50, m.p99, m.p99/nginx.p99, cpuCell, rssCell)
	}
	if jwt := medians(results[rowJWT]); jwt.rps > 0 && len(results[rowPolicyWAT]) > 0 && len(results[rowPolicyGo]) > 0 {
		fmt.Fprintf(&b, "\nWith a Wasm route policy, as a share of the same nocrd + JWT without one (requests/s): WAT guest %.2f×, Go guest %.2f× (ratio of the medians); %s and %s (median of the ratios within each run).\n",
			medians(results[rowPolicyWAT]).rps/jwt.rps, medians(results[rowPolicyGo]).rps/jwt.rps,
			runRatioText(results[rowPolicyWAT], results[rowJWT]), runRatioText(results[rowPolicyGo], results[rowJWT]))
	}
	if len(results[rowBaseline]) > 0 && len(results[rowJWT]) > 0 {
		base := medians(results[rowBaseline])
		fmt.Fprintf(&b, "\nnocrd + JWT as a share of the baseline binary with JWT (requests/s): %.2f× (ratio of the medians), %s (median of the ratios within each run); CPU per request %.1f µs against %.1f µs, %.2f× (median of the ratios within each run).\n",
			medians(results[rowJWT]).rps/base.rps, runRatioText(results[rowJWT], results[rowBaseline]), medians(results[rowJWT]).cpu, base.cpu,
			runRatioOf(results[rowJWT], results[rowBaseline], func(s sample) float64 { return s.cpu }))
	}
	b.WriteString("\nEvery run:\n\n| target | requests/s per run | p99 (ms) per run | CPU per request (µs) per run | answers not 2xx/3xx per run |\n|---|---|---|---|---|\n")
	for _, t := range targets {
		var r, p, c, e []string
		for _, s := range results[t.name] {
			r, p = append(r, fmt.Sprintf("%.0f", s.rps)), append(p, fmt.Sprintf("%.3f", s.p99))
			c = append(c, fmt.Sprintf("%.1f", s.cpu))
			e = append(e, fmt.Sprintf("%.0f of %.0f", s.non2xx, s.requests))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", t.name, strings.Join(r, ", "), strings.Join(p, ", "), strings.Join(c, ", "), strings.Join(e, ", "))
	}
	return b.String()
}

// chart draws the median requests/s of each target as horizontal bars.
func chart(targets []target, results map[string][]sample) string {
	const width, barH, gap, left = 680, 28, 12, 210
	var max float64
	for _, t := range targets {
		max = math.Max(max, medians(results[t.name]).rps)
	}
	h := len(targets)*(barH+gap) + 50
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="13">`+"\n", width, h)
	fmt.Fprintf(&b, `<text x="10" y="20" font-weight="bold">Proxy throughput, requests/s (median of %d runs)</text>`+"\n", len(results["direct"]))
	for i, t := range targets {
		m := medians(results[t.name]).rps
		y := 35 + i*(barH+gap)
		w := int(m / max * float64(width-left-90))
		color := "#4e79a7"
		if strings.HasPrefix(t.name, "nocrd") {
			color = "#f28e2b"
		}
		fmt.Fprintf(&b, `<text x="10" y="%d">%s</text><rect x="%d" y="%d" width="%d" height="%d" fill="%s"/><text x="%d" y="%d">%.0f</text>`+"\n",
			y+barH/2+5, t.name, left, y, w, barH, color, left+w+6, y+barH/2+5, m)
	}
	b.WriteString("</svg>\n")
	return b.String()
}
