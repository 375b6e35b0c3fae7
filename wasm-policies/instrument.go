package policies

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// StopExport is the global nocrd adds to every policy module so that the
// watchdog can stop a call that runs past its deadline.
//
// wazero stops a running guest only when the runtime is built with
// WithCloseOnContextDone, and then it starts a goroutine for every call to
// watch the context, which costs a proxied request more than the decision
// itself. Instead, Load rewrites the module before compiling it. Two
// mutable i32 globals are appended after the module's own (so no index
// moves): the stop flag, exported under this name, and a budget. At the
// start of every function and at the head of every loop the guest spends
// one unit of budget; when it runs out, the guest refills it, executes
// memory.grow 0, which wazero implements in Go, and traps with unreachable
// if the stop flag is set. Every unbounded execution passes a loop head or
// a call, so a set flag stops any guest within checkBudget of them. The
// trip into Go matters as much as the flag: native code cannot be
// preempted, so a guest that never left it would hold up the Go runtime's
// stop-the-world phases, the watchdog's included, for ever.
//
// A function's entry check is left out where it cannot matter (see
// instrumentExpr): a function that calls none of the module's functions
// cannot recurse (host functions do not call back into the guest), and one
// that reaches a loop head through straight-line code spends its unit
// there before it can call anything. Go-built functions are nearly all of
// one kind or the other (the wrappers of exported functions are not).
const StopExport = "nocrd_stop"

// checkBudget is how many function entries and loop iterations a guest
// makes between two visits to Go: a stop is seen, and the runtime may
// preempt the guest's goroutine, at least that often.
const checkBudget = 4096

// Section ids of the WebAssembly binary format.
const (
	secCustom   = 0
	secImport   = 2
	secStart    = 8
	secGlobal   = 6
	secMemory   = 5
	secExport   = 7
	secCode     = 10
	importFunc  = 0
	importTable = 1
	importMem   = 2
	importGlob  = 3
	importTag   = 4
	exportGlob  = 3
)

// sectionRank orders the known sections as the binary format requires.
var sectionRank = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

// errInstrument wraps every reason a module cannot be instrumented.
var errInstrument = errors.New("cannot be instrumented")

// instrument returns wasm with StopExport added and checked. It rejects
// what it cannot rewrite safely: a malformed module, an instruction it does
// not know, or a start function (which would run at instantiation, before
// the watchdog can stop it; Go-built guests use _initialize instead).
func instrument(wasm []byte) ([]byte, error) {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) || binary.LittleEndian.Uint32(wasm[4:8]) != 1 {
		return nil, fmt.Errorf("%w: not a WebAssembly 1.0 binary module", errInstrument)
	}
	type section struct {
		id      byte
		payload []byte
	}
	var secs []section
	r := reader{b: wasm, off: 8}
	for !r.done() {
		id := r.byte()
		n := r.u32()
		payload := r.bytes(n)
		if r.err != nil {
			return nil, r.fail("section %d", id)
		}
		if id == secCustom {
			name := reader{b: payload}
			if s := string(name.bytes(name.u32())); name.err == nil && strings.HasPrefix(s, ".debug") {
				continue // DWARF refers to code offsets, which move
			}
		}
		if id == secStart {
			return nil, fmt.Errorf("%w: it has a start function, which runs before any deadline applies; export _initialize instead", errInstrument)
		}
		secs = append(secs, section{id, payload})
	}

	// The new global's index: after every imported and defined global.
	var funcs, globals, memories uint32
	hasGlobal, hasExport := false, false
	for _, s := range secs {
		switch s.id {
		case secImport:
			f, g, m, err := imported(s.payload)
			if err != nil {
				return nil, err
			}
			funcs, globals, memories = f, g, m
		case secMemory:
			c := reader{b: s.payload}
			memories += c.u32()
		case secGlobal:
			c := reader{b: s.payload}
			globals += c.u32()
			hasGlobal = true
			if c.err != nil {
				return nil, c.fail("global section")
			}
		case secExport:
			hasExport = true
		}
	}
	if memories == 0 {
		return nil, fmt.Errorf("%w: it has no memory", errInstrument)
	}
	check := checkCode(globals, globals+1)

	// Add the sections the module lacks, in their place.
	for _, add := range []struct {
		id  byte
		has bool
	}{{secGlobal, hasGlobal}, {secExport, hasExport}} {
		if add.has {
			continue
		}
		i := len(secs)
		for j, s := range secs {
			if rank, ok := sectionRank[s.id]; ok && rank > sectionRank[add.id] {
				i = j
				break
			}
		}
		secs = append(secs[:i], append([]section{{add.id, []byte{0}}}, secs[i:]...)...)
	}

	out := append([]byte(nil), wasm[:8]...)
	for _, s := range secs {
		payload := s.payload
		var err error
		switch s.id {
		case secGlobal:
			// (global $stop (mut i32) (i32.const 0))
			// (global $budget (mut i32) (i32.const checkBudget))
			payload, err = appendToVector(payload, []byte{0x7f, 0x01, 0x41, 0x00, 0x0b})
			if err == nil {
				payload, err = appendToVector(payload, append(appendU32([]byte{0x7f, 0x01, 0x41}, checkBudget), 0x0b))
			}
		case secExport:
			entry := appendU32(nil, uint32(len(StopExport)))
			entry = append(entry, StopExport...)
			entry = append(entry, exportGlob)
			entry = appendU32(entry, globals)
			payload, err = appendToVector(payload, entry)
		case secCode:
			payload, err = instrumentCode(payload, check, funcs)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s.id)
		out = appendU32(out, uint32(len(payload)))
		out = append(out, payload...)
	}
	return out, nil
}

