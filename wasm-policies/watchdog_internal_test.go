package policies

import (
	"context"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// stopGlobals returns n stop globals, each of its own module instance: a
// module that only exports a mutable i32 global.
func stopGlobals(t *testing.T, n int) []api.MutableGlobal {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	t.Cleanup(func() { _ = r.Close(ctx) })
	bin := []byte{
		0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
		0x06, 0x06, 0x01, 0x7f, 0x01, 0x41, 0x00, 0x0b, // (global (mut i32) (i32.const 0))
		0x07, 0x08, 0x01, 0x04, 's', 't', 'o', 'p', 0x03, 0x00, // (export "stop" (global 0))
	}
	code, err := r.CompileModule(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	gs := make([]api.MutableGlobal, n)
	for i := range gs {
		mod, err := r.InstantiateModule(ctx, code, wazero.NewModuleConfig().WithName(""))
		if err != nil {
			t.Fatal(err)
		}
		gs[i] = mod.ExportedGlobal("stop").(api.MutableGlobal)
	}
	return gs
}

// TestWatchdogScan: a look stops the calls past their deadline, and says
// how far off the soonest deadline of the others is, so that the next look
// comes no later than it.
func TestWatchdogScan(t *testing.T) {
	const ms = time.Millisecond
	for _, c := range []struct {
		name string
		// deadlines of the instances, from now; 0 is an instance with no
		// call, a negative one a call past its deadline.
		in      []time.Duration
		busy    bool
		soonest time.Duration // 0: none
		stopped []bool
	}{
		{"no instance", nil, false, 0, nil},
		{"no call", []time.Duration{0, 0}, false, 0, []bool{false, false}},
		{"a call with time left", []time.Duration{30 * ms}, true, 30 * ms, []bool{false}},
		{"a call past its deadline", []time.Duration{-ms}, true, 0, []bool{true}},
		{"the soonest of several", []time.Duration{50 * ms, 0, 20 * ms, -ms, 40 * ms}, true, 20 * ms, []bool{false, false, false, true, false}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := &watchdog{epoch: time.Now().Add(-time.Hour), insts: map[*instance]struct{}{}}
			var insts []*instance
			stops := stopGlobals(t, len(c.in))
			for i, d := range c.in {
				inst := &instance{stop: stops[i]}
				if d != 0 {
					inst.deadline.Store(w.now() + int64(d))
				}
				w.insts[inst] = struct{}{}
				insts = append(insts, inst)
			}
			busy, soonest := w.scan()
			if busy != c.busy {
				t.Errorf("busy = %v, want %v", busy, c.busy)
			}
			// The clock moved between setting the deadlines and the look.
			if c.soonest == 0 && soonest != 0 || c.soonest != 0 && (soonest <= c.soonest-5*ms || soonest > c.soonest) {
				t.Errorf("soonest = %s, want %s (less the time the look took)", soonest, c.soonest)
			}
			for i, inst := range insts {
				stopped := inst.stop.Get() == 1
				if stopped != c.stopped[i] {
					t.Errorf("instance %d (deadline in %s): stopped = %v, want %v", i, c.in[i], stopped, c.stopped[i])
				}
				if claimed := inst.deadline.Load() == claimedDeadline; claimed != stopped {
					t.Errorf("instance %d: deadline claimed = %v, but stopped = %v", i, claimed, stopped)
				}
			}
		})
	}
}

// TestWatchdogUntil: the watchdog sleeps a period, or less when a running
// call's deadline comes sooner.
func TestWatchdogUntil(t *testing.T) {
	w := &watchdog{}
	w.period.Store(int64(5 * time.Millisecond))
	for _, c := range []struct{ soonest, want time.Duration }{
		{0, 5 * time.Millisecond},
		{2 * time.Millisecond, 2 * time.Millisecond},
		{5 * time.Millisecond, 5 * time.Millisecond},
		{time.Second, 5 * time.Millisecond},
	} {
		if got := w.until(c.soonest); got != c.want {
			t.Errorf("until(%s) = %s, want %s", c.soonest, got, c.want)
		}
	}
}

// TestDeadlineFor: the period is the shortest timeout of the modules,
// within its bounds, and never grows back.
func TestDeadlineFor(t *testing.T) {
	w := &watchdog{}
	w.period.Store(int64(maxWatchdogPeriod))
	for _, c := range []struct{ timeout, want time.Duration }{
		{time.Second, maxWatchdogPeriod},
		{100 * time.Millisecond, maxWatchdogPeriod},
		{5 * time.Millisecond, 5 * time.Millisecond},
		{100 * time.Millisecond, 5 * time.Millisecond},
		{time.Microsecond, minWatchdogPeriod},
	} {
		w.deadlineFor(c.timeout)
		if got := time.Duration(w.period.Load()); got != c.want {
			t.Errorf("after deadlineFor(%s): period %s, want %s", c.timeout, got, c.want)
		}
	}
}
