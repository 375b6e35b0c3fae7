package policies

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nocrd/nocrd/internal/metrics"
)

// Set is every configured policy: one Chain per hook, loaded from the
// module files of a Config, and reloaded from them (Reload) when they
// change.
type Set struct {
	cfg    Config
	host   *Host
	log    *slog.Logger
	reg    *metrics.Registry
	chains map[string]*Chain
	// loaded is what each chain was last built from, for Reload.
	loaded map[string][]loadedModule
	// counters are per hook and policy name, kept across reloads so that
	// a reloaded policy keeps counting in the same series.
	counters map[string]*decisionCounters
	mu       sync.Mutex // serialises Reload and Close
	// retiring are the replaced modules waiting out the calls that picked
	// them before the swap; closing ends the wait at Close.
	retiring sync.WaitGroup
	closing  chan struct{}
}

type loadedModule struct {
	path string
	sum  [sha256.Size]byte
	stat fileStamp
	mod  *Module
}

type fileStamp struct {
	size int64
	mod  time.Time
}

func stamp(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{size: -1}
	}
	return fileStamp{fi.Size(), fi.ModTime()}
}

// Open loads every module of cfg; any that cannot be used fails it with a
// *LoadError naming the file and the reason. reg, when not nil, receives
// nocrd_policy_decisions_total.
func Open(ctx context.Context, cfg Config, reg *metrics.Registry, log *slog.Logger) (*Set, error) {
	if log == nil {
		log = slog.Default()
	}
	if reg == nil {
		reg = metrics.NewRegistry()
	}
	h, err := NewHost(ctx, Options{CacheDir: cfg.CacheDir, MemoryLimitPages: uint32(cfg.MemoryLimitMB) * 16, Logger: log})
	if err != nil {
		return nil, err
	}
	s := &Set{
		cfg: cfg, host: h, log: log, reg: reg,
		chains:   map[string]*Chain{HookRoute: NewChain(), HookSpawn: NewChain()},
		loaded:   map[string][]loadedModule{},
		counters: map[string]*decisionCounters{},
		closing:  make(chan struct{}),
	}
	if _, err := s.Reload(ctx); err != nil {
		_ = h.Close(ctx)
		return nil, err
	}
	return s, nil
}

// Chain returns the chain of a hook (HookRoute or HookSpawn); it is empty
// when no policy is configured for it.
func (s *Set) Chain(hook string) *Chain { return s.chains[hook] }

func (s *Set) paths(hook string) ([]string, time.Duration) {
	if hook == HookRoute {
		return s.cfg.Route, s.cfg.RouteTimeout
	}
	return s.cfg.Spawn, s.cfg.SpawnTimeout
}

// Reload reads every module file again and, when any changed, compiles and
// instantiates the new versions first: only when all of them load are the
// chains swapped, atomically, calls in flight finishing on the old
// modules. A module that fails leaves every chain as it was, and the error
// says which file and why. changed reports whether a chain was swapped.
func (s *Set) Reload(ctx context.Context) (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := map[string][]loadedModule{}
	var fresh []*Module // loaded by this call, closed if it fails
	fail := func(err error) (bool, error) {
		for _, m := range fresh {
			_ = m.Close(ctx)
		}
		return false, err
	}
	for _, hook := range []string{HookRoute, HookSpawn} {
		paths, timeout := s.paths(hook)
		old := s.loaded[hook]
		for i, path := range paths {
			st := stamp(path)
			if i < len(old) && old[i].path == path && old[i].stat == st {
				next[hook] = append(next[hook], old[i])
				continue
			}
			wasm, err := os.ReadFile(path)
			if err != nil {
				return fail(&LoadError{Path: path, Reason: "cannot be read", Err: err})
			}
			sum := sha256.Sum256(wasm)
			if i < len(old) && old[i].path == path && bytes.Equal(old[i].sum[:], sum[:]) {
				old[i].stat = st // touched, not changed
				next[hook] = append(next[hook], old[i])
				continue
			}
			m, err := s.host.LoadBytes(ctx, path, wasm, []byte(s.cfg.Configs[ModuleName(path)]), timeout)
			if err != nil {
				return fail(err)
			}
			m.counters = s.countersFor(hook, m.Name)
			fresh = append(fresh, m)
			next[hook] = append(next[hook], loadedModule{path: path, sum: sum, stat: st, mod: m})
		}
	}
	if len(fresh) == 0 {
		s.loaded = next
		return false, nil
	}
	kept := map[*Module]bool{}
	for hook, lms := range next {
		mods := make([]*Module, len(lms))
		for i, lm := range lms {
			mods[i] = lm.mod
			kept[lm.mod] = true
		}
		s.chains[hook].swap(mods)
	}
	// A call may have taken the old list just before the swap: the old
	// modules stay open for a grace period longer than any deadline.
	grace := 2*max(s.cfg.RouteTimeout, s.cfg.SpawnTimeout) + time.Second
	for _, lms := range s.loaded {
		for _, lm := range lms {
			if !kept[lm.mod] {
				s.retiring.Add(1)
				go func(m *Module) {
					defer s.retiring.Done()
					t := time.NewTimer(grace)
					defer t.Stop()
					select {
					case <-t.C:
					case <-s.closing:
					}
					_ = m.Close(context.Background())
				}(lm.mod)
			}
		}
	}
	if s.loaded[HookRoute] != nil || s.loaded[HookSpawn] != nil {
		for _, m := range fresh {
			s.log.Info("policy reloaded", "policy", m.Name, "path", m.Path)
		}
	}
	s.loaded = next
	return true, nil
}

