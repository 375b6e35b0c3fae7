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
// deadline in its instance, and the watchdog, ticking at a fraction of the
// shortest deadline while calls are being made, stops any call that is
// past it. When no call has started for a whole tick it parks, and the
// next call wakes it.
//
// A call and the watchdog race for the deadline with a compare-and-swap:
// the call swaps it to 0 when it returns, the watchdog swaps it to
// claimedDeadline before it cancels; whoever loses knows who won, so a call
// that finished is never stopped and a stopped one is never reused.
type watchdog struct {
	epoch time.Time
	tick  atomic.Int64 // nanoseconds

	mu    sync.Mutex
	insts map[*instance]struct{}

	// started is set by every call and cleared by each tick: a tick that
	// finds it clear and no call in flight parks the watchdog.
	started atomic.Bool
	parked  atomic.Bool
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// claimedDeadline marks a deadline the watchdog has acted on.
const claimedDeadline = -1

// Tick bounds: a deadline is enforced within about one tick of passing.
const (
	minWatchdogTick = 500 * time.Microsecond
	maxWatchdogTick = 20 * time.Millisecond
)

func newWatchdog() *watchdog {
	w := &watchdog{
		epoch: time.Now(),
		insts: map[*instance]struct{}{},
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	w.tick.Store(int64(maxWatchdogTick))
	w.parked.Store(true)
	go w.run()
	return w
}

// now is monotonic nanoseconds since the watchdog started; never 0 or
// negative, so 0 and claimedDeadline stay free to mean "no call" and
// "claimed".
func (w *watchdog) now() int64 { return int64(time.Since(w.epoch)) + 1 }

// deadlineFor makes the tick fine enough for deadlines of d.
func (w *watchdog) deadlineFor(d time.Duration) {
	t := min(max(d/5, minWatchdogTick), maxWatchdogTick)
	for {
		cur := w.tick.Load()
		if int64(t) >= cur || w.tick.CompareAndSwap(cur, int64(t)) {
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
	t := time.NewTimer(time.Duration(w.tick.Load()))
	t.Stop()
	for {
		if w.parked.Load() {
			select {
			case <-w.wake:
			case <-w.stop:
				return
			}
		}
		t.Reset(time.Duration(w.tick.Load()))
		select {
		case <-t.C:
		case <-w.stop:
			t.Stop()
			return
		}
		if w.scan() || w.started.Swap(false) {
			continue
		}
		// Idle for a whole tick: park, unless a call slipped in between
		// the scan and parking. begin writes the deadline then reads
		// parked; this writes parked then reads the deadlines, so one of
		// the two sees the other.
		w.parked.Store(true)
		if w.scan() && !w.parked.CompareAndSwap(true, false) {
			<-w.wake // the call that cleared parked sent this
		}
	}
}

// scan stops every call past its deadline and reports whether any call
// is in flight.
func (w *watchdog) scan() (busy bool) {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for inst := range w.insts {
		d := inst.deadline.Load()
		if d <= 0 {
			continue
		}
		busy = true
		if now >= d && inst.deadline.CompareAndSwap(d, claimedDeadline) {
			inst.stop.Set(1) // the guest traps at its next loop or call
		}
	}
	return busy
}

func (w *watchdog) close() {
	close(w.stop)
	<-w.done
}
