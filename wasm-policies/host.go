// Package policies hosts nocrd's WebAssembly policies: modules written
// against the http-wasm handler ABI (abi.go) that decide whether a route
// request may reach its workspace and whether a spawn is admitted.
//
// A Host owns one wazero runtime (compiler engine, optional on-disk
// compilation cache, a memory limit for every instance, no filesystem or
// network for guests). Load instruments a module so that it can be stopped
// (instrument.go), compiles it once, checks its exports and makes its
// instances eagerly, so a broken module fails at start-up with its file and
// reason. Instances are pooled and reused; each call has a deadline, which
// the guest itself checks through the function instrument adds, and a trap,
// a timeout, memory exhaustion or a malformed answer is a deny (fail
// closed) after which the instance is thrown away.
//
// The package sees requests only through its Request interface, so it
// imports neither fasthttp nor client-go; callers adapt their requests.
package policies

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// Options configure a Host.
type Options struct {
	// CacheDir, when set, keeps compiled modules on disk between runs.
	CacheDir string
	// MemoryLimitPages bounds each instance's memory in 64 KiB pages
	// (default 1024, 64 MiB).
	MemoryLimitPages uint32
	// PoolSize is the number of instances of each module (default
	// GOMAXPROCS×2), all made at Load: a call beyond it waits for a free
	// instance, within its deadline. An instance discarded after a fault is
	// replaced in the background, never on a request's time.
	PoolSize int
	// InstantiateTimeout bounds making one instance, the guest's
	// _initialize included (default 10s).
	InstantiateTimeout time.Duration
	Logger             *slog.Logger
}

// Host runs policy modules.
type Host struct {
	rt    wazero.Runtime
	cache wazero.CompilationCache
	opts  Options
	log   *slog.Logger
}

// NewHost starts a wazero runtime with the host functions of the ABI.
func NewHost(ctx context.Context, opts Options) (*Host, error) {
	if opts.MemoryLimitPages == 0 {
		opts.MemoryLimitPages = 1024
	}
	if opts.PoolSize <= 0 {
		opts.PoolSize = 2 * runtimeProcs()
	}
	if opts.InstantiateTimeout <= 0 {
		opts.InstantiateTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	h := &Host{opts: opts, log: opts.Logger}
	rc := wazero.NewRuntimeConfigCompiler().
		WithMemoryLimitPages(opts.MemoryLimitPages).
		// No WithCloseOnContextDone: it costs a goroutine per call. A
		// guest stops itself through the check instrument adds.
		WithCloseOnContextDone(false)
	if opts.CacheDir != "" {
		if err := os.MkdirAll(opts.CacheDir, 0o755); err != nil {
			return nil, fmt.Errorf("policy compilation cache %s: %w", opts.CacheDir, err)
		}
		c, err := wazero.NewCompilationCacheWithDir(opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("policy compilation cache %s: %w", opts.CacheDir, err)
		}
		h.cache = c
		rc = rc.WithCompilationCache(c)
	}
	h.rt = wazero.NewRuntimeWithConfig(ctx, rc)
	// WASI is there for guests built by Go, whose runtime needs clocks and
	// random numbers; no directory is mounted and there are no sockets.
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, h.rt); err != nil {
		_ = h.Close(ctx)
		return nil, fmt.Errorf("wasi: %w", err)
	}
	if err := instantiateHostModule(ctx, h.rt); err != nil {
		_ = h.Close(ctx)
		return nil, fmt.Errorf("%s host module: %w", HostModule, err)
	}
	if err := instantiateCheckModule(ctx, h.rt); err != nil {
		_ = h.Close(ctx)
		return nil, fmt.Errorf("%s host module: %w", CheckModule, err)
	}
	return h, nil
}

// Close releases the runtime and every module loaded in it.
func (h *Host) Close(ctx context.Context) error {
	err := h.rt.Close(ctx)
	if h.cache != nil {
		_ = h.cache.Close(ctx)
	}
	return err
}

// Module is a compiled policy and its pool of instances.
type Module struct {
	// Name identifies the policy in logs, metrics and deny reasons: the
	// file name without its extension.
	Name    string
	Path    string
	host    *Host
	code    wazero.CompiledModule
	config  []byte
	timeout time.Duration
	// The pool, under mu: idle is a stack of ready instances, so the one
	// used last, whose memory is likeliest still in the CPU's caches, is
	// the next one used; waiters are the calls that found it empty, in
	// arrival order; made counts live instances and those being made, at
	// most size; refills tracks the background replacements.
	mu      sync.Mutex
	idle    []*instance
	waiters []chan *instance
	made    int
	size    int
	refills sync.WaitGroup
	closed  atomic.Bool
	// counters count decisions, when the module belongs to a Set.
	counters *decisionCounters
}

// LoadError says why a module cannot be used, naming its file.
type LoadError struct {
	Path   string
	Reason string
	Err    error
}

