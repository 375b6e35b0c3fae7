package proxy

import (
	"bytes"
	"net/http"
	"strings"
)

// RoutePrefix starts every proxied path, under BASE_URL.
const RoutePrefix = "/route/"

// maxIDLen is the longest workspace id (a label value).
const maxIDLen = 63

// Route is a parsed /route/<workspace-id>/<path> request target. Its
// slices alias the request's bytes and are valid only while it is handled.
type Route struct {
	// ID is the workspace id.
	ID []byte
	// Path is what follows the id, starting with "/" ("/" when empty), still
	// percent-encoded exactly as the client sent it.
	Path []byte
	// Query is the raw query string without "?", or nil.
	Query []byte
}

// ParseRoute parses the raw request URI (as sent, not normalized) of a
// proxied request. base is BASE_URL without a trailing slash. It refuses,
// with a *Error of status 400, any target whose meaning could differ between
// nocrd and the workspace's server: dot segments, percent-encoded dots,
// slashes or backslashes, backslashes, NULs and empty segments. It does not
// allocate.
func ParseRoute(requestURI, base []byte) (Route, *Error) {
	var r Route
	uri := OriginForm(requestURI)
	if i := bytes.IndexByte(uri, '#'); i >= 0 {
		uri = uri[:i]
	}
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		r.Query = uri[i+1:]
		uri = uri[:i]
	}
	if !bytes.HasPrefix(uri, base) || !bytes.HasPrefix(uri[len(base):], []byte(RoutePrefix)) {
		return r, errNotRoute
	}
	rest := uri[len(base)+len(RoutePrefix):]
	end := bytes.IndexByte(rest, '/')
	if end < 0 {
		end = len(rest)
	}
	r.ID = rest[:end]
	if !validID(r.ID) {
		return r, errBadID
	}
	r.Path = rest[end:]
	if len(r.Path) == 0 {
		r.Path = slash
	}
	if e := checkPath(r.Path); e != nil {
		return r, e
	}
	return r, nil
}

// OriginForm returns the path and query of a request target: the target
// itself, or the part after the authority of one in absolute-form
// (http://host/path?query), which RFC 9112 section 3.2.2 requires a
// server to accept as well. An absolute target without a path is "/".
func OriginForm(target []byte) []byte {
	if len(target) == 0 || target[0] == '/' {
		return target
	}
	rest, ok := cutScheme(target)
	if !ok {
		return target // "*" or garbage: no route
	}
	if i := bytes.IndexByte(rest, '/'); i >= 0 && !bytes.ContainsAny(rest[:i], "?#") {
		return rest[i:]
	}
	return slash
}

// cutScheme returns what follows "http://" or "https://", in any case, in
// u.
func cutScheme(u []byte) ([]byte, bool) {
	for _, s := range [...]string{"http://", "https://"} {
		if len(u) >= len(s) && strings.EqualFold(b2s(u[:len(s)]), s) {
			return u[len(s):], true
		}
	}
	return nil, false
}

var (
	slash       = []byte("/")
	errNotRoute = &Error{Status: http.StatusNotFound, Detail: "not a /route/<workspace-id>/ path"}
	errBadID    = &Error{Status: http.StatusBadRequest, Detail: "the workspace id must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"}
	errBadPath  = &Error{Status: http.StatusBadRequest, Detail: "the path must not contain dot segments, encoded slashes or dots, backslashes, NUL or empty segments"}
)

// validID accepts what a Kubernetes label value accepts.
func validID(id []byte) bool {
	if len(id) == 0 || len(id) > maxIDLen || !alnum(id[0]) || !alnum(id[len(id)-1]) {
		return false
	}
	for _, c := range id {
		if !alnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func alnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// checkPath refuses paths that servers may resolve differently.
func checkPath(p []byte) *Error {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '\\', 0:
			return errBadPath
		case '%':
			if i+2 >= len(p) {
				return errBadPath
			}
			h, l := lower(p[i+1]), lower(p[i+2])
			// %2e (.), %2f (/), %5c (\), %00 (NUL) change what the path means.
			if h == '2' && (l == 'e' || l == 'f') || h == '5' && l == 'c' || h == '0' && l == '0' {
				return errBadPath
			}
		case '/':
			seg := p[i+1:]
			if j := bytes.IndexByte(seg, '/'); j >= 0 {
				seg = seg[:j]
				if j == 0 {
					return errBadPath // "//"
				}
			}
			if len(seg) == 1 && seg[0] == '.' || len(seg) == 2 && seg[0] == '.' && seg[1] == '.' {
				return errBadPath
			}
		}
	}
	return nil
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
