package policies

import (
	"bytes"
	"context"
	"log/slog"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/nocrd/nocrd/internal/httpsyntax"
)

const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// instantiateHostModule defines the ABI's host functions (abi.go) in rt.
// They are GoModuleFuncs: no reflection and no allocation per call.
func instantiateHostModule(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(HostModule)
	def := func(name string, fn api.GoModuleFunc, params, results []api.ValueType) {
		b.NewFunctionBuilder().WithGoModuleFunction(fn, params, results).Export(name)
	}
	def(FuncEnableFeatures, enableFeatures, []api.ValueType{i32}, []api.ValueType{i32})
	def(FuncGetConfig, getConfig, []api.ValueType{i32, i32}, []api.ValueType{i32})
	def(FuncLogEnabled, logEnabled, []api.ValueType{i32}, []api.ValueType{i32})
	def(FuncLog, logMessage, []api.ValueType{i32, i32, i32}, nil)
	def(FuncGetMethod, getMethod, []api.ValueType{i32, i32}, []api.ValueType{i32})
	def(FuncSetMethod, setMethod, []api.ValueType{i32, i32}, nil)
	def(FuncGetURI, getURI, []api.ValueType{i32, i32}, []api.ValueType{i32})
	def(FuncSetURI, setURI, []api.ValueType{i32, i32}, nil)
	def(FuncGetProtocolVersion, getProtocolVersion, []api.ValueType{i32, i32}, []api.ValueType{i32})
	def(FuncGetSourceAddr, getSourceAddr, []api.ValueType{i32, i32}, []api.ValueType{i32})
	def(FuncGetHeaderNames, getHeaderNames, []api.ValueType{i32, i32, i32}, []api.ValueType{i64})
	def(FuncGetHeaderValues, getHeaderValues, []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i64})
	def(FuncSetHeaderValue, setHeaderValue, []api.ValueType{i32, i32, i32, i32, i32}, nil)
	def(FuncAddHeaderValue, addHeaderValue, []api.ValueType{i32, i32, i32, i32, i32}, nil)
	def(FuncRemoveHeader, removeHeader, []api.ValueType{i32, i32, i32}, nil)
	def(FuncReadBody, readBody, []api.ValueType{i32, i32, i32}, []api.ValueType{i64})
	def(FuncWriteBody, writeBody, []api.ValueType{i32, i32, i32}, nil)
	def(FuncGetStatusCode, getStatusCode, nil, []api.ValueType{i32})
	def(FuncSetStatusCode, setStatusCode, []api.ValueType{i32}, nil)
	_, err := b.Instantiate(ctx)
	return err
}

func enableFeatures(_ context.Context, _ api.Module, stack []uint64) {
	stack[0] = 0 // no optional feature is supported
}

func getConfig(ctx context.Context, mod api.Module, stack []uint64) {
	stack[0] = uint64(writeField(mod, uint32(stack[0]), uint32(stack[1]), instanceOf(ctx).m.config))
}

