// Package clock reads the time more cheaply than time.Now, for the
// proxy's hot path and the policies' deadlines.
//
// time.Now reads two clocks through the vDSO, the wall clock and the
// monotonic one: about 100 ns on the machines nocrd is measured on, where
// one read costs about 45-55 ns. A proxied request used to pay that three
// times for fasthttp's client deadlines, once more for the token cache's
// expiry check and once more to time the upstream exchange, about 2% of
// the CPU the request costs.
//
// Two cheaper readings are offered:
//   - Coarse and CoarseUnixNano are one atomic load, up to
//     CoarseResolution behind (longer only while the process gets no CPU
//     at all): enough for deadlines and expiries counted in seconds.
//   - Mono and MonoNanos read the monotonic clock alone: one vDSO read.
package clock

import (
	"sync"
	"sync/atomic"
	"time"
)

// CoarseResolution is how often the coarse clock advances.
const CoarseResolution = 100 * time.Millisecond

var (
	coarse      atomic.Int64 // Unix nanoseconds; 0 until the clock starts
	coarseStart sync.Once
)

// CoarseUnixNano returns the time in Unix nanoseconds, up to
// CoarseResolution behind time.Now. The first call starts the goroutine
// that advances it; it runs for the life of the process.
func CoarseUnixNano() int64 {
	if n := coarse.Load(); n != 0 {
		return n
	}
	coarseStart.Do(func() {
		coarse.Store(time.Now().UnixNano())
		go advance()
	})
	return coarse.Load()
}

// Coarse is CoarseUnixNano as a time.Time, with no monotonic reading.
func Coarse() time.Time { return time.Unix(0, CoarseUnixNano()) }

func advance() {
	t := time.NewTicker(CoarseResolution)
	for range t.C {
		coarse.Store(time.Now().UnixNano())
	}
}

// epoch is the origin of the monotonic readings.
var epoch = time.Now()

// MonoNanos returns monotonic nanoseconds since the process started.
func MonoNanos() int64 { return int64(time.Since(epoch)) }

// Mono returns the time read from the monotonic clock alone. Its wall
// reading is derived (epoch's plus the time since), and drifts from the
// wall clock as that is adjusted, so it is only to be compared with times
// that carry a monotonic reading (Sub, Before, deadlines, Nanos), never
// through Unix or UnixNano.
func Mono() time.Time { return epoch.Add(time.Since(epoch)) }

// Nanos returns t, which must carry a monotonic reading (time.Now's or
// Mono's), as monotonic nanoseconds since the process started, the scale
// of MonoNanos.
func Nanos(t time.Time) int64 { return int64(t.Sub(epoch)) }
