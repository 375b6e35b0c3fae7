package coarse_test

import (
	"testing"
	"time"

	"github.com/nocrd/nocrd/internal/coarse"
)

// TestLag: the clock is never ahead of time.Now, and never further behind
// than Resolution plus some scheduling slack, while it is read for a
// while.
func TestLag(t *testing.T) {
	const slack = 50 * time.Millisecond
	end := time.Now().Add(5 * coarse.Resolution)
	var advanced bool
	first := coarse.UnixNano()
	for time.Now().Before(end) {
		before := time.Now().UnixNano()
		c := coarse.UnixNano()
		after := time.Now().UnixNano()
		if c > after {
			t.Fatalf("coarse clock %d is ahead of time.Now %d", c, after)
		}
		if lag := time.Duration(before - c); lag > coarse.Resolution+slack {
			t.Fatalf("coarse clock lags by %s", lag)
		}
		advanced = advanced || c != first
		time.Sleep(time.Millisecond)
	}
	if !advanced {
		t.Fatal("the clock never advanced")
	}
	if d := time.Since(coarse.Now()); d < 0 || d > coarse.Resolution+slack {
		t.Errorf("Now is %s behind time.Now", d)
	}
}
