//go:build wasip1

package guest

import (
	"bytes"
	"unsafe"
)

//go:wasmimport http_handler get_config
func getConfig(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler log
func logMessage(level int32, msg unsafe.Pointer, n uint32)

//go:wasmimport http_handler get_method
func getMethod(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler get_uri
func getURI(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler set_uri
func setURI(uri unsafe.Pointer, n uint32)

//go:wasmimport http_handler get_header_values
func getHeaderValues(kind uint32, name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport http_handler set_header_value
func setHeaderValue(kind uint32, name unsafe.Pointer, nameLen uint32, value unsafe.Pointer, valueLen uint32)

//go:wasmimport http_handler remove_header
func removeHeader(kind uint32, name unsafe.Pointer, nameLen uint32)

//go:wasmimport http_handler read_body
func readBody(kind uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport http_handler write_body
func writeBody(kind uint32, body unsafe.Pointer, n uint32)

//go:wasmimport http_handler set_status_code
func setStatusCode(status uint32)

const (
	kindRequest  = 0
	kindResponse = 1
)

// buf is reused for every field read; fields longer than it are read into
// a buffer of their own size.
var buf = make([]byte, 2048)

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func strPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

// field reads a field with a get_xxx(buf, limit) function.
func field(get func(unsafe.Pointer, uint32) uint32) []byte {
	n := get(ptr(buf), uint32(len(buf)))
	if int(n) > len(buf) {
		b := make([]byte, n)
		get(ptr(b), n)
		return b
	}
	return buf[:n]
}

var handler func() bool

// Handle registers the policy's decision: it returns true to let the
// request through, or false after Deny.
func Handle(f func() bool) { handler = f }

//go:wasmexport handle_request
func handleRequest() uint64 {
	if handler != nil && handler() {
		return 1
	}
	return 0
}

// Config returns the policy's configuration.
func Config() []byte { return bytes.Clone(field(getConfig)) }

// Method returns the request method.
func Method() string { return string(field(getMethod)) }

// URI returns the request's path and query.
func URI() string { return string(field(getURI)) }

// SetURI replaces the path and query sent on.
func SetURI(uri string) { setURI(strPtr(uri), uint32(len(uri))) }

// Header returns the first value of a request header, and whether there is
// one.
func Header(name string) (string, bool) {
	v, ok := HeaderBytes(name)
	return string(v), ok
}

// HeaderBytes is Header without a copy: the value is a view of a buffer the
// SDK reuses, valid until the next call into the SDK. A policy on the hot
// path uses it to decide without allocating.
func HeaderBytes(name string) ([]byte, bool) {
	// The common case, one value that fits, takes one host call and no
	// search for its NUL: every Go function a decision runs costs time.
	cl := getHeaderValues(kindRequest, strPtr(name), uint32(len(name)), ptr(buf), uint32(len(buf)))
	if count, n := uint32(cl>>32), uint32(cl); count == 1 && n >= 1 && int(n) <= len(buf) {
		return buf[:n-1], true
	}
	b, count := headerValues(name)
	if count == 0 {
		return nil, false
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return b, true
}

// headerValues reads every value of a request header, each followed by NUL,
// into buf (or a buffer of their size when they do not fit).
func headerValues(name string) ([]byte, uint32) {
	cl := getHeaderValues(kindRequest, strPtr(name), uint32(len(name)), ptr(buf), uint32(len(buf)))
	count, n := uint32(cl>>32), uint32(cl)
	if count == 0 {
		return nil, 0
	}
	if int(n) > len(buf) {
		b := make([]byte, n)
		getHeaderValues(kindRequest, strPtr(name), uint32(len(name)), ptr(b), n)
		return b, count
	}
	return buf[:n], count
}

// HeaderValues returns every value of a request header.
func HeaderValues(name string) []string {
	b, count := headerValues(name)
	if count == 0 {
		return nil
	}
	vals := make([]string, 0, count)
	for _, v := range bytes.Split(b[:len(b)-1], []byte{0}) {
		vals = append(vals, string(v))
	}
	return vals
}

// SetHeader sets a request header, replacing its values.
func SetHeader(name, value string) {
	setHeaderValue(kindRequest, strPtr(name), uint32(len(name)), strPtr(value), uint32(len(value)))
}

// SetHeaderBytes is SetHeader for a value held in bytes (such as one from
// HeaderBytes).
func SetHeaderBytes(name string, value []byte) {
	// unsafe.SliceData, unlike ptr, keeps this small enough to inline.
	setHeaderValue(kindRequest, strPtr(name), uint32(len(name)), unsafe.Pointer(unsafe.SliceData(value)), uint32(len(value)))
}

// RemoveHeader removes a request header.
func RemoveHeader(name string) { removeHeader(kindRequest, strPtr(name), uint32(len(name))) }

// Body returns the request body: the admission request's JSON. A route
// policy decides on the request head: reading the body of a route request
// that has one fails the decision (a deny), since nocrd streams it to the
// workspace; one without a body reads as empty.
func Body() []byte {
	var out []byte
	chunk := make([]byte, 4096)
	for {
		el := readBody(kindRequest, ptr(chunk), uint32(len(chunk)))
		out = append(out, chunk[:uint32(el)]...)
		if el>>32 == 1 {
			return out
		}
	}
}

// Deny answers the request with status and a reason as its body; the
// handler then returns false.
func Deny(status int, reason string) {
	setStatusCode(uint32(status))
	writeBody(kindResponse, strPtr(reason), uint32(len(reason)))
}

// Patch admits an admission request with changes: patch is an RFC 6902
// JSON Patch on the review's pod. The handler then returns false.
func Patch(patch []byte) {
	setStatusCode(200)
	SetResponseHeader("Content-Type", "application/json-patch+json")
	writeBody(kindResponse, ptr(patch), uint32(len(patch)))
}

// SetResponseHeader sets a header on the answer the policy writes (for
// example a JSON Patch content type).
func SetResponseHeader(name, value string) {
	setHeaderValue(kindResponse, strPtr(name), uint32(len(name)), strPtr(value), uint32(len(value)))
}

// Log levels.
const (
	LevelDebug = -1
	LevelInfo  = 0
	LevelWarn  = 1
	LevelError = 2
)

// Log writes a message to nocrd's log, tagged with the policy.
func Log(level int32, msg string) { logMessage(level, strPtr(msg), uint32(len(msg))) }
