package main

// Proxy workers (PROXY_WORKERS > 1).
//
// One Go process spreads its connections over all its threads, and every
// request hands goroutines from the thread that polled the network to the
// others. Where waking an idle CPU is slow (virtual machines), that leaves
// CPUs idle while work waits (RATIONALE.md, "Proxy workers"). nginx runs
// one process per core, each with its own event loop; nocrd can do the
// same:
//
//   - The primary process runs the MCP server, the reaper and spawn
//     admission as always, but does not open the public port. It serves its
//     net/http side on a private Unix socket, starts the workers, restarts
//     any that dies, passes SIGHUP on to them, and stops them when it stops.
//   - Each worker is this binary again (marked by envWorkerDir and
//     envWorkerIndex), with GOMAXPROCS set to its share of the CPUs. It
//     opens the public port with SO_REUSEPORT, so that the kernel spreads
//     the connections over the workers, and serves /route/ itself with its
//     own route cache, token verifier and route policies. Every other path
//     (MCP, the UI, /metrics, /readyz, ...) it passes to the primary.
//   - The primary's /metrics adds up its own metrics and every worker's;
//     its /readyz is ready when every worker is.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/nocrd/nocrd/internal/auth"
	"github.com/nocrd/nocrd/internal/metrics"
	"github.com/nocrd/nocrd/k8s"
	policies "github.com/nocrd/nocrd/wasm-policies"
)

// The environment that makes the binary a worker: the primary's private
// directory of sockets, and the worker's number in it.
const (
	envWorkerDir   = "NOCRD_WORKER_DIR"
	envWorkerIndex = "NOCRD_WORKER_INDEX"
)

// Headers a worker adds to the requests it passes to the primary, which
// takes them off: what the request's connection was, so that the primary's
// handlers see the client as they would on the public port. A worker drops
// any the client sent.
const (
	hopRemoteAddr = "X-Nocrd-Hop-Remote-Addr"
	hopLocalAddr  = "X-Nocrd-Hop-Local-Addr"
	hopTLS        = "X-Nocrd-Hop-Tls"
)

var hopHeaders = []string{hopRemoteAddr, hopLocalAddr, hopTLS}

const (
	primarySocket = "primary.sock"
	// workerStartTimeout bounds how long a worker may take to open the
	// public port (it builds its clients and compiles its policies first).
	workerStartTimeout = 60 * time.Second
	// workerRestartDelay spaces out restarts of a worker that keeps dying.
	workerRestartDelay = time.Second
	// workerStopSlack is how long, beyond SHUTDOWN_TIMEOUT (its requests
	// in flight), a worker has to stop after SIGTERM.
	workerStopSlack = 5 * time.Second
)

// pathDeleted is where a worker's control socket takes a pod the primary
// deleted (passDeletion).
const pathDeleted = "/deleted"

func workerSocket(dir string, i int) string { return filepath.Join(dir, "w"+strconv.Itoa(i)+".sock") }

// workerRole reports whether the environment makes this process a worker.
func workerRole(environ []string) (dir string, index int, ok bool, err error) {
	for _, kv := range environ {
		if v, found := strings.CutPrefix(kv, envWorkerDir+"="); found {
			dir = v
		}
	}
	if dir == "" {
		return "", 0, false, nil
	}
	for _, kv := range environ {
		if v, found := strings.CutPrefix(kv, envWorkerIndex+"="); found {
			index, err = strconv.Atoi(v)
		}
	}
	if err != nil || index < 0 {
		return "", 0, false, fmt.Errorf("%s: not a worker number", envWorkerIndex)
	}
	return dir, index, true, nil
}

// workerPool is the primary's side: the worker processes and the clients
// that reach their control sockets.
type workerPool struct {
	cfg    *config
	log    *slog.Logger
	dir    string
	exe    string
	args   []string
	env    []string
	stderr io.Writer
	client *http.Client // dials the worker named by the request's host, "w<i>"

	mu    sync.Mutex
	procs []*os.Process // nil while a worker is not running
	done  sync.WaitGroup
}

