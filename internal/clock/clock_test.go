package clock_test

import (
	"testing"
	"time"

	"github.com/nocrd/nocrd/internal/clock"
)

// TestCoarseLag: the coarse clock is never ahead of time.Now, and never
// further behind than its resolution plus some scheduling slack, while it
// is read for a while.
func TestCoarseLag(t *testing.T) {
	const slack = 50 * time.Millisecond
	end := time.Now().Add(5 * clock.CoarseResolution)
	var advanced bool
	first := clock.CoarseUnixNano()
	for time.Now().Before(end) {
		before := time.Now().UnixNano()
		c := clock.CoarseUnixNano()
		after := time.Now().UnixNano()
		if c > after {
			t.Fatalf("coarse clock %d is ahead of time.Now %d", c, after)
		}
		if lag := time.Duration(before - c); lag > clock.CoarseResolution+slack {
			t.Fatalf("coarse clock lags by %s", lag)
		}
		advanced = advanced || c != first
		time.Sleep(time.Millisecond)
	}
	if !advanced {
		t.Fatal("the clock never advanced")
	}
	if d := time.Since(clock.Coarse()); d < 0 || d > clock.CoarseResolution+slack {
		t.Errorf("Coarse is %s behind time.Now", d)
	}
}

// TestMono: Mono and MonoNanos agree with time.Now's monotonic reading,
// and Nanos puts both on the scale of MonoNanos.
func TestMono(t *testing.T) {
	for range 100 {
		a := time.Now()
		m := clock.Mono()
		n := clock.MonoNanos()
		b := time.Now()
		if m.Before(a) || b.Before(m) {
			t.Fatalf("Mono %v is outside [%v, %v]", m, a, b)
		}
		if na, nm, nb := clock.Nanos(a), clock.Nanos(m), clock.Nanos(b); nm < na || n < nm || nb < n {
			t.Fatalf("out of order: time.Now %d, Mono %d, MonoNanos %d, time.Now %d", na, nm, n, nb)
		}
	}
}