func slogLevel(level int32) slog.Level {
	switch {
	case level <= LogLevelDebug:
		return slog.LevelDebug
	case level == LogLevelInfo:
		return slog.LevelInfo
	case level == LogLevelWarn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func logEnabled(ctx context.Context, _ api.Module, stack []uint64) {
	level := int32(stack[0])
	stack[0] = 0
	if level < LogLevelNone && instanceOf(ctx).m.host.log.Enabled(ctx, slogLevel(level)) {
		stack[0] = 1
	}
}

func logMessage(ctx context.Context, mod api.Module, stack []uint64) {
	level := int32(stack[0])
	msg := read(mod, uint32(stack[1]), uint32(stack[2]))
	if level >= LogLevelNone {
		return
	}
	m := instanceOf(ctx).m
	m.host.log.Log(ctx, slogLevel(level), string(msg), "policy", m.Name)
}

// request returns the request of the running call; a host function called
// outside a call (from _initialize) traps.
func request(ctx context.Context) (*call, Request) {
	c := &instanceOf(ctx).call
	if c.req == nil {
		trap("request functions can only be called during %s", ExportHandleRequest)
	}
	return c, c.req
}

func getMethod(ctx context.Context, mod api.Module, stack []uint64) {
	_, req := request(ctx)
	stack[0] = uint64(writeField(mod, uint32(stack[0]), uint32(stack[1]), req.Method()))
}

func setMethod(ctx context.Context, mod api.Module, stack []uint64) {
	_, req := request(ctx)
	m := read(mod, uint32(stack[0]), uint32(stack[1]))
	if len(m) == 0 || !httpsyntax.IsToken(m) {
		trap("set_method: %q is not a method", m)
	}
	req.SetMethod(m)
}

func getURI(ctx context.Context, mod api.Module, stack []uint64) {
	_, req := request(ctx)
	stack[0] = uint64(writeField(mod, uint32(stack[0]), uint32(stack[1]), req.URI()))
}

func setURI(ctx context.Context, mod api.Module, stack []uint64) {
	_, req := request(ctx)
	u := read(mod, uint32(stack[0]), uint32(stack[1]))
	if len(u) == 0 || u[0] != '/' || !httpsyntax.IsVisibleASCII(u) {
		trap("set_uri: %q is not an encoded path", u)
	}
	req.SetURI(u)
}

func getProtocolVersion(ctx context.Context, mod api.Module, stack []uint64) {
	request(ctx)
	stack[0] = uint64(writeField(mod, uint32(stack[0]), uint32(stack[1]), []byte("HTTP/1.1")))
}

func getSourceAddr(ctx context.Context, mod api.Module, stack []uint64) {
	_, req := request(ctx)
	stack[0] = uint64(writeField(mod, uint32(stack[0]), uint32(stack[1]), req.SourceAddr()))
}

// countLen packs a count and a length as the ABI's count_len.
func countLen(count, n int) uint64 { return uint64(uint32(count))<<32 | uint64(uint32(n)) }

func getHeaderNames(ctx context.Context, mod api.Module, stack []uint64) {
	c, req := request(ctx)
	kind, buf, limit := uint32(stack[0]), uint32(stack[1]), uint32(stack[2])
	var count int
	switch kind {
	case HeaderKindRequest:
		c.scratch, count = req.AppendHeaderNames(c.scratch[:0])
	case HeaderKindResponse:
		c.scratch = c.scratch[:0]
		for _, f := range c.resp.Header {
			c.scratch = append(appendLower(c.scratch, f.Name), 0)
			count++
		}
	case HeaderKindRequestTrailers, HeaderKindResponseTrailers:
		c.scratch = c.scratch[:0] // trailers are not supported: none
	default:
		trap("get_header_names: unknown header kind %d", kind)
	}
	writeField(mod, buf, limit, c.scratch)
	stack[0] = countLen(count, len(c.scratch))
}

func getHeaderValues(ctx context.Context, mod api.Module, stack []uint64) {
	c, req := request(ctx)
	kind := uint32(stack[0])
	name := read(mod, uint32(stack[1]), uint32(stack[2]))
	buf, limit := uint32(stack[3]), uint32(stack[4])
	var count int
	switch kind {
	case HeaderKindRequest:
		c.scratch, count = req.AppendHeaderValues(c.scratch[:0], name)
	case HeaderKindResponse:
		c.scratch = c.scratch[:0]
		for _, f := range c.resp.Header {
			if bytes.EqualFold(f.Name, name) {
				c.scratch = append(append(c.scratch, f.Value...), 0)
				count++
			}
		}
	case HeaderKindRequestTrailers, HeaderKindResponseTrailers:
		c.scratch = c.scratch[:0]
	default:
		trap("get_header_values: unknown header kind %d", kind)
	}
	writeField(mod, buf, limit, c.scratch)
	stack[0] = countLen(count, len(c.scratch))
}

// headerArgs reads and checks (kind, name, name_len, value, value_len):
// a name must be a token and a value must not contain CR, LF or NUL, so a
// guest cannot smuggle extra headers.
func headerArgs(mod api.Module, stack []uint64, what string) (kind uint32, name, value []byte) {
	kind = uint32(stack[0])
	name = read(mod, uint32(stack[1]), uint32(stack[2]))
	if len(name) == 0 || !httpsyntax.IsToken(name) {
		trap("%s: %q is not a header name", what, name)
	}
	if len(stack) >= 5 {
		value = read(mod, uint32(stack[3]), uint32(stack[4]))
		if !httpsyntax.IsFieldValue(value) {
			trap("%s: the value of %s contains a control character", what, name)
		}
	}
	if kind == HeaderKindRequestTrailers || kind == HeaderKindResponseTrailers {
		trap("%s: trailers are not supported", what)
	}
	if kind != HeaderKindRequest && kind != HeaderKindResponse {
		trap("%s: unknown header kind %d", what, kind)
	}
	return kind, name, value
}

func setHeaderValue(ctx context.Context, mod api.Module, stack []uint64) {
	c, req := request(ctx)
	kind, name, value := headerArgs(mod, stack, "set_header_value")
	if kind == HeaderKindRequest {
		req.SetHeader(name, value)
		return
	}
	c.resp.remove(name)
	c.resp.add(name, value)
}

func addHeaderValue(ctx context.Context, mod api.Module, stack []uint64) {
	c, req := request(ctx)
	kind, name, value := headerArgs(mod, stack, "add_header_value")
	if kind == HeaderKindRequest {
		req.AddHeader(name, value)
		return
	}
	c.resp.add(name, value)
}

func removeHeader(ctx context.Context, mod api.Module, stack []uint64) {
	c, req := request(ctx)
	kind, name, _ := headerArgs(mod, stack[:3], "remove_header")
	if kind == HeaderKindRequest {
		req.RemoveHeader(name)
		return
	}
	c.resp.remove(name)
}

func readBody(ctx context.Context, mod api.Module, stack []uint64) {
	c, req := request(ctx)
	kind, buf, limit := uint32(stack[0]), uint32(stack[1]), uint32(stack[2])
	if limit == 0 {
		trap("read_body: buf_limit is zero")
	}
	if kind != BodyKindRequest {
		// The response is the guest's own, being written.
		stack[0] = 1 << 32
		return
	}
	body, readable := req.Body()
	if !readable {
		// Reading none would tell the guest the body is empty, and a rule
		// on the body would let through what it refuses.
		trap("read_body: the request body goes to the workspace as it comes; a route policy decides on the request head")
	}
	rest := body[min(c.bodyRead, len(body)):]
	n := min(len(rest), int(limit))
	writeField(mod, buf, uint32(n), rest[:n])
	c.bodyRead += n
	eof := uint64(0)
	if c.bodyRead >= len(body) {
		eof = 1
	}
	stack[0] = eof<<32 | uint64(n)
}

func writeBody(ctx context.Context, mod api.Module, stack []uint64) {
	c, _ := request(ctx)
	kind := uint32(stack[0])
	b := read(mod, uint32(stack[1]), uint32(stack[2]))
	if kind != BodyKindResponse {
		trap("write_body: only the response body can be written")
	}
	if !c.resp.bodyWritten {
		c.resp.Body, c.resp.bodyWritten = c.resp.Body[:0], true
	}
	if len(c.resp.Body)+len(b) > maxResponseBody {
		trap("write_body: the response body is over %d bytes", maxResponseBody)
	}
	c.resp.Body = append(c.resp.Body, b...)
}

// maxResponseBody bounds the body a guest may answer with.
const maxResponseBody = 64 << 10

func getStatusCode(ctx context.Context, _ api.Module, stack []uint64) {
	c, _ := request(ctx)
	stack[0] = uint64(uint32(c.resp.Status))
}

func setStatusCode(ctx context.Context, _ api.Module, stack []uint64) {
	c, _ := request(ctx)
	s := int32(stack[0])
	if s < 100 || s > 599 {
		trap("set_status_code: %d is not a status", s)
	}
	c.resp.Status = int(s)
}

func appendLower(dst, s []byte) []byte {
	for _, c := range s {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
