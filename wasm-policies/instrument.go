package policies

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// CheckModule and CheckFunction name the host function nocrd adds to every
// policy module so that a call stops at its deadline.
//
// wazero stops a running guest only when the runtime is built with
// WithCloseOnContextDone, and then it starts a goroutine for every call to
// watch the context, which costs a proxied request more than the decision
// itself. Instead, Load rewrites the module before compiling it. It imports
// CheckFunction from CheckModule (a function of no parameters and no
// results) and appends a mutable i32 global, a budget. At the start of
// every function and at the head of every loop the guest spends one unit of
// budget; when it runs out, the guest refills it and calls the check, which
// traps when the call's deadline has passed. Every unbounded execution
// passes a loop head or a call, so any guest meets a check within
// checkBudget of them.
//
// The check runs in Go, on the goroutine that called the guest, so no
// other goroutine has to be scheduled for a call to stop on time (a
// watchdog goroutine could not run on a single P before the runtime
// preempted the guest, about 20 ms late). The trip into Go matters on its own
// too: native code cannot be preempted, so a guest that never left it would
// hold up the Go runtime's stop-the-world phases for ever.
//
// The import comes after the module's own, so every function the module
// defines moves up one index: instrument renumbers calls, ref.func,
// exports, element segments and the function names of the name section.
//
// A function's entry check is left out where it cannot matter (see
// instrumentExpr): a function that calls none of the module's functions
// cannot recurse (host functions do not call back into the guest), and one
// that reaches a loop head through straight-line code spends its unit
// there before it can call anything. Go-built functions are nearly all of
// one kind or the other (the wrappers of exported functions are not).
const (
	CheckModule   = "nocrd"
	CheckFunction = "check_deadline"
)

// checkBudget is how many function entries and loop iterations a guest
// makes between two visits to Go: a stop is seen, and the runtime may
// preempt the guest's goroutine, at least that often.
const checkBudget = 4096

// Section ids of the WebAssembly binary format.
const (
	secCustom   = 0
	secType     = 1
	secImport   = 2
	secTable    = 4
	secMemory   = 5
	secGlobal   = 6
	secExport   = 7
	secStart    = 8
	secElement  = 9
	secCode     = 10
	importFunc  = 0
	importTable = 1
	importMem   = 2
	importGlob  = 3
	importTag   = 4
	exportFunc  = 0
)

// sectionRank orders the known sections as the binary format requires.
var sectionRank = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

// errInstrument wraps every reason a module cannot be instrumented.
var errInstrument = errors.New("cannot be instrumented")

