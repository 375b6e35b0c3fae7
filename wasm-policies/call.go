package policies

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// Request is what a policy decides on, as its caller presents it. Slices
// passed to the setters are views of guest memory, valid only during the
// call: implementations copy what they keep. Slices returned are read before
// the next call on the Request.
type Request interface {
	Method() []byte
	SetMethod(method []byte)
	// URI is the path and query; SetURI replaces both.
	URI() []byte
	SetURI(uri []byte)
	// SourceAddr is the client's "ip:port".
	SourceAddr() []byte
	// AppendHeaderNames appends every header name, lowercase, each followed
	// by NUL, and returns how many it appended.
	AppendHeaderNames(dst []byte) ([]byte, int)
	// AppendHeaderValues appends every value of the header name (matched
	// case-insensitively), each followed by NUL, and returns how many.
	AppendHeaderValues(dst, name []byte) ([]byte, int)
	SetHeader(name, value []byte)
	AddHeader(name, value []byte)
	RemoveHeader(name []byte)
	// Body is the whole request body, empty when there is none; readable is
	// false when the request has a body the policy may not read (a route
	// request's, which streams to the workspace), and reading it traps.
	Body() (body []byte, readable bool)
}

// Response is the answer a guest writes when it stops a request.
type Response struct {
	Status int
	Header []Field
	Body   []byte
	// bodyWritten is set by the first write_body, which replaces Body.
	bodyWritten bool
}

// Field is one header field.
type Field struct{ Name, Value []byte }

// Reset empties r for reuse, keeping its buffers.
func (r *Response) Reset() {
	r.Status = 200
	for i := range r.Header {
		r.Header[i].Name, r.Header[i].Value = r.Header[i].Name[:0], r.Header[i].Value[:0]
	}
	r.Header = r.Header[:0]
	r.Body = r.Body[:0]
	r.bodyWritten = false
}

func (r *Response) add(name, value []byte) {
	if n := len(r.Header); n < cap(r.Header) {
		r.Header = r.Header[:n+1]
		f := &r.Header[n]
		f.Name, f.Value = append(f.Name[:0], name...), append(f.Value[:0], value...)
		return
	}
	r.Header = append(r.Header, Field{append([]byte(nil), name...), append([]byte(nil), value...)})
}

func (r *Response) remove(name []byte) { r.Header = withoutField(r.Header, name) }

// withoutField removes from fields, in place, every field named name
// (matched case-insensitively).
func withoutField(fields []Field, name []byte) []Field {
	kept := fields[:0]
	for _, f := range fields {
		if !bytes.EqualFold(f.Name, name) {
			kept = append(kept, f)
		}
	}
	return kept
}

// FaultError is a policy that failed instead of deciding: it trapped, ran
// past its deadline or out of memory, answered malformed, or could not get
// an instance in time. Callers deny (fail closed).
type FaultError struct {
	Policy string
	// Reason is one of "trap", "timeout", "malformed", "busy",
	// "unavailable", for metrics.
	Reason string
	Err    error
}

func (e *FaultError) Error() string {
	return fmt.Sprintf("policy %s failed (%s): %v", e.Policy, e.Reason, e.Err)
}

func (e *FaultError) Unwrap() error { return e.Err }

// call is the state of one call into an instance.
type call struct {
	req     Request
	resp    *Response
	scratch []byte
	// bodyRead is how much of req.Body() read_body has handed out.
	bodyRead int
}

// Handle runs the module's handle_request on req. It returns next=true
// when the guest lets the request through (it may have changed it), and
// next=false with the guest's answer in resp when it stops it. A guest that
// fails is a *FaultError: the caller must deny.
func (m *Module) Handle(req Request, resp *Response) (next bool, err error) {
	next, err = m.handle(req, resp)
	outcome := OutcomeAllow
	var fe *FaultError
	switch {
	case err != nil:
		fe, _ = err.(*FaultError) // handle returns only *FaultError
		outcome = "unavailable"
		if fe != nil {
			outcome = fe.Reason
		}
	case !next && resp.Status < 400:
		outcome = OutcomeAnswer
	case !next:
		outcome = OutcomeDeny
	}
	m.counters.count(outcome)
	if log := m.host.log; log.Enabled(context.Background(), slog.LevelDebug) {
		switch outcome {
		case OutcomeAllow:
			log.Debug("policy decision", "policy", m.Name, "outcome", outcome)
		case OutcomeAnswer, OutcomeDeny:
			log.Debug("policy decision", "policy", m.Name, "outcome", outcome, "status", resp.Status, "reason", string(resp.Body))
		}
	}
	if err != nil {
		m.host.log.Warn("policy failed; denied", "policy", m.Name, "path", m.Path, "outcome", outcome, "err", err)
	}
	return next, err
}