func (e *LoadError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("policy %s: %s: %v", e.Path, e.Reason, e.Err)
	}
	return fmt.Sprintf("policy %s: %s", e.Path, e.Reason)
}

func (e *LoadError) Unwrap() error { return e.Err }

// Load instruments and compiles the module at path, with config for get_config and a
// deadline per call, and makes its first instance.
func (h *Host) Load(ctx context.Context, path string, config []byte, timeout time.Duration) (*Module, error) {
	wasm, err := os.ReadFile(path)
	if err != nil {
		return nil, &LoadError{Path: path, Reason: "cannot be read", Err: err}
	}
	return h.LoadBytes(ctx, path, wasm, config, timeout)
}

// LoadBytes is Load for a module already in memory; path names it.
func (h *Host) LoadBytes(ctx context.Context, path string, wasm, config []byte, timeout time.Duration) (*Module, error) {
	if timeout <= 0 {
		return nil, &LoadError{Path: path, Reason: fmt.Sprintf("deadline must be positive, got %s", timeout)}
	}
	stoppable, err := instrument(wasm)
	if err != nil {
		// Say what wazero finds wrong, if anything, before what stops
		// nocrd from instrumenting a valid module.
		code, cerr := h.rt.CompileModule(ctx, wasm)
		if cerr != nil {
			return nil, &LoadError{Path: path, Reason: "is not a valid WebAssembly module", Err: cerr}
		}
		_ = code.Close(ctx)
		return nil, &LoadError{Path: path, Reason: "cannot be run under a deadline", Err: err}
	}
	wasm = stoppable
	code, err := h.rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, &LoadError{Path: path, Reason: "is not a valid WebAssembly module", Err: err}
	}
	fail := func(reason string) (*Module, error) {
		_ = code.Close(ctx)
		return nil, &LoadError{Path: path, Reason: reason}
	}
	exports := code.ExportedFunctions()
	hr, ok := exports[ExportHandleRequest]
	if !ok {
		return fail("exports no " + ExportHandleRequest + " function")
	}
	if len(hr.ParamTypes()) != 0 || len(hr.ResultTypes()) != 1 || hr.ResultTypes()[0] != api.ValueTypeI64 {
		return fail(ExportHandleRequest + " must take nothing and return i64")
	}
	if resp, ok := exports[ExportHandleResponse]; ok && (len(resp.ParamTypes()) != 2 || len(resp.ResultTypes()) != 0) {
		return fail(ExportHandleResponse + " must take (i32, i32) and return nothing")
	}
	if _, ok := code.ExportedMemories()[ExportMemory]; !ok {
		return fail("exports no memory")
	}
	for _, imp := range code.ImportedFunctions() {
		mod, name, _ := imp.Import()
		if mod != HostModule && mod != wasi_snapshot_preview1.ModuleName && (mod != CheckModule || name != CheckFunction) {
			return fail(fmt.Sprintf("imports %s.%s, which nocrd does not provide", mod, name))
		}
	}
	m := &Module{
		Name: ModuleName(path), Path: path,
		host: h, code: code, config: config, timeout: timeout,
		size: h.opts.PoolSize, idle: make([]*instance, 0, h.opts.PoolSize),
	}
	for range h.opts.PoolSize {
		inst, err := m.instantiate(ctx)
		if err != nil {
			_ = m.Close(ctx)
			return nil, &LoadError{Path: path, Reason: "does not instantiate", Err: err}
		}
		m.made++
		m.idle = append(m.idle, inst)
	}
	return m, nil
}

// Close discards the module's instances; calls in flight finish first
// because they hold theirs, and discard them when they return.
func (m *Module) Close(ctx context.Context) error {
	m.mu.Lock() // refill and put check closed under mu
	m.closed.Store(true)
	idle, waiters := m.idle, m.waiters
	m.idle, m.waiters = nil, nil
	m.mu.Unlock()
	for _, w := range waiters {
		w <- nil // no instance will come: the call fails now
	}
	for _, inst := range idle {
		_ = inst.mod.Close(ctx)
	}
	m.refills.Wait() // a replacement made meanwhile is discarded by put
	return m.code.Close(ctx)
}

// instance is one instantiated guest and the state of the call it runs.
type instance struct {
	m      *Module
	mod    api.Module
	handle api.Function
	stack  [2]uint64
	// ctx carries the instance to the host functions.
	ctx *instanceContext
	// deadline is the running call's, in clock.MonoNanos; the check instrument
	// added sets timedOut before it stops a call past it. Only the
	// goroutine making the call touches them.
	deadline int64
	timedOut bool
	call     call
}

type instanceKey struct{}

// instanceContext is the context of an instance's calls. Its Value knows
// instanceKey and nothing else: wazero looks a few keys up on every call,
// and on this context each lookup is a type comparison.
type instanceContext struct {
	context.Context // Background: no deadline, never done
	inst            *instance
}

