package policies

import (
	"sync"
	"sync/atomic"
	"time"
)

// watchdog enforces the per-call deadlines of every instance of a Host
// from one goroutine.
//
// A guest is stopped by setting its instance's StopExport global (see
// instrument.go). A timer per call could do it, but arming and stopping a
// runtime timer on every request wakes the network poller, which costs more
// than the decision itself (see RATIONALE.md). Instead a call publishes its
// deadline in its instance, and the watchdog looks at the calls once per
// period, the shortest deadline of its modules, while calls are being
// made. A call that began after a look has a deadline no sooner than the
// next one; a call a look finds running, and not yet past its deadline,
// has the watchdog wake again at that deadline. So a call is stopped at its
// deadline, give or take the timer's lateness, by a goroutine that wakes
// once per period and not once per call. When no call has started for a
// whole period the watchdog parks, and the next call wakes it.
//
// A call and the watchdog race for the deadline with a compare-and-swap:
// the call swaps it to 0 when it returns, the watchdog swaps it to
// claimedDeadline before it cancels; whoever loses knows who won, so a call
// that finished is never stopped and a stopped one is never reused.
type watchdog struct {
	epoch  time.Time
	period atomic.Int64 // nanoseconds

	mu    sync.Mutex
	insts map[*instance]struct{}

	// started is set by every call and cleared by each look: a look that
	// finds it clear and no call in flight parks the watchdog.
	started atomic.Bool
	parked  atomic.Bool
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// claimedDeadline marks a deadline the watchdog has acted on.
const claimedDeadline = -1

// Bounds of the period. A call whose deadline is sooner than a period
// after it began (its timeout is under minWatchdogPeriod, or most of it went
// waiting for an instance) may be stopped up to a period late.
const (
	minWatchdogPeriod = 500 * time.Microsecond
	maxWatchdogPeriod = 20 * time.Millisecond
)

func newWatchdog() *watchdog {
	w := &watchdog{
		epoch: time.Now(),
		insts: map[*instance]struct{}{},
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	w.period.Store(int64(maxWatchdogPeriod))
	w.parked.Store(true)
	go w.run()
	return w
}

// now is monotonic nanoseconds since the watchdog started; never 0 or
// negative, so 0 and claimedDeadline stay free to mean "no call" and
// "claimed".
func (w *watchdog) now() int64 { return int64(time.Since(w.epoch)) + 1 }

// deadlineFor makes the period short enough for calls with a timeout of d.
func (w *watchdog) deadlineFor(d time.Duration) {
	p := min(max(d, minWatchdogPeriod), maxWatchdogPeriod)
	for {
		cur := w.period.Load()
		if int64(p) >= cur || w.period.CompareAndSwap(cur, int64(p)) {
			return
		}
	}
}

func (w *watchdog) add(inst *instance) {
	w.mu.Lock()
	w.insts[inst] = struct{}{}
	w.mu.Unlock()
}

func (w *watchdog) remove(inst *instance) {
	w.mu.Lock()
	delete(w.insts, inst)
	w.mu.Unlock()
}

// begin publishes the deadline of a call about to start on inst.
func (w *watchdog) begin(inst *instance, timeout time.Duration) {
	inst.deadline.Store(w.now() + int64(timeout))
	if !w.started.Load() {
		w.started.Store(true)
	}
	if w.parked.Load() && w.parked.CompareAndSwap(true, false) {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// end withdraws the deadline of the call on inst, and reports whether the
// watchdog had already claimed it (the call timed out and the instance's
// stop global is set).
func (w *watchdog) end(inst *instance) (timedOut bool) {
	return inst.deadline.Swap(0) == claimedDeadline
}

func (w *watchdog) run() {
	defer close(w.done)
	t := time.NewTimer(maxWatchdogPeriod)
	t.Stop()
	var wait time.Duration
	for {
		if w.parked.Load() {
			select {
			case <-w.wake:
			case <-w.stop:
				return
			}
			wait = 0
		}
		t.Reset(w.until(wait))
		select {
		case <-t.C:
		case <-w.stop:
			t.Stop()
			return
		}
		busy, soonest := w.scan()
		wait = soonest
		if busy || w.started.Swap(false) {
			continue
		}
		// Idle for a whole period: park, unless a call slipped in between
		// the scan and parking. begin writes the deadline then reads
		// parked; this writes parked then reads the deadlines, so one of
		// the two sees the other.
		w.parked.Store(true)
		if busy, wait = w.scan(); busy && !w.parked.CompareAndSwap(true, false) {
			<-w.wake // the call that cleared parked sent this
		}
	}
}

// until is how long to sleep before the next look: a period, or less when
// a running call's deadline (soonest from now, 0 for none) comes first.
func (w *watchdog) until(soonest time.Duration) time.Duration {
	p := time.Duration(w.period.Load())
	if soonest > 0 && soonest < p {
		return soonest
	}
	return p
}

// scan stops every call past its deadline. It reports whether any call is
// in flight, and how far off the soonest deadline of those still allowed
// to run is (0 when none is).
func (w *watchdog) scan() (busy bool, soonest time.Duration) {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for inst := range w.insts {
		d := inst.deadline.Load()
		if d <= 0 {
			continue
		}
		busy = true
		switch left := time.Duration(d - now); {
		case left <= 0:
			if inst.deadline.CompareAndSwap(d, claimedDeadline) {
				inst.stop.Set(1) // the guest traps at its next loop or call
			}
		case soonest == 0 || left < soonest:
			soonest = left
		}
	}
	return busy, soonest
}

func (w *watchdog) close() {
	close(w.stop)
	<-w.done
}
