package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"iter"
	"strings"

	"github.com/valyala/fasthttp"
)

// Fields iterates over the header fields of head, a request head as
// RequestHeader.AppendBytes writes it: a request line, "Name: value"
// lines and an empty line.
//
// It is how the proxy, and a Policy, should look at every header of a
// request it forwards. RequestHeader.All (and VisitAll, PeekKeys, Len)
// first parses the Cookie headers, after which fasthttp writes them back
// merged into one and with the quotes around values dropped, so a request
// that was only looked at would no longer be forwarded as it came.
// AppendBytes writes the header as it would be sent and changes nothing;
// since head is a copy, h may be changed while head is scanned.
func Fields(head []byte) iter.Seq2[[]byte, []byte] {
	return func(yield func(name, value []byte) bool) {
		i := bytes.IndexByte(head, '\n') // the end of the request line
		if i < 0 {
			return
		}
		for rest := head[i+1:]; ; {
			j := bytes.IndexByte(rest, '\n')
			if j < 0 {
				return // a truncated head
			}
			line := rest[:j]
			rest = rest[j+1:]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			if len(line) == 0 {
				return // the empty line that ends the head
			}
			k := bytes.IndexByte(line, ':')
			if k <= 0 {
				continue
			}
			v := line[k+1:]
			for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
				v = v[1:]
			}
			if !yield(line[:k], v) {
				return
			}
		}
	}
}

// hasField reports whether head, as Fields reads it, has a field named
// name (as sameName compares them; name holds no colon), as looking at
// every name Fields yields would, with less work per line: a field's name
// is its line up to the first colon, so a line can hold name only when
// its byte at len(name) is a colon, and only then are the names compared.
func hasField(head, name []byte) bool {
	n := len(name)
	i := bytes.IndexByte(head, '\n') // the end of the request line
	for i >= 0 {
		line := head[i+1:]
		j := bytes.IndexByte(line, '\n')
		if j < 0 {
			return false // a truncated head
		}
		line = line[:j]
		if m := len(line); m > 0 && line[m-1] == '\r' {
			line = line[:m-1]
		}
		if len(line) == 0 {
			return false // the empty line that ends the head
		}
		if len(line) > n && line[n] == ':' && sameName(line[:n], b2s(name)) {
			return true
		}
		i += j + 1
	}
	return false
}

// isHopByHop reports whether name, in any case, is a header that describes
// one connection, not the message (RFC 9110 section 7.6.1); they are never
// forwarded.
func isHopByHop(name []byte) bool {
	var want string
	switch len(name) {
	case 2:
		want = "Te"
	case 7:
		want = "Trailer"
		if name[0]|0x20 == 'u' {
			want = "Upgrade"
		}
	case 10:
		want = "Keep-Alive"
		if name[0]|0x20 == 'c' {
			want = "Connection"
		}
	case 16:
		want = "Proxy-Connection"
	case 17:
		want = "Transfer-Encoding"
	case 18:
		want = "Proxy-Authenticate"
	case 19:
		want = "Proxy-Authorization"
	default:
		return false
	}
	return strings.EqualFold(b2s(name), want)
}

// is reports whether name is want in any case.
func is(name []byte, want string) bool {
	return len(name) == len(want) && strings.EqualFold(b2s(name), want)
}

// sameName reports whether name is want in any case and with any of its
// '-' written as '_' or the other way round. CGI, and the WSGI, PHP and
// Rack servers after it, turn both into '_' (X_Forwarded_User and
// X-Forwarded-User are both HTTP_X_FORWARDED_USER to the application), so
// a header the proxy (or a policy) sets on behalf of the caller's identity
// is trusted only if every spelling of it the client sent is removed, not
// the one spelling alone (CVE-2025-64484 is this hole in oauth2-proxy).
func sameName(name []byte, want string) bool {
	// The length check inlines at the call site: most names are ruled out
	// by it without a call.
	return len(name) == len(want) && sameNameFold(name, want)
}

// sameNameFold is sameName for name and want of the same length.
func sameNameFold(name []byte, want string) bool {
	for i := 0; i < len(name); i++ {
		if c, w := name[i], want[i]; c != w && foldName(c) != foldName(w) {
			return false
		}
	}
	return true
}

// foldName maps a header name's byte to the one sameName compares: lower
// case, and '-' for '_'.
func foldName(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + ('a' - 'A')
	case c == '_':
		return '-'
	}
	return c
}

// isForwarded reports whether name is, as sameName compares, one of the
// X-Forwarded-* headers the proxy sets on every request. The length check
// inlines at the call site, as sameName's does.
func isForwarded(name []byte) bool {
	return len(name) >= len("X-Forwarded-For") && len(name) <= len("X-Forwarded-Prefix") && isForwardedFold(name)
}

// isForwardedFold is isForwarded for a name of a possible length.
func isForwardedFold(name []byte) bool {
	var want string
	switch len(name) {
	case 15:
		want = "X-Forwarded-For"
	case 16:
		want = "X-Forwarded-Host"
	case 17:
		want = "X-Forwarded-Proto"
	case 18:
		want = "X-Forwarded-Prefix"
	default:
		return false
	}
	return sameNameFold(name, want)
}

// IsReserved reports whether name starts with HeaderPrefix, in any case
// and with '_' for '-' (see sameName): a header nocrd owns, never
// forwarded.
func IsReserved(name []byte) bool {
	return len(name) >= len(HeaderPrefix) && sameName(name[:len(HeaderPrefix)], HeaderPrefix)
}