// serveWithWorkers is the primary's HTTP serving: app and the aggregated
// /metrics and /readyz on the private socket, the workers on the public
// port, until ctx ends.
func serveWithWorkers(ctx context.Context, cfg *config, kube *k8s.Client, app http.Handler, reg *metrics.Registry, log *slog.Logger, beforeShutdown func()) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("proxy workers: find this binary: %w", err)
	}
	dir, err := os.MkdirTemp("", "nocrd-workers-")
	if err != nil {
		return fmt.Errorf("proxy workers: %w", err)
	}
	defer os.RemoveAll(dir)
	port, err := publicPort(cfg)
	if err != nil {
		return err
	}
	p := &workerPool{cfg: cfg, log: log, dir: dir, exe: exe, stderr: cfg.stderr,
		procs: make([]*os.Process, cfg.Serve.Workers)}
	p.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			i, err := strconv.Atoi(strings.TrimPrefix(host, "w"))
			if err != nil {
				return nil, fmt.Errorf("no worker %q", host)
			}
			return (&net.Dialer{}).DialContext(ctx, "unix", workerSocket(dir, i))
		},
		MaxIdleConnsPerHost: 2,
	}}
	defer p.client.CloseIdleConnections()
	// Flags win over the environment, so the worker's port and transport
	// are set by flags added after the operator's.
	p.args = append(slices.Clone(cfg.args), "--port", strconv.Itoa(port), "--transport", "http")
	p.env = append(slices.Clone(cfg.environ), envWorkerDir+"="+dir)
	if !slices.ContainsFunc(cfg.environ, func(kv string) bool { return strings.HasPrefix(kv, "GOMAXPROCS=") }) {
		p.env = append(p.env, "GOMAXPROCS="+strconv.Itoa(max(1, runtime.GOMAXPROCS(0)/cfg.Serve.Workers)))
	}
	reg.GaugeFunc("nocrd_proxy_workers_running", "Proxy worker processes running.", func() float64 { return float64(p.running()) })
	// The workers hold the route caches: a pod this process deletes (a
	// stopped workspace) is passed on to them before the stop returns.
	kube.OnDelete(p.passDeletion)
	defer kube.OnDelete(nil)

	ln, err := net.Listen("unix", filepath.Join(dir, primarySocket))
	if err != nil {
		return fmt.Errorf("proxy workers: %w", err)
	}
	srv := &http.Server{
		Handler:           takeHop(appMux(cfg, p.readiness(), p.metrics(reg), app)),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	wctx, stopWorkers := context.WithCancel(context.Background())
	stopped := func() {
		stopWorkers()
		p.done.Wait()
	}
	if err := p.start(ctx, wctx); err != nil {
		stopped()
		_ = srv.Close()
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	scheme := "http"
	if cfg.Serve.TLSCert != "" {
		scheme = "https"
	}
	addr := net.JoinHostPort(cfg.Serve.Host, strconv.Itoa(port))
	base := cfg.MCP.BasePath()
	log.Info("serving HTTP", "addr", addr, "workers", cfg.Serve.Workers,
		"streamable", fmt.Sprintf("%s://%s%s/mcp", scheme, addr, base),
		"route", fmt.Sprintf("%s://%s%s/route/<workspace-id>/", scheme, addr, base))
	var serveErr error
loop:
	for {
		select {
		case <-hup:
			p.signal(syscall.SIGHUP) // the workers reload their route policies
		case serveErr = <-served:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	beforeShutdown()
	stopped()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Serve.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("HTTP shutdown timed out", "err", err)
	}
	if serveErr == nil {
		serveErr = <-served
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// publicPort is the port the workers share: PORT, or with PORT=0 one the
// kernel picks, which every worker then opens.
func publicPort(cfg *config) (int, error) {
	if cfg.Serve.Port != 0 {
		return cfg.Serve.Port, nil
	}
	ln, err := listenReusePort(cfg, 0)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// start starts every worker and returns once each has opened the public
// port, or with the error of the first that could not. Workers run, and
// are restarted when they die, until stop ends.
func (p *workerPool) start(ctx, stop context.Context) error {
	up := make(chan error, len(p.procs))
	for i := range p.procs {
		p.done.Add(1)
		go p.supervise(stop, i, up)
	}
	deadline := time.After(workerStartTimeout)
	for range p.procs {
		select {
		case err := <-up:
			if err != nil {
				return err
			}
		case <-deadline:
			return fmt.Errorf("proxy workers: not all opened the port within %s", workerStartTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// supervise runs worker i until stop ends, restarting it when it dies. The
// first start reports on up: nil once the worker listens, else why not
// (and then supervise gives up: the primary does not start).
func (p *workerPool) supervise(stop context.Context, i int, up chan<- error) {
	defer p.done.Done()
	for first := true; ; first = false {
		cmd := exec.Command(p.exe, p.args...)
		cmd.Env = append(slices.Clone(p.env), envWorkerIndex+"="+strconv.Itoa(i))
		cmd.Stdout, cmd.Stderr = p.stderr, p.stderr // stdout may be the stdio transport
		cmd.SysProcAttr = workerProcAttr()
		_ = os.Remove(workerSocket(p.dir, i))
		if err := cmd.Start(); err != nil {
			err = fmt.Errorf("proxy worker %d: %w", i, err)
			if first {
				up <- err
				return
			}
			p.log.Error("restart a proxy worker", "worker", i, "err", err)
		} else {
			p.setProc(i, cmd.Process)
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			if first {
				err := p.waitListening(stop, i, exited)
				up <- err
				if err != nil {
					if !errors.Is(err, errWorkerExited) {
						p.stop(i, cmd.Process, exited)
					}
					p.setProc(i, nil)
					return
				}
			}
			select {
			case err := <-exited:
				p.log.Error("proxy worker exited; restarting it", "worker", i, "err", err)
				p.setProc(i, nil)
			case <-stop.Done():
				p.stop(i, cmd.Process, exited)
				return
			}
		}
		select {
		case <-time.After(workerRestartDelay):
		case <-stop.Done():
			return
		}
	}
}

var errWorkerExited = errors.New("stopped while starting; its log says why")

// waitListening waits until worker i answers on its control socket, which
// it opens once it holds the public port.
func (p *workerPool) waitListening(stop context.Context, i int, exited <-chan error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := net.Dial("unix", workerSocket(p.dir, i)); err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("proxy worker %d (%v): %w", i, err, errWorkerExited)
		case <-stop.Done():
			return stop.Err()
		case <-tick.C:
		}
	}
}

// stop ends worker i: SIGTERM, then SIGKILL if it has not exited in time.
func (p *workerPool) stop(i int, proc *os.Process, exited <-chan error) {
	_ = proc.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(p.cfg.Serve.ShutdownTimeout + workerStopSlack):
		p.log.Warn("proxy worker did not stop in time; killing it", "worker", i)
		_ = proc.Kill()
		<-exited
	}
	p.setProc(i, nil)
}

func (p *workerPool) setProc(i int, proc *os.Process) {
	p.mu.Lock()
	p.procs[i] = proc
	p.mu.Unlock()
}

func (p *workerPool) running() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, proc := range p.procs {
		if proc != nil {
			n++
		}
	}
	return n
}

// signal sends sig to every running worker.
func (p *workerPool) signal(sig os.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, proc := range p.procs {
		if proc != nil {
			_ = proc.Signal(sig)
		}
	}
}

// scrape GETs path from every worker's control socket, in parallel.
func (p *workerPool) scrape(ctx context.Context, path string) (bodies [][]byte, errs []error) {
	return p.each(ctx, http.MethodGet, path, nil, http.StatusOK)
}

// each sends method path (with body, when not nil) to every worker's
// control socket, in parallel, and returns each answer's body, or why
// there is none: a worker that does not answer, or answers other than
// with status want.
func (p *workerPool) each(ctx context.Context, method, path string, body []byte, want int) (bodies [][]byte, errs []error) {
	bodies, errs = make([][]byte, len(p.procs)), make([]error, len(p.procs))
	var wg sync.WaitGroup
	for i := range p.procs {
		wg.Go(func() {
			var rd io.Reader
			if body != nil {
				rd = bytes.NewReader(body)
			}
			req, _ := http.NewRequestWithContext(ctx, method, "http://w"+strconv.Itoa(i)+path, rd)
			if body != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := p.client.Do(req)
			if err != nil {
				errs[i] = fmt.Errorf("worker %d is not answering", i)
				return
			}
			defer resp.Body.Close()
			bodies[i], err = io.ReadAll(io.LimitReader(resp.Body, 16<<20))
			if err == nil && resp.StatusCode != want {
				err = fmt.Errorf("worker %d: %s", i, workerDetail(bodies[i], resp.Status))
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return bodies, errs
}

// passDeletion is the primary's OnDelete hook: it hands the API server's
// answer to a pod's deletion to every worker (pathDeleted), so that their
// route caches stop routing to it before the call that deleted it returns,
// as the primary's own cache would without workers. The watch tells a
// worker that misses it (one that is restarting starts with an empty
// cache anyway); the wait is bounded.
func (p *workerPool) passDeletion(ctx context.Context, pod *corev1.Pod) {
	body, err := json.Marshal(pod)
	if err != nil {
		p.log.Warn("pass a deletion on to the proxy workers", "pod", pod.Name, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_, errs := p.each(ctx, http.MethodPost, pathDeleted, body, http.StatusNoContent)
	for _, err := range errs {
		if err != nil {
			p.log.Warn("a proxy worker was not told of a deletion; its watch will tell it", "pod", pod.Name, "err", err)
		}
	}
}

// observeDeletion is a worker's pathDeleted: the primary's passDeletion.
func observeDeletion(kube *k8s.Client) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		var pod corev1.Pod
		if err := json.NewDecoder(io.LimitReader(r.Body, 4<<20)).Decode(&pod); err != nil || pod.Name == "" {
			http.Error(w, fmt.Sprintf("not a pod: %v", err), http.StatusBadRequest)
			return
		}
		kube.ObserveDeletion(&pod)
		w.WriteHeader(http.StatusNoContent)
	})
}

// workerDetail is the detail of a worker's JSON error, or status.
func workerDetail(body []byte, status string) string {
	if _, rest, ok := bytes.Cut(body, []byte(`"detail":"`)); ok {
		if d, _, ok := bytes.Cut(rest, []byte(`"`)); ok {
			return string(d)
		}
	}
	return status
}

// readiness is the primary's /readyz: ready when every worker is.
func (p *workerPool) readiness() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, errs := p.scrape(r.Context(), pathReady)
		readiness(func() string {
			if err := errors.Join(errs...); err != nil {
				return strings.ReplaceAll(err.Error(), "\n", "; ")
			}
			return ""
		}).ServeHTTP(w, r)
	})
}

// metrics is the primary's /metrics: its own registry plus every worker's,
// added up. A worker that does not answer is left out (its counters come
// back, possibly reset, when it does).
func (p *workerPool) metrics(own *metrics.Registry) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var mine bytes.Buffer
		_, _ = own.WriteTo(&mine)
		bodies, errs := p.scrape(r.Context(), pathMetrics)
		scrapes := [][]byte{mine.Bytes()}
		for i, b := range bodies {
			if errs[i] == nil {
				scrapes = append(scrapes, b)
			} else {
				p.log.Debug("metrics of a proxy worker left out", "err", errs[i])
			}
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if err := metrics.Merge(w, scrapes...); err != nil {
			p.log.Warn("merge worker metrics", "err", err)
		}
	})
}

// takeHop applies and removes the hop headers of a request a worker passed
// on. Only workers reach the primary's socket, in a directory of its own.
func takeHop(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get(hopRemoteAddr); a != "" {
			r.RemoteAddr = a
		}
		if ap, err := netip.ParseAddrPort(r.Header.Get(hopLocalAddr)); err == nil {
			r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, net.TCPAddrFromAddrPort(ap)))
		}
		if r.Header.Get(hopTLS) == "1" {
			r.TLS = &tls.ConnectionState{HandshakeComplete: true}
		}
		for _, h := range hopHeaders {
			r.Header.Del(h)
		}
		next.ServeHTTP(w, r)
	})
}