// instrument returns wasm with the deadline check imported and called (see
// CheckModule). It rejects what it cannot rewrite safely: a malformed
// module, an instruction or a type it does not know, or a start function
// (which would run at instantiation, before any deadline applies; Go-built
// guests use _initialize instead).
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

	// The check's index is after every imported function, the budget's
	// after every imported and defined global, its type after every type.
	var funcs, globals, memories, types uint32
	for _, s := range secs {
		c := reader{b: s.payload}
		switch s.id {
		case secType:
			n, err := countFuncTypes(s.payload)
			if err != nil {
				return nil, err
			}
			types = n
		case secImport:
			f, g, m, err := imported(s.payload)
			if err != nil {
				return nil, err
			}
			funcs, globals, memories = f, g, m
		case secMemory:
			memories += c.u32()
		case secGlobal:
			globals += c.u32()
		}
		if c.err != nil {
			return nil, c.fail("section %d", s.id)
		}
	}
	if memories == 0 {
		return nil, fmt.Errorf("%w: it has no memory", errInstrument)
	}
	re := renumber{imports: funcs}
	check := checkCode(funcs, globals)

	// Add the sections the module lacks, in their place.
	for _, id := range []byte{secType, secImport, secGlobal} {
		if slices.ContainsFunc(secs, func(s section) bool { return s.id == id }) {
			continue
		}
		i := len(secs)
		for j, s := range secs {
			if rank, ok := sectionRank[s.id]; ok && rank > sectionRank[id] {
				i = j
				break
			}
		}
		secs = slices.Insert(secs, i, section{id, []byte{0}})
	}

	out := append([]byte(nil), wasm[:8]...)
	for _, s := range secs {
		payload := s.payload
		var err error
		switch s.id {
		case secType:
			// (type (func))
			payload, err = appendToVector(payload, []byte{0x60, 0x00, 0x00})
		case secImport:
			// (import "nocrd" "check_deadline" (func (type $types)))
			entry := appendName(appendName(nil, CheckModule), CheckFunction)
			entry = appendU32(append(entry, importFunc), types)
			payload, err = appendToVector(payload, entry)
		case secGlobal:
			// (global $budget (mut i32) (i32.const checkBudget))
			if payload, err = re.globals(payload); err == nil {
				payload, err = appendToVector(payload, append(appendU32([]byte{0x7f, 0x01, 0x41}, checkBudget), 0x0b))
			}
		case secTable:
			payload, err = re.tables(payload)
		case secExport:
			payload, err = re.exports(payload)
		case secElement:
			payload, err = re.elements(payload)
		case secCode:
			payload, err = instrumentCode(payload, check, re)
		case secCustom:
			payload = re.names(payload)
		}
		if err != nil {
			return nil, err
		}
		if payload == nil {
			continue // a name section that could not be read: dropped
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
//	  call $check_deadline   ;; a trip into Go
//	end
//	global.get $budget
//	i32.const 1
//	i32.sub
//	global.set $budget
func checkCode(checkFunc, budget uint32) []byte {
	b := appendU32([]byte{0x23}, budget)
	b = append(b, 0x45, 0x04, 0x40, 0x41)
	b = appendU32(b, checkBudget) // i32.const is signed LEB; checkBudget < 2^13
	b = appendU32(append(b, 0x24), budget)
	b = appendU32(append(b, 0x10), checkFunc)
	b = append(b, 0x0b)
	b = appendU32(append(b, 0x23), budget)
	b = append(b, 0x41, 0x01, 0x6b)
	return appendU32(append(b, 0x24), budget)
}

// countFuncTypes counts the types of a type section, all of which must be
// function types (the only ones before the GC proposal, which wazero does
// not implement).
func countFuncTypes(payload []byte) (uint32, error) {
	r := reader{b: payload}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		if form := r.byte(); form != 0x60 && r.err == nil {
			return 0, fmt.Errorf("%w: type %d is of unknown form 0x%02x", errInstrument, i, form)
		}
		for range 2 { // parameters, results
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				r.valType()
			}
		}
	}
	if r.err != nil || !r.done() {
		return 0, r.fail("type section")
	}
	return n, nil
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
			r.valType() // a reference type
			r.limits()
		case importMem:
			r.limits()
			memories++
		case importGlob:
			r.valType()
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

func appendName(b []byte, name string) []byte {
	return append(appendU32(b, uint32(len(name))), name...)
}

// renumber moves the module's own functions up one index, past the
// imported check; imported functions keep theirs.
type renumber struct{ imports uint32 }

func (re renumber) fn(i uint32) uint32 {
	if i >= re.imports {
		return i + 1
	}
	return i
}

// copyFunc copies a function index from r to out, renumbered.
func (re renumber) copyFunc(out []byte, r *reader) []byte { return appendU32(out, re.fn(r.u32())) }

// constExpr copies a constant expression (up to and with its end) from r
// to out, renumbering ref.func.
func (re renumber) constExpr(out []byte, r *reader) ([]byte, error) {
	for !r.done() {
		start := r.off
		op := r.byte()
		if op == 0xd2 { // ref.func
			out = re.copyFunc(append(out, op), r)
			continue
		}
		if err := r.immediates(op); err != nil {
			return nil, err
		}
		out = append(out, r.b[start:r.off]...)
		if op == 0x0b {
			return out, nil
		}
	}
	return nil, r.fail("constant expression")
}

// vector copies a section that is a vector, each entry by entry, which
// reads it from r and appends it to out.
func vector(payload []byte, section string, entry func(out []byte, r *reader, i uint32) ([]byte, error)) ([]byte, error) {
	r := reader{b: payload}
	n := r.u32()
	out := appendU32(nil, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		var err error
		if out, err = entry(out, &r, i); err != nil {
			return nil, err
		}
	}
	if r.err != nil || !r.done() {
		return nil, r.fail("%s section", section)
	}
	return out, nil
}

// globals renumbers the ref.func in the globals' initial values.
func (re renumber) globals(payload []byte) ([]byte, error) {
	return vector(payload, "global", func(out []byte, r *reader, _ uint32) ([]byte, error) {
		start := r.off
		r.valType()
		r.byte() // mutability
		return re.constExpr(append(out, r.b[start:r.off]...), r)
	})
}

// tables renumbers the ref.func in the tables' initial values (a table
// that has one starts 0x40 0x00, as typed function references add).
func (re renumber) tables(payload []byte) ([]byte, error) {
	return vector(payload, "table", func(out []byte, r *reader, _ uint32) ([]byte, error) {
		start := r.off
		init := r.off < len(r.b) && r.b[r.off] == 0x40
		if init {
			r.bytes(2)
		}
		r.valType()
		r.limits()
		out = append(out, r.b[start:r.off]...)
		if !init {
			return out, nil
		}
		return re.constExpr(out, r)
	})
}

// exports renumbers exported functions.
func (re renumber) exports(payload []byte) ([]byte, error) {
	return vector(payload, "export", func(out []byte, r *reader, _ uint32) ([]byte, error) {
		start := r.off
		r.bytes(r.u32()) // name
		kind := r.byte()
		out = append(out, r.b[start:r.off]...)
		if kind == exportFunc {
			return re.copyFunc(out, r), nil
		}
		return appendU32(out, r.u32()), nil
	})
}

// elements renumbers the functions of the element segments, in any of
// their eight encodings.
func (re renumber) elements(payload []byte) ([]byte, error) {
	return vector(payload, "element", func(out []byte, r *reader, i uint32) ([]byte, error) {
		flags := r.u32()
		if flags > 7 {
			return nil, fmt.Errorf("%w: element segment %d has unknown flags %d", errInstrument, i, flags)
		}
		out = appendU32(out, flags)
		if flags&3 == 2 { // an explicit table
			out = appendU32(out, r.u32())
		}
		var err error
		if flags&1 == 0 { // active: an offset
			if out, err = re.constExpr(out, r); err != nil {
				return nil, err
			}
		}
		switch start := r.off; {
		case flags&3 != 0 && flags&4 != 0: // a reference type
			r.valType()
			out = append(out, r.b[start:r.off]...)
		case flags&3 != 0: // an element kind
			out = append(out, r.byte())
		}
		count := r.u32()
		out = appendU32(out, count)
		for j := uint32(0); j < count && r.err == nil; j++ {
			if flags&4 == 0 { // function indices
				out = re.copyFunc(out, r)
			} else if out, err = re.constExpr(out, r); err != nil {
				return nil, err
			}
		}
		return out, nil
	})
}

// names renumbers the functions of a "name" custom section (its function,
// local and label names) and returns any other custom section as it is.
// A name section it cannot read it returns as nil, to be dropped: names
// only label traps and tools. So is one whose module, function or local
// names do not fill their subsection exactly: wazero reads those without
// their size, and so would read past the section into the ones instrument
// adds after it.
func (re renumber) names(payload []byte) []byte {
	r := reader{b: payload}
	if string(r.bytes(r.u32())) != "name" || r.err != nil {
		return payload
	}
	out := append([]byte(nil), payload[:r.off]...)
	for !r.done() {
		id := r.byte()
		sub := reader{b: r.bytes(r.u32())}
		var body []byte
		switch id {
		case 0: // the module's name, kept only if it fills its subsection
			sub.bytes(sub.u32())
			body = sub.b
		case 1: // function names: a name map keyed by function
			body = re.nameMap(nil, &sub, false)
		case 2, 3: // local and label names: maps of name maps keyed by function
			body = re.nameMap(nil, &sub, true)
		default:
			body = sub.b
			sub.off = len(sub.b)
		}
		if sub.err != nil || !sub.done() {
			return nil
		}
		out = append(appendU32(append(out, id), uint32(len(body))), body...)
	}
	if r.err != nil {
		return nil
	}
	return out
}

// nameMap copies a name map keyed by function index (or, when indirect, a
// map of name maps), renumbering the keys.
func (re renumber) nameMap(out []byte, r *reader, indirect bool) []byte {
	n := r.u32()
	out = appendU32(out, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		out = re.copyFunc(out, r)
		if !indirect {
			out = appendName(out, string(r.bytes(r.u32())))
			continue
		}
		m := r.u32() // an inner map keeps its keys (locals, labels)
		out = appendU32(out, m)
		for j := uint32(0); j < m && r.err == nil; j++ {
			out = appendU32(out, r.u32())
			out = appendName(out, string(r.bytes(r.u32())))
		}
	}
	return out
}

// instrumentCode renumbers calls and puts check after the block type of
// every loop, and at the start of every function body that needs it (see
// instrumentExpr).
func instrumentCode(payload, check []byte, re renumber) ([]byte, error) {
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
			fn.u32() // count
			fn.valType()
		}
		if fn.err != nil {
			return nil, fn.fail("locals of function %d", i)
		}
		locals := fn.b[:fn.off]
		var entry bool
		var err error
		if expr, entry, err = instrumentExpr(expr[:0], &fn, check, re); err != nil {
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

// instrumentExpr copies the instructions of fn to out, renumbered, with
// check after every loop's block type, and reports whether the function
// needs the check at its entry too: unless it calls none of the module's
// functions (a leaf, or one calling only imports), or it reaches a loop
// head through straight-line code, as Go-built functions that call others
// do, so that the loop's check runs before anything could call.
func instrumentExpr(out []byte, fn *reader, check []byte, re renumber) (_ []byte, entry bool, _ error) {
	// calls: it may call a function of the module; looped: it reached a
	// loop head through straight-line code.
	calls, straight, looped := false, true, false
	for !fn.done() {
		start := fn.off
		op := fn.byte()
		switch op {
		case 0x10, 0x12, 0xd2: // call, return_call, ref.func
			callee := fn.u32()
			if fn.err != nil {
				return nil, false, fn.fail("instruction 0x%02x", op)
			}
			calls = calls || op != 0xd2 && callee >= re.imports
			out = appendU32(append(out, op), re.fn(callee))
			straight = straight && straightLine(op)
			continue
		}
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
		case op == 0x11 || op == 0x13 || op == 0x14 || op == 0x15: // call_indirect, return_call_indirect, call_ref, return_call_ref
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
		op >= 0x20 && op <= 0x26, op == 0x3f || op == 0x40, op == 0xd2,
		op == 0x14 || op == 0x15 || op == 0xd5 || op == 0xd6: // call_ref, return_call_ref (a type); br_on_null, br_on_non_null (a label)
		r.u32()
	case op == 0x1c: // select t*
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			r.valType()
		}
	case op >= 0x28 && op <= 0x3e:
		r.memarg()
	case op == 0x41 || op == 0x42:
		r.leb()
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op == 0xd0: // ref.null: a heap type, an s33 that may be a type index
		r.leb()
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
		op >= 0x45 && op <= 0xc4, op == 0xd1, op == 0xd4: // ..., ref.is_null, ref.as_non_null
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
		case 0x40:
			r.off++
			return
		case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 0x69, 0x63, 0x64:
			r.valType()
			return
		}
	}
	r.leb()
}

// valType skips a value type: one byte, or for a typed reference ((ref
// null ht), (ref ht): 0x63, 0x64) that byte and a heap type (s33).
func (r *reader) valType() {
	if b := r.byte(); b == 0x63 || b == 0x64 {
		r.leb()
	}
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