// Try is Handle for a dry run (nocrd's test_policy): the decision is
// neither counted nor logged. The guest still runs for real, so a guest
// that keeps state between calls sees the call.
func (m *Module) Try(req Request, resp *Response) (next bool, err error) {
	return m.handle(req, resp)
}

func (m *Module) handle(req Request, resp *Response) (next bool, err error) {
	if m.closed.Load() {
		return false, &FaultError{Policy: m.Name, Reason: "unavailable", Err: errors.New("module closed")}
	}
	inst, left, err := m.get()
	if err != nil {
		reason := "unavailable"
		if errors.Is(err, errBusy) {
			reason = "busy"
		}
		return false, &FaultError{Policy: m.Name, Reason: reason, Err: err}
	}
	resp.Reset()
	inst.call = call{req: req, resp: resp, scratch: inst.call.scratch[:0]}
	inst.begin(left)
	err = inst.handle.CallWithStack(inst.ctx, inst.stack[:])
	inst.call.req, inst.call.resp = nil, nil
	if err != nil {
		m.discard(inst)
		if inst.timedOut {
			return false, &FaultError{Policy: m.Name, Reason: "timeout", Err: fmt.Errorf("no decision within %s", m.timeout)}
		}
		var exit *sys.ExitError
		if errors.As(err, &exit) {
			return false, &FaultError{Policy: m.Name, Reason: "trap", Err: fmt.Errorf("exited with code %d", exit.ExitCode())}
		}
		return false, &FaultError{Policy: m.Name, Reason: "trap", Err: err}
	}
	// A guest that answers malformed is in a state nobody knows, like one
	// that trapped: its instance is discarded, not reused. An answer must
	// be final: a 1xx status is none.
	switch next := uint32(inst.stack[0]); {
	case next == 1:
		m.put(inst)
		return true, nil
	case next == 0 && resp.Status >= 200 && resp.Status <= 599:
		m.put(inst)
		return false, nil
	case next == 0:
		m.discard(inst)
		return false, &FaultError{Policy: m.Name, Reason: "malformed", Err: fmt.Errorf("answered with status %d, which is not a final status", resp.Status)}
	default:
		m.discard(inst)
		return false, &FaultError{Policy: m.Name, Reason: "malformed", Err: fmt.Errorf("handle_request returned next=%d, want 0 or 1", next)}
	}
}

// Chain is the ordered list of policies of one hook. It may be swapped
// whole (hot reload) while calls run: each call uses the list it started
// with.
type Chain struct {
	mods atomic.Pointer[[]*Module]
}

// NewChain returns a chain of mods, run in order.
func NewChain(mods ...*Module) *Chain {
	c := &Chain{}
	c.mods.Store(&mods)
	return c
}

// Modules returns the chain's current modules.
func (c *Chain) Modules() []*Module {
	if c == nil {
		return nil
	}
	return *c.mods.Load()
}

// Len is the number of policies in the chain.
func (c *Chain) Len() int { return len(c.Modules()) }

// swap replaces the chain's modules; calls already running keep the list
// they started with.
func (c *Chain) swap(mods []*Module) { c.mods.Store(&mods) }

// Handle runs req through every policy in order until one stops it or
// fails; policy names the one that did.
func (c *Chain) Handle(req Request, resp *Response) (next bool, policy string, err error) {
	for _, m := range c.Modules() {
		next, err := m.Handle(req, resp)
		if err != nil || !next {
			return false, m.Name, err
		}
	}
	return true, "", nil
}

// instanceOf returns the instance a host function runs for.
func instanceOf(ctx context.Context) *instance {
	if c, ok := ctx.(*instanceContext); ok {
		return c.inst
	}
	return ctx.Value(instanceKey{}).(*instance)
}

// trap stops the guest: wazero turns a host function's panic into an error
// of the call.
func trap(format string, args ...any) {
	panic(fmt.Errorf(format, args...))
}

// read returns guest memory [off, off+n), trapping when it is outside.
func read(mod api.Module, off, n uint32) []byte {
	b, ok := mod.Memory().Read(off, n)
	if !ok {
		trap("memory [%d, %d) is outside the guest's memory", off, uint64(off)+uint64(n))
	}
	return b
}

// writeField writes v at buf when it fits in limit, and returns its length.
func writeField(mod api.Module, buf, limit uint32, v []byte) uint32 {
	n := uint32(len(v))
	if n <= limit && n > 0 && !mod.Memory().Write(buf, v) {
		trap("memory [%d, %d) is outside the guest's memory", buf, uint64(buf)+uint64(n))
	}
	return n
}