// toPrimary is a worker's handler for every path but /route/: it passes
// the request to the primary over its socket, streaming both ways.
func toPrimary(dir string, log *slog.Logger) http.Handler {
	sock := filepath.Join(dir, primarySocket)
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "primary"
			pr.Out.Host = pr.In.Host
			for _, h := range hopHeaders {
				pr.Out.Header.Del(h)
			}
			pr.Out.Header.Set(hopRemoteAddr, pr.In.RemoteAddr)
			if a, ok := pr.In.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
				pr.Out.Header.Set(hopLocalAddr, a.String())
			}
			if pr.In.TLS != nil {
				pr.Out.Header.Set(hopTLS, "1")
			}
		},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		FlushInterval: -1, // event streams
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client went away
			}
			log.Warn("pass a request to the primary process", "path", r.URL.Path, "err", err)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, `{"error":"Bad Gateway","detail":"the nocrd primary process did not answer"}`+"\n")
		},
	}
}

// serveWorker is a proxy worker's life: the edge proxy on the shared public
// port, everything else passed to the primary, and its own readiness and
// metrics on its control socket for the primary to collect.
func serveWorker(ctx context.Context, cfg *config, dir string, index int, log *slog.Logger) error {
	log = log.With("worker", index)
	kube, err := k8s.New(cfg.Kube)
	if err != nil {
		return err
	}
	var verifier *auth.Verifier
	if cfg.Auth.Enabled {
		if verifier, err = auth.NewVerifier(ctx, cfg.Auth, nil); err != nil {
			return err
		}
	}
	reg := metrics.NewRegistry()
	var pset *policies.Set
	if len(cfg.Policy.Route) > 0 {
		pcfg := cfg.Policy
		pcfg.Spawn = nil // admission runs in the primary
		defaultPolicyCache(cfg)
		pcfg.CacheDir = cfg.Policy.CacheDir
		var stop func()
		if pset, stop, err = openPolicies(ctx, pcfg, reg, log); err != nil {
			return err
		}
		defer stop()
	}
	fd, err := newFrontDoor(cfg, kube, verifier, nil, toPrimary(dir, log), reg, pset, log)
	if err != nil {
		return err
	}
	ln, err := listenReusePort(cfg, cfg.Serve.Port)
	if err != nil {
		return err
	}
	// The control socket opens last: the primary takes it as the sign
	// that this worker holds the public port.
	control := http.NewServeMux()
	control.Handle(pathReady, fd.ready())
	control.Handle(pathMetrics, reg.Handler())
	control.Handle(pathDeleted, observeDeletion(kube))
	cln, err := net.Listen("unix", workerSocket(dir, index))
	if err != nil {
		ln.Close()
		return err
	}
	csrv := &http.Server{Handler: control, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = csrv.Serve(cln) }()
	defer csrv.Close()
	return fd.serve(ctx, ln, func() {})
}
