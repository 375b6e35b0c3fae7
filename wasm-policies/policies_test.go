package policies_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	policies "github.com/nocrd/nocrd/wasm-policies"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wat compiles testdata/name.wat with wabt's wat2wasm (make deps installs it).
func wat(t testing.TB, name string, flags ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name+".wasm")
	args := append([]string{filepath.Join("testdata", name+".wat"), "-o", out}, flags...)
	if b, err := exec.Command("wat2wasm", args...).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm %s (install wabt: make deps): %v\n%s", name, err, b)
	}
	return out
}

var goGuests sync.Map // package dir -> wasm path

// goGuest builds a policy with the standard Go toolchain, once per test run.
func goGuest(t testing.TB, pkg string) string {
	t.Helper()
	if p, ok := goGuests.Load(pkg); ok {
		return p.(string)
	}
	dir, err := os.MkdirTemp("", "nocrd-guest-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(pkg)+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./"+pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	goGuests.Store(pkg, out)
	return out
}

func newHost(t testing.TB, opts policies.Options) *policies.Host {
	t.Helper()
	h, err := policies.NewHost(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return h
}

func load(t testing.TB, h *policies.Host, path string, config string, timeout time.Duration) *policies.Module {
	t.Helper()
	m, err := h.Load(context.Background(), path, []byte(config), timeout)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func request(method, uri string, header ...string) *policies.Message {
	m := policies.NewMessage(method, uri, nil)
	for i := 0; i+1 < len(header); i += 2 {
		m.AddHeader([]byte(header[i]), []byte(header[i+1]))
	}
	return m
}

// TestDecisions runs guests that decide, in WAT and in Go, and checks what
// they let through, what they answer, and what they change.
func TestDecisions(t *testing.T) {
	h := newHost(t, policies.Options{})
	readonly := load(t, h, wat(t, "readonly"), "", time.Second)
	inject := load(t, h, wat(t, "inject"), "from-config", time.Second)
	identity := load(t, h, goGuest(t, "examples/inject-identity"), "X-User", time.Second)
	command := load(t, h, wat(t, "command"), "", time.Second)

	cases := []struct {
		name   string
		m      *policies.Module
		req    *policies.Message
		next   bool
		status int
		body   string
		header [2]string // a request header the policy must have set
	}{
		{"WAT lets GET through", readonly, request("GET", "/x"), true, 0, "", [2]string{}},
		{"WAT lets HEAD through", readonly, request("HEAD", "/x"), true, 0, "", [2]string{}},
		{"WAT refuses POST", readonly, request("POST", "/x"), false, 403, "read-only workspace", [2]string{}},
		{"WAT refuses DELETE after a GET", readonly, request("DELETE", "/x"), false, 403, "read-only workspace", [2]string{}},
		{"WAT sets a header from its config", inject, request("GET", "/"), true, 0, "", [2]string{"x-policy", "from-config"}},
		{"Go guest passes the subject on", identity, request("GET", "/", "X-Nocrd-Subject", "alice", "X-User", "mallory"), true, 0, "", [2]string{"X-User", "alice"}},
		{"Go guest refuses without a subject", identity, request("GET", "/"), false, 403, "no verified subject", [2]string{}},
		// A command module's main installs its handler from _start.
		{"command module runs main's handler", command, request("GET", "/"), false, 403, "refused by main's handler", [2]string{}},
	}
	var resp policies.Response
	for _, c := range cases {
		next, err := c.m.Handle(c.req, &resp)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if next != c.next || (!next && (resp.Status != c.status || string(resp.Body) != c.body)) {
			t.Errorf("%s: next=%v %d %q, want next=%v %d %q", c.name, next, resp.Status, resp.Body, c.next, c.status, c.body)
		}
		if c.header[0] != "" {
			if vals := headerValues(c.req, c.header[0]); len(vals) != 1 || vals[0] != c.header[1] {
				t.Errorf("%s: %s = %q, want exactly %q", c.name, c.header[0], vals, c.header[1])
			}
		}
	}
}

// TestDecisionsLogged: a decision is logged at debug with its policy and
// outcome, a refusal with its status and reason too; a failed guest at warn
// with the reason it failed; a dry run (Try) not at all.
func TestDecisionsLogged(t *testing.T) {
	var log lockedBuffer
	h := newHost(t, policies.Options{Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	readonly := load(t, h, wat(t, "readonly"), "", time.Second)
	trap := load(t, h, wat(t, "trap"), "", time.Second)
	var resp policies.Response
	for _, c := range []struct {
		m      *policies.Module
		method string
		want   []string // in the one line the decision logs
	}{
		{readonly, "GET", []string{`level=DEBUG msg="policy decision" policy=readonly outcome=allow`}},
		{readonly, "POST", []string{`level=DEBUG msg="policy decision" policy=readonly outcome=deny status=403 reason="read-only workspace"`}},
		{trap, "GET", []string{`level=WARN msg="policy failed; denied" policy=trap path=`, " outcome=trap err="}},
	} {
		before := log.String()
		_, _ = c.m.Handle(request(c.method, "/x"), &resp)
		lines := strings.Split(strings.TrimSpace(strings.TrimPrefix(log.String(), before)), "\n")
		if len(lines) != 1 {
			t.Errorf("%s %s logged %d lines, want 1:\n%s", c.m.Name, c.method, len(lines), strings.Join(lines, "\n"))
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(lines[0], w) {
				t.Errorf("%s %s logged\n%s\nwithout %q", c.m.Name, c.method, lines[0], w)
			}
		}
	}
	before := log.String()
	if next, err := readonly.Try(request("POST", "/x"), &resp); next || err != nil || resp.Status != 403 {
		t.Errorf("Try POST: next=%v err=%v status %d, want the refusal", next, err, resp.Status)
	}
	if after := log.String(); after != before {
		t.Errorf("a dry run logged:\n%s", strings.TrimPrefix(after, before))
	}
}

// lockedBuffer is a log destination that may be written while read.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func headerValues(m *policies.Message, name string) []string {
	b, n := m.AppendHeaderValues(nil, []byte(name))
	if n == 0 {
		return nil
	}
	return strings.Split(string(bytes.TrimSuffix(b, []byte{0})), "\x00")
}

// TestFaultsFailClosed: every way a guest can fail is a *FaultError naming
// the policy and the reason, within the deadline, and the module keeps
// answering (with a fresh instance) afterwards.
func TestFaultsFailClosed(t *testing.T) {
	h := newHost(t, policies.Options{MemoryLimitPages: 32, PoolSize: 2})
	cases := []struct {
		guest, reason string
	}{
		{"trap", "trap"},
		{"loop", "timeout"},
		{"recurse", "timeout"},
		{"skiploop", "timeout"},
		{"bomb", "trap"},
		{"badnext", "malformed"},
		{"interim", "malformed"},
		{"badstatus", "trap"},
		{"smuggle", "trap"},
		{"outofbounds", "trap"},
	}
	for _, c := range cases {
		t.Run(c.guest, func(t *testing.T) {
			m := load(t, h, wat(t, c.guest), "", 50*time.Millisecond)
			defer m.Close(context.Background())
			for i := range 3 { // the first instance, then fresh ones
				req := request("GET", "/", "x-a", "0")
				start := time.Now()
				next, err := m.Handle(req, &policies.Response{})
				took := time.Since(start)
				var fe *policies.FaultError
				if next || !errors.As(err, &fe) || fe.Policy != c.guest || fe.Reason != c.reason {
					t.Fatalf("call %d: next=%v err=%v, want a %s fault", i, next, err, c.reason)
				}
				if took > time.Second {
					t.Fatalf("call %d took %s", i, took)
				}
				if v := headerValues(req, "x-a"); len(v) != 1 || v[0] != "0" {
					t.Fatalf("call %d: the request was changed: x-a %q", i, v)
				}
			}
		})
	}
}

// TestUnreadableBody: a guest that reads a body the host does not hold (a
// route request's, streamed to the workspace) fails closed, instead of
// reading an empty body and letting through what it would refuse; a
// request without a body, or with one the host holds, reads as it is.
func TestUnreadableBody(t *testing.T) {
	h := newHost(t, policies.Options{})
	m := load(t, h, wat(t, "bodyscan"), "", time.Second)
	for _, c := range []struct {
		name   string
		req    *policies.Message
		next   bool
		reason string
	}{
		{"no body", policies.NewMessage("GET", "/", nil), true, ""},
		{"a harmless body", policies.NewMessage("POST", "/", []byte("SELECT 1")), true, ""},
		{"a refused body", policies.NewMessage("POST", "/", []byte("DROP TABLE")), false, ""},
		{"a body streamed past the policy", &policies.Message{MethodValue: []byte("POST"), URIValue: []byte("/"), BodyHidden: true}, false, "trap"},
	} {
		next, err := m.Handle(c.req, &policies.Response{})
		var fe *policies.FaultError
		switch {
		case c.reason == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.reason != "" && (!errors.As(err, &fe) || fe.Reason != c.reason || !strings.Contains(fe.Err.Error(), "request body")):
			t.Errorf("%s: next=%v err=%v, want a %s fault about the request body", c.name, next, err, c.reason)
		case next != c.next:
			t.Errorf("%s: next=%v, want %v", c.name, next, c.next)
		}
	}
}

// TestLoadErrors: a module that cannot work fails Load with its file and
// the reason.
func TestLoadErrors(t *testing.T) {
	h := newHost(t, policies.Options{})
	garbage := filepath.Join(t.TempDir(), "garbage.wasm")
	if err := os.WriteFile(garbage, []byte("not wasm at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ path, reason string }{
		{wat(t, "noexport"), "exports no handle_request function"},
		{wat(t, "foreign"), "imports env.open_socket, which nocrd does not provide"},
		{wat(t, "start"), "cannot be run under a deadline: cannot be instrumented: it has a start function"},
		{wat(t, "exits"), "does not instantiate: _start exited (code 0)"},
		{garbage, "is not a valid WebAssembly module"},
		{filepath.Join(t.TempDir(), "missing.wasm"), "cannot be read"},
	}
	for _, c := range cases {
		_, err := h.Load(context.Background(), c.path, nil, time.Second)
		var le *policies.LoadError
		if !errors.As(err, &le) || le.Path != c.path || !strings.Contains(err.Error(), c.reason) || !strings.Contains(err.Error(), c.path) {
			t.Errorf("%s: %v, want a LoadError saying %q", filepath.Base(c.path), err, c.reason)
		}
	}
	if _, err := h.Load(context.Background(), wat(t, "readonly"), nil, 0); err == nil {
		t.Error("a zero deadline was accepted")
	}

	// An _initialize that never returns is stopped at InstantiateTimeout.
	slow := newHost(t, policies.Options{InstantiateTimeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := slow.Load(context.Background(), wat(t, "initloop"), nil, time.Second)
	if took := time.Since(start); err == nil || !strings.Contains(err.Error(), "does not instantiate") || took > 5*time.Second {
		t.Errorf("initloop: %v after %s, want a LoadError within the instantiate timeout", err, took)
	}
}

// TestChainOrder: policies run in order and the first that stops a request
// ends it; later ones never see it.
func TestChainOrder(t *testing.T) {
	h := newHost(t, policies.Options{})
	chain := policies.NewChain(load(t, h, wat(t, "inject"), "first", time.Second), load(t, h, wat(t, "readonly"), "", time.Second))
	req := request("POST", "/")
	var resp policies.Response
	next, name, err := chain.Handle(req, &resp)
	if err != nil || next || name != "readonly" || resp.Status != 403 {
		t.Fatalf("POST: next=%v by %q %v %d", next, name, err, resp.Status)
	}
	if v := headerValues(req, "x-policy"); len(v) != 1 || v[0] != "first" {
		t.Fatalf("the first policy did not run: %q", v)
	}
	if next, _, err := chain.Handle(request("GET", "/"), &resp); !next || err != nil {
		t.Fatalf("GET: next=%v %v", next, err)
	}
}

// TestConcurrentCalls: more callers than instances share the pool safely.
func TestConcurrentCalls(t *testing.T) {
	h := newHost(t, policies.Options{PoolSize: 2})
	m := load(t, h, wat(t, "readonly"), "", time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp policies.Response
			for j := range 200 {
				method := "GET"
				if (i+j)%2 == 1 {
					method = "PUT"
				}
				next, err := m.Handle(request(method, "/"), &resp)
				if err != nil || next != (method == "GET") {
					errs <- errors.New(method + ": wrong decision")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestDeadlineOnOneP: the guest checks its own deadline on the goroutine
// that called it, so a runaway call is stopped on time even when nothing
// else can run (GOMAXPROCS=1, as in each proxy worker and in a pod with one
// CPU). A watchdog goroutine could not run there before the runtime
// preempted the guest: such calls ended after about 20 ms. A quick call
// right after a runaway one is not cut short.
func TestDeadlineOnOneP(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const deadline = 5 * time.Millisecond
	h := newHost(t, policies.Options{PoolSize: 1})
	m := load(t, h, wat(t, "loop"), "", deadline)
	defer m.Close(context.Background())
	allow := load(t, h, wat(t, "inject"), "", deadline)
	defer allow.Close(context.Background())
	var took []time.Duration
	for i := range 5 {
		start := time.Now()
		_, err := m.Handle(request("GET", "/"), &policies.Response{})
		took = append(took, time.Since(start))
		var fe *policies.FaultError
		if !errors.As(err, &fe) || fe.Reason != "timeout" {
			t.Fatalf("call %d: %v, want a timeout", i, err)
		}
		for range 100 {
			if next, err := allow.Handle(request("GET", "/"), &policies.Response{}); !next || err != nil {
				t.Fatalf("call %d: a quick decision failed: %v %v", i, next, err)
			}
		}
	}
	slices.Sort(took)
	if took[0] < deadline || took[2] > 2*deadline {
		t.Errorf("runaway calls took %v, want a median between %s and %s", took, deadline, 2*deadline)
	}
}

// TestTimeoutIncludesWaiting: a call that has to wait for an instance (the
// only one is busy with a runaway call) gets what is left of its timeout,
// so it fails closed within the timeout of when it was made, not later.
func TestTimeoutIncludesWaiting(t *testing.T) {
	const timeout = time.Second
	h := newHost(t, policies.Options{PoolSize: 1})
	m := load(t, h, wat(t, "loop"), "", timeout)
	defer m.Close(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := m.Handle(request("GET", "/"), &policies.Response{})
		first <- err
	}()
	time.Sleep(timeout / 2) // the first call holds the only instance
	start := time.Now()
	_, err := m.Handle(request("GET", "/"), &policies.Response{})
	took := time.Since(start)
	var fe *policies.FaultError
	if !errors.As(err, &fe) || (fe.Reason != "timeout" && fe.Reason != "busy") {
		t.Errorf("the waiting call: %v, want a timeout", err)
	}
	// It waited about half the timeout and then ran for the rest; a full
	// timeout after the wait would make it take one and a half.
	if took > timeout*13/10 {
		t.Errorf("the waiting call took %s, want about %s", took, timeout)
	}
	if err := <-first; !errors.As(err, &fe) || fe.Reason != "timeout" {
		t.Errorf("the first call: %v, want a timeout", err)
	}
}

// TestDeadlineDuringGC: a guest that never returns still visits Go (see
// CheckModule), so a garbage collection that starts while it runs does not
// wait for it for ever, and the guest is still stopped.
func TestDeadlineDuringGC(t *testing.T) {
	h := newHost(t, policies.Options{PoolSize: 1})
	stop := make(chan struct{})
	gcs := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				gcs <- n
				return
			default:
				runtime.GC()
				n++
			}
		}
	}()
	for _, guest := range []string{"loop", "recurse"} {
		m := load(t, h, wat(t, guest), "", 20*time.Millisecond)
		for i := range 5 {
			start := time.Now()
			_, err := m.Handle(request("GET", "/"), &policies.Response{})
			var fe *policies.FaultError
			if !errors.As(err, &fe) || fe.Reason != "timeout" || time.Since(start) > 2*time.Second {
				t.Errorf("%s call %d: %v after %s", guest, i, err, time.Since(start))
			}
		}
		_ = m.Close(context.Background())
	}
	close(stop)
	if n := <-gcs; n == 0 {
		t.Error("no collection ran during the calls")
	}
}
