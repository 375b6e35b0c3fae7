package policies_test

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nocrd/nocrd/internal/httpsyntax"
	policies "github.com/nocrd/nocrd/wasm-policies"
)

// The opcodes of testdata/hostcalls.wat: each calls the host function of
// its name with the record's arguments, in order; opReturn returns its
// first argument as handle_request's result.
const (
	opGetMethod byte = iota
	opSetMethod
	opGetURI
	opSetURI
	opGetHeaderNames
	opGetHeaderValues
	opSetHeaderValue
	opAddHeaderValue
	opRemoveHeader
	opReadBody
	opWriteBody
	opGetStatusCode
	opSetStatusCode
	opGetConfig
	opLog
	opLogEnabled
	opGetSourceAddr
	opEnableFeatures
	opGetProtocolVersion
	opReturn
)

// program encodes host calls as hostcalls.wat reads them: an opcode and
// five little-endian arguments (those missing are 0).
func program(calls ...[]uint32) []byte {
	var b []byte
	for _, c := range calls {
		b = append(b, byte(c[0]))
		for i := 1; i <= 5; i++ {
			var arg uint32
			if i < len(c) {
				arg = c[i]
			}
			b = binary.LittleEndian.AppendUint32(b, arg)
		}
	}
	return b
}

func call(op byte, args ...uint32) []uint32 { return append([]uint32{uint32(op)}, args...) }

// hostCallsConfig is hostcalls.wat's configuration in these tests: a
// header name the guest can copy into its memory (get_config).
const hostCallsConfig = "X-Fuzz"

// cfgLen is the length of hostCallsConfig, as a program's argument.
const cfgLen = uint32(len(hostCallsConfig))