// Watch reloads the modules whenever their files change, checking every
// cfg.Watch, until ctx ends. A failed reload is logged and retried only
// when the files change again.
func (s *Set) Watch(ctx context.Context) {
	if s.cfg.Watch <= 0 || !s.cfg.Enabled() {
		return
	}
	t := time.NewTicker(s.cfg.Watch)
	defer t.Stop()
	var failed map[string]fileStamp // the stamps that last failed
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.stamps()
		if failed != nil && mapsEqual(failed, now) {
			continue
		}
		if _, err := s.Reload(ctx); err != nil {
			s.log.Error("policy reload failed; the policies in force stay", "err", err)
			failed = now
			continue
		}
		failed = nil
	}
}

func (s *Set) stamps() map[string]fileStamp {
	out := map[string]fileStamp{}
	for _, p := range append(append([]string(nil), s.cfg.Route...), s.cfg.Spawn...) {
		out[p] = stamp(p)
	}
	return out
}

func mapsEqual(a, b map[string]fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Close releases every module.
func (s *Set) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.closing)
	s.retiring.Wait()
	var errs []error
	for _, lms := range s.loaded {
		for _, lm := range lms {
			errs = append(errs, lm.mod.Close(ctx))
		}
	}
	s.loaded = nil
	errs = append(errs, s.host.Close(ctx))
	return errors.Join(errs...)
}

// Decision outcomes, as counted in nocrd_policy_decisions_total; a policy
// that fails counts under its FaultError's Reason.
const (
	// OutcomeAllow: the policy let the request through (next).
	OutcomeAllow = "allow"
	// OutcomeAnswer: the policy answered with a status below 400 (for an
	// admission, an admission with a patch).
	OutcomeAnswer = "answer"
	// OutcomeDeny: the policy answered with a status of 400 or more.
	OutcomeDeny = "deny"
)

var decisionOutcomes = []string{OutcomeAllow, OutcomeAnswer, OutcomeDeny, "trap", "timeout", "malformed", "busy", "unavailable"}

type decisionCounters [8]*metrics.Counter

func (s *Set) countersFor(hook, name string) *decisionCounters {
	key := hook + "\x00" + name
	if c := s.counters[key]; c != nil {
		return c
	}
	c := &decisionCounters{}
	for i, o := range decisionOutcomes {
		c[i] = s.reg.Counter("nocrd_policy_decisions_total", "Policy decisions, by policy, hook and outcome (allow, answer, deny, or the fault that denied).",
			"policy", name, "hook", hook, "outcome", o)
	}
	s.counters[key] = c
	return c
}

func (c *decisionCounters) count(outcome string) {
	if c == nil {
		return
	}
	for i, o := range decisionOutcomes {
		if o == outcome {
			c[i].Inc()
			return
		}
	}
}
