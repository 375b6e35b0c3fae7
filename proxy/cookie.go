package proxy

import (
	"bytes"
	"iter"
)

// TokenCookie is the cookie in which a browser keeps its token for one
// workspace (Options.TokenCookie): set by the proxy's redirect of a
// navigation that carried the token in the query, sent back by the browser
// on every request under that workspace's route, and never forwarded.
const TokenCookie = "nocrd_token"

// maxCookieToken is the longest token put in a cookie. Browsers keep a
// cookie of up to 4096 bytes, name and attributes included; a longer
// token would be dropped, and the page behind the redirect refused.
const maxCookieToken = 3800

// cookiePairs iterates over the name=value pairs of a Cookie header value,
// trimmed of the spaces and tabs around them, skipping empty ones.
func cookiePairs(v []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for pair := range split(v, ';') {
			if pair = bytes.Trim(pair, " \t"); len(pair) > 0 && !yield(pair) {
				return
			}
		}
	}
}

// cookieNamed returns the value of pair, a cookie's name=value, when its
// name is name (cookie names are case-sensitive), without the spaces
// around it or the double quotes RFC 6265 allows around a value.
func cookieNamed(pair []byte, name string) ([]byte, bool) {
	k, v, ok := bytes.Cut(pair, []byte{'='})
	if !ok || string(bytes.TrimRight(k, " \t")) != name {
		return nil, false
	}
	v = bytes.TrimLeft(v, " \t")
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	return v, true
}

// cookieValue returns the value of the first cookie named name in the
// Cookie header values, or nil.
func cookieValue(values [][]byte, name string) []byte {
	for _, v := range values {
		if !bytes.Contains(v, s2b(name)) {
			continue
		}
		for pair := range cookiePairs(v) {
			if val, ok := cookieNamed(pair, name); ok {
				return val
			}
		}
	}
	return nil
}

// hasCookie reports whether the Cookie header value v holds a cookie named
// name.
func hasCookie(v []byte, name string) bool {
	if !bytes.Contains(v, s2b(name)) {
		return false
	}
	for pair := range cookiePairs(v) {
		if _, ok := cookieNamed(pair, name); ok {
			return true
		}
	}
	return false
}

// appendCookieField appends the Cookie field k: v without the cookies
// named name: the field as it is when it has none, nothing when it had no
// other. The cookies left are joined by "; ", as browsers send them.
func appendCookieField(dst, k, v []byte, name string) []byte {
	if !hasCookie(v, name) {
		return appendField(dst, k, v)
	}
	start := len(dst)
	dst = append(append(dst, k...), ": "...)
	first := len(dst)
	for pair := range cookiePairs(v) {
		if _, ok := cookieNamed(pair, name); ok {
			continue
		}
		if len(dst) > first {
			dst = append(dst, "; "...)
		}
		dst = append(dst, pair...)
	}
	if len(dst) == first {
		return dst[:start]
	}
	return append(dst, "\r\n"...)
}

// cookieSafe reports whether a token can be a cookie's value as it is:
// the bytes RFC 6265 allows in one (a JWT's base64url and dots are), and
// short enough for a browser to keep.
func cookieSafe(token []byte) bool {
	if len(token) == 0 || len(token) > maxCookieToken {
		return false
	}
	for _, c := range token {
		if c <= ' ' || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}