// checkCode is what runs at every function entry and loop head:
//
//	global.get $budget
//	i32.eqz
//	if
//	  i32.const checkBudget
//	  global.set $budget
//	  i32.const 0
//	  memory.grow 0      ;; a trip into Go
//	  drop
//	  global.get $stop
//	  if
//	    unreachable
//	  end
//	end
//	global.get $budget
//	i32.const 1
//	i32.sub
//	global.set $budget
func checkCode(stop, budget uint32) []byte {
	b := appendU32([]byte{0x23}, budget)
	b = append(b, 0x45, 0x04, 0x40, 0x41)
	b = appendU32(b, checkBudget) // i32.const is signed LEB; checkBudget < 2^13
	b = appendU32(append(b, 0x24), budget)
	b = append(b, 0x41, 0x00, 0x40, 0x00, 0x1a)
	b = appendU32(append(b, 0x23), stop)
	b = append(b, 0x04, 0x40, 0x00, 0x0b, 0x0b)
	b = appendU32(append(b, 0x23), budget)
	b = append(b, 0x41, 0x01, 0x6b)
	return appendU32(append(b, 0x24), budget)
}

// imported counts the functions, globals and memories an import section
// imports.
func imported(payload []byte) (funcs, globals, memories uint32, err error) {
	r := reader{b: payload}
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		r.bytes(r.u32()) // module
		r.bytes(r.u32()) // name
		switch kind := r.byte(); kind {
		case importFunc:
			r.u32()
			funcs++
		case importTable:
			r.byte() // reference type
			r.limits()
		case importMem:
			r.limits()
			memories++
		case importGlob:
			r.byte() // value type
			r.byte() // mutability
			globals++
		case importTag:
			r.byte()
			r.u32()
		default:
			return 0, 0, 0, fmt.Errorf("%w: import of unknown kind %d", errInstrument, kind)
		}
	}
	if r.err != nil || !r.done() {
		return 0, 0, 0, r.fail("import section")
	}
	return funcs, globals, memories, nil
}

// appendToVector adds one encoded entry to a section that is a vector.
func appendToVector(payload, entry []byte) ([]byte, error) {
	r := reader{b: payload}
	n := r.u32()
	if r.err != nil {
		return nil, r.fail("vector")
	}
	out := appendU32(nil, n+1)
	out = append(out, payload[r.off:]...)
	return append(out, entry...), nil
}

// instrumentCode puts check after the block type of every loop, and at the
// start of every function body that needs it (see instrumentExpr);
// functions numbered below imports are the host's.
func instrumentCode(payload, check []byte, imports uint32) ([]byte, error) {
	r := reader{b: payload}
	n := r.u32()
	out := appendU32(nil, n)
	var expr []byte
	for i := uint32(0); i < n && r.err == nil; i++ {
		size := r.u32()
		fn := reader{b: r.bytes(size)}
		if r.err != nil {
			break
		}
		for groups := fn.u32(); groups > 0 && fn.err == nil; groups-- {
			fn.u32()  // count
			fn.byte() // value type
		}
		if fn.err != nil {
			return nil, fn.fail("locals of function %d", i)
		}
		locals := fn.b[:fn.off]
		var entry bool
		var err error
		if expr, entry, err = instrumentExpr(expr[:0], &fn, check, imports); err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		bodySize := len(locals) + len(expr)
		if entry {
			bodySize += len(check)
		}
		out = appendU32(out, uint32(bodySize))
		out = append(out, locals...)
		if entry {
			out = append(out, check...)
		}
		out = append(out, expr...)
	}
	if r.err != nil || !r.done() {
		return nil, r.fail("code section")
	}
	return out, nil
}

// instrumentExpr copies the instructions of fn to out, with check after
// every loop's block type, and reports whether the function needs the
// check at its entry too: unless it calls none of the module's functions
// (a leaf, or one calling only imports), or it reaches a loop head through
// straight-line code, as Go-built functions that call others do, so that
// the loop's check runs before anything could call.
func instrumentExpr(out []byte, fn *reader, check []byte, imports uint32) (_ []byte, entry bool, _ error) {
	// calls: it may call a function of the module; looped: it reached a
	// loop head through straight-line code.
	calls, straight, looped := false, true, false
	for !fn.done() {
		start := fn.off
		op := fn.byte()
		if err := fn.immediates(op); err != nil {
			return nil, false, err
		}
		if fn.err != nil {
			return nil, false, fn.fail("instruction 0x%02x", op)
		}
		out = append(out, fn.b[start:fn.off]...)
		switch {
		case op == 0x03: // loop
			out = append(out, check...)
			looped = looped || straight
		case op == 0x10 || op == 0x12: // call, return_call
			callee := reader{b: fn.b[start+1 : fn.off]}
			calls = calls || callee.u32() >= imports
		case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
			calls = true
		}
		straight = straight && straightLine(op)
	}
	return out, calls && !looped, nil
}

