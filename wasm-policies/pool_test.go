package policies

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// loadWAT loads testdata/<name>.wat on a new host with a pool of size.
func loadWAT(t *testing.T, name string, size int, timeout time.Duration) *Module {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".wasm")
	if out, err := exec.Command("wat2wasm", filepath.Join("testdata", name+".wat"), "-o", path).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, out)
	}
	ctx := context.Background()
	h, err := NewHost(ctx, Options{PoolSize: size})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(ctx) })
	m, err := h.Load(ctx, path, nil, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustGet(t *testing.T, m *Module) *instance {
	t.Helper()
	inst, _, err := m.get()
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// waiters is how many calls wait for an instance.
func (m *Module) waiting() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.waiters)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestPoolLastUsedFirst: the instance put back last is the next one used,
// so a steady stream of calls keeps reusing the instances whose memory is
// still in the CPU's caches.
func TestPoolLastUsedFirst(t *testing.T) {
	m := loadWAT(t, "readonly", 3, time.Second)
	a, b, c := mustGet(t, m), mustGet(t, m), mustGet(t, m)
	m.put(a)
	m.put(c)
	m.put(b)
	for i, want := range []*instance{b, c, a} {
		if got := mustGet(t, m); got != want {
			t.Fatalf("get %d: not the instance put back %d-th from last", i, i+1)
		}
	}
}

// TestPoolWaitersInOrder: calls that find every instance busy are served
// in the order they came, each as soon as an instance is put back.
func TestPoolWaitersInOrder(t *testing.T) {
	m := loadWAT(t, "readonly", 1, 10*time.Second)
	inst := mustGet(t, m)
	served := make(chan int, 2)
	for i := range 2 {
		go func() {
			got, left, err := m.get()
			if err != nil || left <= 0 || left > 10*time.Second {
				t.Errorf("waiter %d: %v, %s left", i, err, left)
				served <- -1
				return
			}
			served <- i
			m.put(got)
		}()
		waitFor(t, "the call to queue", func() bool { return m.waiting() == i+1 })
	}
	m.put(inst)
	for want := range 2 {
		if got := <-served; got != want {
			t.Fatalf("served waiter %d, want %d", got, want)
		}
	}
	if got := mustGet(t, m); got != inst {
		t.Fatal("the pool's one instance was not passed on")
	}
}

// TestPoolCloseWakesWaiters: closing a module fails the calls waiting for
// one of its instances at once, and an instance put back after Close is
// discarded.
func TestPoolCloseWakesWaiters(t *testing.T) {
	m := loadWAT(t, "readonly", 1, time.Minute)
	inst := mustGet(t, m)
	done := make(chan error, 1)
	go func() {
		_, _, err := m.get()
		done <- err
	}()
	waitFor(t, "the call to queue", func() bool { return m.waiting() == 1 })
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, errClosed) {
			t.Fatalf("waiting call: %v, want %v", err, errClosed)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting call was not woken by Close")
	}
	m.put(inst)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.made != 0 || len(m.idle) != 0 {
		t.Fatalf("after Close: %d instances live, %d idle; want none", m.made, len(m.idle))
	}
}

// TestPoolTimeoutsLoseNothing: callers whose wait times out as an instance
// is handed to them pass it on, so after many such races every instance
// is back in the pool and nobody is left waiting.
func TestPoolTimeoutsLoseNothing(t *testing.T) {
	const size = 2
	m := loadWAT(t, "readonly", size, 200*time.Microsecond)
	var wg sync.WaitGroup
	var mu sync.Mutex
	got, busy := 0, 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 300 {
				inst, _, err := m.get()
				mu.Lock()
				if err == nil {
					got++
				} else if errors.Is(err, errBusy) {
					busy++
				} else {
					t.Errorf("get: %v", err)
				}
				mu.Unlock()
				if err == nil {
					time.Sleep(50 * time.Microsecond)
					m.put(inst)
				}
			}
		}()
	}
	wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.idle) != size || m.made != size || len(m.waiters) != 0 {
		t.Fatalf("after the calls: %d idle, %d live, %d waiting; want %d, %d, 0", len(m.idle), m.made, len(m.waiters), size, size)
	}
	if got == 0 || busy == 0 {
		t.Fatalf("%d calls got an instance and %d timed out; the test needs both", got, busy)
	}
	t.Logf("%d calls got an instance, %d timed out", got, busy)
}