// hostCallsModule loads hostcalls.wat, logging to nowhere at every level so
// that the guest's log calls are formatted.
func hostCallsModule(t testing.TB) *policies.Module {
	h := newHost(t, policies.Options{PoolSize: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	return load(t, h, wat(t, "hostcalls"), hostCallsConfig, 2*time.Second)
}

// hostCallCase is a program for hostcalls.wat with what it must give.
type hostCallCase struct {
	name   string
	prog   []byte
	next   bool
	fault  string // FaultError.Reason, or ""
	status int    // and body: the answer, when next is false
	body   string
	header string // a request header the program sets to the config
}

// hostCallsCases: TestHostCallsGuest checks them, and they seed
// FuzzHostCalls.
var hostCallsCases = []hostCallCase{
	{"nothing", nil, true, "", 0, "", ""},
	{"set a header", program(call(opGetConfig, 0, 64), call(opSetHeaderValue, 0, 0, cfgLen, 0, cfgLen)), true, "", 0, "", hostCallsConfig},
	{"answer", program(call(opGetConfig, 0, 64), call(opSetStatusCode, 403), call(opWriteBody, 1, 0, cfgLen), call(opReturn, 0)), false, "", 403, hostCallsConfig, ""},
	{"add and remove", program(call(opGetConfig, 0, 64), call(opAddHeaderValue, 1, 0, cfgLen, 0, cfgLen), call(opRemoveHeader, 0, 0, cfgLen)), true, "", 0, "", ""},
	{"copy method and URI", program(call(opGetMethod, 0, 16), call(opSetMethod, 0, 3), call(opGetURI, 16, 64), call(opSetURI, 16, 2)), true, "", 0, "", ""},
	{"read headers", program(call(opGetHeaderNames, 0, 0, 4096), call(opGetHeaderValues, 0, 0, 15, 4096, 4096)), true, "", 0, "", ""},
	{"log", program(call(opLog, uint32(policies.LogLevelInfo), 0, 64), call(opLogEnabled, 0xffffffff), call(opEnableFeatures, 0xffffffff)), true, "", 0, "", ""},
	{"the rest", program(call(opGetSourceAddr, 0, 64), call(opGetProtocolVersion, 0, 0), call(opGetStatusCode), call(opReadBody, 1, 0, 1)), true, "", 0, "", ""},
	{"not a status", program(call(opSetStatusCode, 99)), false, "trap", 0, "", ""},
	{"next is 7", program(call(opReturn, 7)), false, "malformed", 0, "", ""},
	{"an answer without a status is a 200", program(call(opReturn, 0)), false, "", 200, "", ""},
	{"a field outside memory", program(call(opGetMethod, 65535, 16)), false, "trap", 0, "", ""},
	{"a trailer", program(call(opGetConfig, 0, 64), call(opSetHeaderValue, 2, 0, cfgLen, 0, cfgLen)), false, "trap", 0, "", ""},
	{"no room for the body", program(call(opReadBody, 0, 0, 0)), false, "trap", 0, "", ""},
	{"a body outside memory", program(call(opWriteBody, 1, 0, 0xffffffff)), false, "trap", 0, "", ""},
	{"a header name that is not a token", program(call(opSetHeaderValue, 0, 0, 1, 0, 0)), false, "trap", 0, "", ""}, // a NUL
}

// hostCallsRequest is the request the programs run on.
func hostCallsRequest(prog []byte) *policies.Message {
	req := request("GET", "/x?q=1", "Accept", "*/*", "X-Nocrd-Subject", "alice")
	req.BodyValue = prog
	return req
}

// TestHostCallsGuest: hostcalls.wat runs what it is given, so that the
// programs FuzzHostCalls makes reach the host functions.
func TestHostCallsGuest(t *testing.T) {
	m := hostCallsModule(t)
	for _, c := range hostCallsCases {
		req := hostCallsRequest(c.prog)
		var resp policies.Response
		next, err := m.Handle(req, &resp)
		var fe *policies.FaultError
		switch {
		case c.fault != "":
			if !errors.As(err, &fe) || fe.Reason != c.fault {
				t.Errorf("%s: next=%v err=%v, want a %s fault", c.name, next, err, c.fault)
			}
		case err != nil || next != c.next:
			t.Errorf("%s: next=%v err=%v, want next=%v", c.name, next, err, c.next)
		case !next && (resp.Status != c.status || string(resp.Body) != c.body):
			t.Errorf("%s: answered %d %q, want %d %q", c.name, resp.Status, resp.Body, c.status, c.body)
		}
		if c.header != "" {
			if v := headerValues(req, c.header); len(v) != 1 || v[0] != hostCallsConfig {
				t.Errorf("%s: %s = %q", c.name, c.header, v)
			}
		}
	}
}

// FuzzHostCalls: a guest may call any host function with any arguments,
// in any order (hostcalls.wat runs the program in its request body).
// Whatever it passes, the call ends in a decision or a FaultError (a trap,
// or a malformed answer), never in a failure of the host; what the host
// let it change in the request and the answer is still well-formed; and
// the module answers the next call.
func FuzzHostCalls(f *testing.F) {
	m := hostCallsModule(f)
	for _, c := range hostCallsCases {
		f.Add(c.prog)
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		req := hostCallsRequest(prog)
		var resp policies.Response
		next, err := m.Handle(req, &resp)
		var fe *policies.FaultError
		switch {
		case err != nil:
			if next || !errors.As(err, &fe) || fe.Policy != m.Name || (fe.Reason != "trap" && fe.Reason != "malformed") {
				t.Fatalf("next=%v err=%v, want a trap or a malformed answer", next, err)
			}
		case !next && (resp.Status < 100 || resp.Status > 599):
			t.Fatalf("an answer with status %d", resp.Status)
		}
		if meth := req.Method(); len(meth) == 0 || !httpsyntax.IsToken(meth) {
			t.Fatalf("method %q", meth)
		}
		if uri := req.URI(); len(uri) == 0 || uri[0] != '/' || !httpsyntax.IsVisibleASCII(uri) {
			t.Fatalf("URI %q", uri)
		}
		for _, hs := range [][]policies.Field{req.Header, resp.Header} {
			for _, fl := range hs {
				if !httpsyntax.IsToken(fl.Name) || !httpsyntax.IsFieldValue(fl.Value) {
					t.Fatalf("header %q: %q", fl.Name, fl.Value)
				}
			}
		}
		if len(resp.Body) > 64<<10 {
			t.Fatalf("an answer of %d bytes", len(resp.Body))
		}
		if next, err := m.Handle(request("GET", "/"), &policies.Response{}); !next || err != nil {
			t.Fatalf("the next call: next=%v err=%v", next, err)
		}
	})
}
