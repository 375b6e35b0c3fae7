package policies

import (
	"context"
	"errors"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/nocrd/nocrd/internal/clock"
)

// A call's deadline is kept by the guest: instrument makes it call
// CheckFunction every checkBudget loop iterations and function entries, on
// the goroutine that called it, and the check traps once the deadline has
// passed. No goroutine or timer is involved, so a call stops on time
// however few Ps the process has. A guest that returns before its next
// check is not stopped, even a little past its deadline: it has let go of
// the instance, which is what the deadline protects.

// errDeadline is what the check panics with; wazero turns it into the
// call's error.
var errDeadline = errors.New("deadline exceeded")

// begin sets the deadline of a call about to start on inst.
func (inst *instance) begin(timeout time.Duration) {
	inst.deadline = clock.MonoNanos() + int64(timeout)
	inst.timedOut = false
}

// checkDeadline is CheckFunction: it stops the call when its deadline has
// passed.
func checkDeadline(ctx context.Context, _ api.Module, _ []uint64) {
	if inst := instanceOf(ctx); clock.MonoNanos() >= inst.deadline {
		inst.timedOut = true
		panic(errDeadline)
	}
}

// instantiateCheckModule provides CheckFunction to the modules of rt.
func instantiateCheckModule(ctx context.Context, rt wazero.Runtime) error {
	_, err := rt.NewHostModuleBuilder(CheckModule).NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(checkDeadline), nil, nil).
		Export(CheckFunction).Instantiate(ctx)
	return err
}
