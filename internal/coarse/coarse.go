// Package coarse is a clock read with one atomic load, for deadlines and
// expiries counted in seconds. It lags the real clock by up to Resolution
// (longer only while the process gets no CPU at all).
//
// time.Now reads two clocks through the vDSO, the wall clock and the
// monotonic one: about 100 ns on the machines nocrd is measured on. A
// proxied request used to pay that three times for fasthttp's client
// deadlines and once more for the token cache's expiry check, about 2% of
// the CPU the request costs; deadlines of 90 s and expiries with 30 s of
// skew do not need that precision.
package coarse

import (
	"sync"
	"sync/atomic"
	"time"
)

// Resolution is how often the clock advances.
const Resolution = 100 * time.Millisecond

var (
	now   atomic.Int64 // Unix nanoseconds; 0 until the clock starts
	start sync.Once
)

// UnixNano returns the time in Unix nanoseconds, up to Resolution behind
// time.Now. The first call starts the goroutine that advances the clock;
// it runs for the life of the process.
func UnixNano() int64 {
	if n := now.Load(); n != 0 {
		return n
	}
	start.Do(func() {
		now.Store(time.Now().UnixNano())
		go advance()
	})
	return now.Load()
}

// Now is UnixNano as a time.Time, with no monotonic reading.
func Now() time.Time { return time.Unix(0, UnixNano()) }

func advance() {
	t := time.NewTicker(Resolution)
	for range t.C {
		now.Store(time.Now().UnixNano())
	}
}