// straightLine reports whether op, before any loop, always passes control
// to the next instruction (or traps): an instruction that is neither a
// branch, nor a call, nor the end of the function.
func straightLine(op byte) bool {
	return op == 0x02 || // block
		op == 0x1a || op == 0x1b || // drop, select
		op >= 0x20 && op <= 0x24 || // local and global get, set, tee
		op >= 0x28 && op <= 0x44 || // loads, stores, memory.size and grow, consts
		op >= 0x45 && op <= 0xc4 // numeric
}

// immediates skips the immediates of the instruction op.
func (r *reader) immediates(op byte) error {
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04 || op == 0x06: // block loop if try
		r.blockType()
	case op == 0x1f: // try_table
		r.blockType()
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			if kind := r.byte(); kind <= 1 {
				r.u32() // tag
			}
			r.u32() // label
		}
	case op == 0x0e: // br_table
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			r.u32()
		}
		r.u32()
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
		r.u32()
		r.u32()
	case op == 0x07 || op == 0x08 || op == 0x09 || op == 0x0c || op == 0x0d || op == 0x10 || op == 0x12 || op == 0x18,
		op >= 0x20 && op <= 0x26, op == 0x3f || op == 0x40, op == 0xd2:
		r.u32()
	case op == 0x1c: // select t*
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			r.byte()
		}
	case op >= 0x28 && op <= 0x3e:
		r.memarg()
	case op == 0x41 || op == 0x42:
		r.leb()
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op == 0xd0: // ref.null
		r.byte()
	case op == 0xfc:
		return r.prefixFC(r.u32())
	case op == 0xfd:
		r.prefixFD(r.u32())
	case op == 0xfe:
		if sub := r.u32(); sub == 0x03 {
			r.byte() // atomic.fence
		} else {
			r.memarg()
		}
	case op <= 0x01, op == 0x05, op == 0x0a, op == 0x0b, op == 0x0f, op == 0x19, op == 0x1a, op == 0x1b,
		op >= 0x45 && op <= 0xc4, op == 0xd1:
		// no immediates
	default:
		return fmt.Errorf("%w: unknown instruction 0x%02x at byte %d of a function", errInstrument, op, r.off-1)
	}
	return nil
}

func (r *reader) prefixFC(sub uint32) error {
	switch {
	case sub <= 7: // saturating truncations
	case sub == 8 || sub == 12 || sub == 10 || sub == 14: // memory.init, table.init, memory.copy, table.copy
		r.u32()
		r.u32()
	case sub <= 17:
		r.u32()
	default:
		return fmt.Errorf("%w: unknown instruction 0xfc %d", errInstrument, sub)
	}
	return nil
}

func (r *reader) prefixFD(sub uint32) {
	switch {
	case sub <= 11 || sub == 92 || sub == 93: // loads and stores
		r.memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		r.bytes(16)
	case sub >= 21 && sub <= 34: // lane accesses
		r.byte()
	case sub >= 84 && sub <= 91: // lane loads and stores
		r.memarg()
		r.byte()
	}
}

// reader decodes the binary format; the first error sticks.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) done() bool { return r.err != nil || r.off >= len(r.b) }

func (r *reader) fail(format string, args ...any) error {
	return fmt.Errorf("%w: malformed %s", errInstrument, fmt.Sprintf(format, args...))
}

func (r *reader) byte() byte {
	if r.err != nil || r.off >= len(r.b) {
		r.err = errors.New("unexpected end")
		return 0
	}
	b := r.b[r.off]
	r.off++
	return b
}

func (r *reader) bytes(n uint32) []byte {
	if r.err != nil || uint64(r.off)+uint64(n) > uint64(len(r.b)) {
		r.err = errors.New("unexpected end")
		return nil
	}
	b := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return b
}

// leb skips a LEB128 number of at most 10 bytes and returns its low 64
// bits, unsigned.
func (r *reader) leb() uint64 {
	var v uint64
	for i := 0; i < 10; i++ {
		b := r.byte()
		v |= uint64(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			return v
		}
	}
	r.err = errors.New("LEB128 number too long")
	return 0
}

func (r *reader) u32() uint32 {
	v := r.leb()
	if v > 1<<32-1 {
		r.err = errors.New("number out of range")
	}
	return uint32(v)
}

func (r *reader) limits() {
	flags := r.byte()
	r.leb()
	if flags&1 != 0 {
		r.leb()
	}
}

func (r *reader) memarg() {
	align := r.u32()
	if align&0x40 != 0 { // multiple memories: a memory index follows
		r.u32()
	}
	r.leb()
}

// blockType skips the empty type, a value type or a type index (s33).
func (r *reader) blockType() {
	if r.off < len(r.b) {
		switch b := r.b[r.off]; b {
		case 0x40, 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
			r.off++
			return
		}
	}
	r.leb()
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