// split iterates over the parts of v between the bytes sep, as they are,
// empty ones included.
func split(v []byte, sep byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for len(v) > 0 {
			part := v
			if i := bytes.IndexByte(v, sep); i >= 0 {
				part, v = v[:i], v[i+1:]
			} else {
				v = nil
			}
			if !yield(part) {
				return
			}
		}
	}
}

// commaList iterates over the elements of a comma-separated list, as a
// Connection header holds, trimmed, skipping empty ones.
func commaList(list []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for name := range split(list, ',') {
			if name = bytes.TrimSpace(name); len(name) > 0 && !yield(name) {
				return
			}
		}
	}
}

// stripHopByHop removes from a response header the hop-by-hop headers and
// those its Connection header names. The common case, a response with
// none, costs one pass over the header and no deletion. buf is scratch
// space: the names are copied there because deleting moves the header's
// bytes.
func stripHopByHop(h *fasthttp.ResponseHeader, buf *[]byte) {
	names := (*buf)[:0]
	for k, v := range h.All() { // ResponseHeader.All changes nothing
		if !isHopByHop(k) {
			continue
		}
		names = append(append(names, k...), ',')
		if is(k, "Connection") {
			names = append(append(names, v...), ',')
		}
	}
	*buf = names
	for name := range commaList(names) {
		h.DelBytes(name)
	}
}

// Canonical names of the headers the proxy sets, for SetCanonical.
var (
	strXForwardedFor    = []byte("X-Forwarded-For")
	strXForwardedProto  = []byte("X-Forwarded-Proto")
	strXForwardedHost   = []byte("X-Forwarded-Host")
	strXForwardedPrefix = []byte("X-Forwarded-Prefix")
	strAuthorization    = []byte("Authorization")
	strCookie           = []byte("Cookie")
	strSetCookie        = []byte("Set-Cookie")
	strReferer          = []byte("Referer")
	strConnection       = []byte("Connection")
	strUpgrade          = []byte("Upgrade")
	strHTTP             = []byte("http")
	strHTTPS            = []byte("https")
)

// removeFields deletes from h every header field whose name drop reports,
// reading the fields from head, h's serialised copy, and keeps the order of
// the fields left (see repeats). It reports whether it dropped anything.
func removeFields(h *fasthttp.RequestHeader, head []byte, drop func(name []byte) bool) bool {
	kept := repeats{head: head}
	dropped := false
	for k := range Fields(head) {
		if drop(k) {
			h.DelBytes(k)
			dropped = true
		} else {
			kept.add(k)
		}
	}
	if dropped && kept.found {
		// Should it fail, the fields are gone all the same, in fasthttp's
		// order.
		_ = reparse(h, head, drop, nil, nil)
	}
	return dropped
}

// repeats notices a header name seen twice. fasthttp deletes a field by
// moving the last one into its place, which can put a later line of a
// repeated name (two Cookie or Accept lines) before an earlier one, and
// RFC 9110 section 5.3 forbids a proxy to reorder those. So after
// deleting by name, a header whose kept fields repeat a name is parsed
// again (reparse); for nearly every request no name repeats, and
// deleting by name moves only fields whose relative order means nothing.
type repeats struct {
	// head holds every name added; at the offset and length of each.
	head  []byte
	at    [16]uint32
	n     int
	found bool
}

// add records name, a field kept; name must be a slice of r.head.
func (r *repeats) add(name []byte) {
	if r.found {
		return
	}
	if r.n == len(r.at) {
		r.found = true // too many to compare: take the careful way
		return
	}
	off := cap(r.head) - cap(name)
	for _, at := range r.at[:r.n] {
		if int(at&0xffff) == len(name) {
			s := r.head[at>>16:][:len(name)]
			if s[0]|0x20 == name[0]|0x20 && strings.EqualFold(b2s(s), b2s(name)) {
				r.found = true
				return
			}
		}
	}
	if off > 0xffff || len(name) > 0xffff || off < 0 {
		r.found = true
		return
	}
	r.at[r.n] = uint32(off)<<16 | uint32(len(name))
	r.n++
}

// reparse makes h the request head in head without the fields drop
// reports, with the field name: value added at the end when name is not
// nil, parsed as fasthttp parses a request from the wire. It is the slow,
// exact way to edit a header (it allocates), taken only when fasthttp's
// own setters would reorder fields or rewrite cookies. On an error h is
// left as it was.
func reparse(h *fasthttp.RequestHeader, head []byte, drop func(name []byte) bool, name, value []byte) error {
	return rewrite(h, head, func(dst, k, v []byte) []byte {
		if drop != nil && drop(k) {
			return dst
		}
		return appendField(dst, k, v)
	}, name, value)
}

// rewrite is reparse with each field of head written by appendKept, which
// appends it as it is to be sent, changed, or not at all.
func rewrite(h *fasthttp.RequestHeader, head []byte, appendKept func(dst, k, v []byte) []byte, name, value []byte) error {
	line := bytes.IndexByte(head, '\n') + 1
	out := make([]byte, 0, len(head)+len(name)+len(value)+4)
	out = append(out, head[:line]...)
	for k, v := range Fields(head) {
		out = appendKept(out, k, v)
	}
	if name != nil {
		out = appendField(out, name, value)
	}
	out = append(out, "\r\n"...)
	var parsed fasthttp.RequestHeader
	if err := parsed.Read(bufio.NewReaderSize(bytes.NewReader(out), len(out)+16)); err != nil {
		return fmt.Errorf("reparse request head: %w", err)
	}
	parsed.CopyTo(h)
	return nil
}
