package proxy

import (
	"errors"
	"testing"
	"time"
)

// TestSilenceSteps: a workspace's silence is waited out in steps of
// clientCheckEvery, the client looked at after each, and the last step
// ends at the timeout, not past it.
func TestSilenceSteps(t *testing.T) {
	defer SetClientCheckEvery(5 * time.Second)()
	timeout := errors.New("deadline passed")
	for _, c := range []struct {
		timeout time.Duration
		steps   []time.Duration
	}{
		{60 * time.Second, []time.Duration{5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5}},
		{7 * time.Second, []time.Duration{5, 2}},
		{3 * time.Second, []time.Duration{3}},
	} {
		ic := &idleConn{timeout: c.timeout}
		for i, want := range c.steps {
			if span := ic.readSpan(); span != want*time.Second {
				t.Fatalf("timeout %v: step %d is %v, want %v", c.timeout, i, span, want*time.Second)
			}
			err := ic.expired(timeout)
			if last := i == len(c.steps)-1; (err != nil) != last {
				t.Fatalf("timeout %v: after step %d (%v silent) expired said %v", c.timeout, i, ic.silent, err)
			}
		}
	}
}
