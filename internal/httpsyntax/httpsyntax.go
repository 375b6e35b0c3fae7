// Package httpsyntax checks pieces of an HTTP/1.1 message against RFC
// 9110's grammar: what nocrd accepts from a route policy before it puts
// it into a request it forwards (the proxy) or hands it on (the Wasm
// host). It is a leaf: it imports nothing of nocrd's.
package httpsyntax

// IsToken reports whether b is made of RFC 9110 token characters (header
// names, methods). An empty b is a token; callers refuse it themselves.
func IsToken(b []byte) bool {
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

// tokenChars are the bytes of an RFC 9110 token: visible ASCII except the
// delimiters. A table, because every header name a policy writes is
// checked.
var tokenChars = func() (t [256]bool) {
	for c := byte('!'); c <= '~'; c++ {
		t[c] = true
	}
	for _, c := range []byte(`"(),/:;<=>?@[\]{}`) {
		t[c] = false
	}
	return t
}()

// IsFieldValue reports whether b may be a header value: no CR, LF or NUL,
// so it cannot end its line early.
func IsFieldValue(b []byte) bool {
	for _, c := range b {
		if c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

// IsVisibleASCII reports whether b is printable ASCII without spaces, as
// an encoded request target is.
func IsVisibleASCII(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