func (c *instanceContext) Value(key any) any {
	if _, ok := key.(instanceKey); ok {
		return c.inst
	}
	return nil
}

func (m *Module) instantiate(ctx context.Context) (*instance, error) {
	inst := &instance{m: m}
	inst.ctx = &instanceContext{Context: context.Background(), inst: inst}
	cfg := wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithSysWalltime().WithSysNanotime().WithRandSource(rand.Reader)
	mod, err := m.host.rt.InstantiateModule(ctx, m.code, cfg)
	if err != nil {
		return nil, err
	}
	inst.mod = mod
	inst.handle = mod.ExportedFunction(ExportHandleRequest)
	// _initialize (a reactor's), or else _start (a command's main), runs
	// once, under a deadline like any call, within InstantiateTimeout; it
	// may call get_config and log, which find their instance in the
	// context.
	name := ExportInitialize
	init := mod.ExportedFunction(name)
	if init == nil {
		name = ExportStart
		init = mod.ExportedFunction(name)
	}
	if init != nil {
		inst.begin(m.host.opts.InstantiateTimeout)
		if _, err := init.Call(inst.ctx); err != nil {
			_ = mod.Close(ctx)
			var exit *sys.ExitError
			switch {
			case inst.timedOut:
				return nil, fmt.Errorf("%s not done within %s", name, m.host.opts.InstantiateTimeout)
			case errors.As(err, &exit):
				return nil, fmt.Errorf("%s exited (code %d), which ends the instance: a guest must return from it (build Go guests with -buildmode=c-shared)", name, exit.ExitCode())
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return inst, nil
}

// get returns an idle instance and what is left of the call's timeout, or
// waits for one for at most the timeout. The clock is read only when it
// has to wait.
func (m *Module) get() (*instance, time.Duration, error) {
	m.mu.Lock()
	if n := len(m.idle); n > 0 {
		inst := m.idle[n-1]
		m.idle[n-1] = nil
		m.idle = m.idle[:n-1]
		m.mu.Unlock()
		return inst, m.timeout, nil
	}
	if m.closed.Load() {
		m.mu.Unlock()
		return nil, 0, errClosed
	}
	w := make(chan *instance, 1) // put and Close never block on it
	m.waiters = append(m.waiters, w)
	m.refillLocked() // in case an earlier replacement failed
	m.mu.Unlock()

	start := time.Now()
	t := time.NewTimer(m.timeout)
	defer t.Stop()
	select {
	case inst := <-w:
		if inst == nil {
			return nil, 0, errClosed
		}
		return inst, max(m.timeout-time.Since(start), 0), nil
	case <-t.C:
	}
	m.mu.Lock()
	if i := slices.Index(m.waiters, w); i >= 0 {
		m.waiters = slices.Delete(m.waiters, i, i+1)
		m.mu.Unlock()
		return nil, 0, errBusy
	}
	m.mu.Unlock()
	// An instance was handed over as the timer fired: pass it on.
	if inst := <-w; inst != nil {
		m.put(inst)
	}
	return nil, 0, errBusy
}

// put returns a healthy instance to the pool: to the call that has waited
// longest, else onto the idle stack.
func (m *Module) put(inst *instance) {
	m.mu.Lock()
	if m.closed.Load() {
		m.mu.Unlock()
		m.discard(inst)
		return
	}
	if len(m.waiters) > 0 {
		w := m.waiters[0]
		m.waiters = slices.Delete(m.waiters, 0, 1)
		m.mu.Unlock()
		w <- inst
		return
	}
	m.idle = append(m.idle, inst)
	m.mu.Unlock()
}

// discard closes an instance that failed (its state is unknown) and has a
// new one made in the background.
func (m *Module) discard(inst *instance) {
	_ = inst.mod.Close(context.Background())
	m.mu.Lock()
	m.made--
	m.mu.Unlock()
	m.refill()
}

// refill starts making an instance when the pool is short of one and the
// module is open. A failure is logged; the next call tries again.
func (m *Module) refill() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refillLocked()
}

func (m *Module) refillLocked() {
	if m.closed.Load() || m.made >= m.size {
		return
	}
	m.made++
	m.refills.Add(1)
	go func() {
		defer m.refills.Done()
		inst, err := m.instantiate(context.Background())
		if err != nil {
			m.host.log.Error("policy instance could not be replaced", "policy", m.Name, "path", m.Path, "err", err)
			m.mu.Lock()
			m.made--
			m.mu.Unlock()
			return
		}
		m.put(inst)
	}()
}

var (
	errBusy   = errors.New("every instance is busy")
	errClosed = errors.New("module closed")
)

// runtimeProcs is GOMAXPROCS, the number of calls that can run at once.
func runtimeProcs() int { return max(1, runtime.GOMAXPROCS(0)) }
