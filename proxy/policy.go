package proxy

import (
	"bytes"
	"context"
	"net"

	"github.com/valyala/fasthttp"

	"github.com/nocrd/nocrd/internal/httpsyntax"
)

// Policy decides whether a request goes on to its workspace. The proxy
// calls it after authentication, ownership and resolution, with the request
// about to be sent upstream (the path inside the workspace, the credentials
// the proxy consumed already removed) and what the proxy established about
// it in info, which a Policy shows its rules as the headers HeaderSubject,
// HeaderClaims, HeaderWorkspace and HeaderOwner. Decide may change the
// method, the URI and the headers through req, which keeps what the proxy
// promises of forwarded headers (see Upstream). It returns false after
// writing its answer (status, headers, body) into resp. An error is a
// policy that failed: the proxy answers 403 and forwards nothing.
type Policy interface {
	Decide(ctx context.Context, req *Upstream, info RouteInfo, resp *fasthttp.Response) (next bool, err error)
}

// RouteInfo is what the proxy established about a request before its
// Policy. The slices alias the proxy's buffers: valid only during Decide.
type RouteInfo struct {
	Client net.Addr
	// Subject and Claims (compact JSON) are the verified token's; both are
	// empty without authentication.
	Subject, Claims []byte
	Workspace       []byte
	Owner           string
}

// Headers a Policy shows for RouteInfo. No header starting with
// HeaderPrefix is ever forwarded, whoever set it.
const (
	HeaderSubject = "X-Nocrd-Subject"
	// HeaderClaims is the verified token's claims as compact JSON.
	HeaderClaims    = "X-Nocrd-Claims"
	HeaderWorkspace = "X-Nocrd-Workspace"
	HeaderOwner     = "X-Nocrd-Owner"
	// HeaderPrefix starts every header name nocrd reserves.
	HeaderPrefix = "X-Nocrd-"
)

// Upstream is the request a Policy may change before the proxy sends it.
// When a Policy is called its headers are already what the proxy forwards:
// no hop-by-hop header, no reserved (HeaderPrefix) one, the consumed
// credentials gone, X-Forwarded-* set. Its setters keep it so: they refuse,
// and report false for, a header named with HeaderPrefix, a hop-by-hop
// header, Content-Length (the proxy frames the body), a name that is not
// an RFC 9110 token and a value holding CR, LF or NUL. The proxy therefore
// needs no second look at the headers after the Policy, whatever it did.
// An Upstream is valid only during Decide.
//
// The request is either a fasthttp request (req) or, for a request without
// a body, the head appendHead built (head, when req is nil), which is
// edited in place and written upstream as it is left. Both take the same
// writes alike (TestUpstreamWrites): names are canonicalised as fasthttp
// does, and the other fields keep their order.
type Upstream struct {
	req  *fasthttp.Request
	head *[]byte
	buf  []byte
}

// NewUpstream hands req to a Policy called outside the proxy, as a dry run
// of the policies does; the proxy makes its own.
func NewUpstream(req *fasthttp.Request) *Upstream { return &Upstream{req: req} }

// Method returns the request's method.
func (u *Upstream) Method() []byte {
	if u.req == nil {
		line := requestLine(*u.head)
		return line[:bytes.IndexByte(line, ' ')]
	}
	return u.req.Header.Method()
}

// SetMethod replaces the method, which must be a token.
func (u *Upstream) SetMethod(method []byte) bool {
	if len(method) == 0 || !httpsyntax.IsToken(method) {
		return false
	}
	if u.req == nil {
		h := *u.head
		u.buf = append(append(u.buf[:0], method...), h[bytes.IndexByte(h, ' '):]...)
		*u.head, u.buf = u.buf, h
		return true
	}
	u.req.Header.SetMethodBytes(method)
	return true
}

// URI returns the path and query sent to the workspace.
func (u *Upstream) URI() []byte {
	if u.req == nil {
		line := requestLine(*u.head)
		return line[bytes.IndexByte(line, ' ')+1 : bytes.LastIndexByte(line, ' ')]
	}
	return u.req.Header.RequestURI()
}

// SetURI replaces the path and query: visible ASCII starting with "/".
func (u *Upstream) SetURI(uri []byte) bool {
	if len(uri) == 0 || uri[0] != '/' || !httpsyntax.IsVisibleASCII(uri) {
		return false
	}
	if u.req == nil {
		h := *u.head
		line := requestLine(h)
		u.buf = append(append(append(u.buf[:0], line[:bytes.IndexByte(line, ' ')+1]...), uri...), h[bytes.LastIndexByte(line, ' '):]...)
		*u.head, u.buf = u.buf, h
		return true
	}
	u.req.SetRequestURIBytes(uri)
	return true
}

// HasBody reports whether the request has a body (a Content-Length above
// zero, or chunked), which the proxy streams to the workspace as it comes:
// a Policy cannot read it.
func (u *Upstream) HasBody() bool {
	if u.req == nil {
		return false // a head alone (see directHead)
	}
	cl := u.req.Header.ContentLength()
	return cl > 0 || cl == -1
}

// AppendHead appends the request head as it would be sent (request line,
// header lines, empty line); read its headers with Fields.
func (u *Upstream) AppendHead(dst []byte) []byte {
	if u.req == nil {
		return append(dst, *u.head...)
	}
	return u.req.Header.AppendBytes(dst)
}

// SetHeader replaces every value of the header name with value. The
// values it replaces are those of every spelling of name sameName matches
// (X_User for X-User): a header a policy sets, such as the caller's
// identity, must be the only one of its name the workspace reads.
func (u *Upstream) SetHeader(name, value []byte) bool {
	if !policyMayWrite(name) || !httpsyntax.IsFieldValue(value) {
		return false
	}
	same := func(k []byte) bool { return sameName(k, b2s(name)) }
	if u.req == nil {
		if hasField(*u.head, name) {
			u.edit(same, name, value)
			return true
		}
		h := *u.head // a new name: added at the end, as AddHeader does
		*u.head = append(appendCanonicalField(h[:len(h)-2], name, value), "\r\n"...)
		return true
	}
	// fasthttp would rewrite the cookies, or leave the other values or
	// spellings: then the head is rewritten from its serialisation.
	if is(name, "Cookie") || len(u.req.Header.PeekAll(b2s(name))) > 1 {
		u.buf = u.req.Header.AppendBytes(u.buf[:0])
	} else if !u.otherSpelling(name) {
		u.req.Header.SetBytesKV(name, value)
		return true
	}
	return reparse(&u.req.Header, u.buf, same, name, value) == nil
}

// otherSpelling reports whether the fasthttp request has a header that
// sameName takes for name but fasthttp does not: one of its '-' written as
// '_', or the other way round. When it reports true, u.buf holds the
// request's head as AppendBytes writes it.
func (u *Upstream) otherSpelling(name []byte) bool {
	if bytes.IndexByte(name, '-') < 0 && bytes.IndexByte(name, '_') < 0 {
		return false
	}
	u.buf = u.req.Header.AppendBytes(u.buf[:0])
	for k := range Fields(u.buf) {
		if sameName(k, b2s(name)) && !is(k, b2s(name)) {
			return true
		}
	}
	return false
}

// AddHeader adds a value to the header name, after those it has.
func (u *Upstream) AddHeader(name, value []byte) bool {
	if !policyMayWrite(name) || !httpsyntax.IsFieldValue(value) {
		return false
	}
	if u.req == nil {
		h := *u.head // before the empty line that ends it
		*u.head = append(appendCanonicalField(h[:len(h)-2], name, value), "\r\n"...)
		return true
	}
	if is(name, "Cookie") {
		// fasthttp would parse the cookies and send them merged into one.
		u.buf = u.req.Header.AppendBytes(u.buf[:0])
		return reparse(&u.req.Header, u.buf, nil, name, value) == nil
	}
	u.req.Header.AddBytesKV(name, value)
	return true
}

// DelHeader removes the header name, in every spelling sameName matches
// (see SetHeader), keeping the others in their order.
func (u *Upstream) DelHeader(name []byte) bool {
	if !policyMayWrite(name) {
		return false
	}
	same := func(k []byte) bool { return sameName(k, b2s(name)) }
	if u.req == nil {
		u.edit(same, nil, nil)
		return true
	}
	u.buf = u.req.Header.AppendBytes(u.buf[:0])
	removeFields(&u.req.Header, u.buf, same)
	return true
}

// edit rewrites the head of a request without a body without the fields
// drop reports, and with the field name: value at the end when name is not
// nil.
func (u *Upstream) edit(drop func(name []byte) bool, name, value []byte) {
	h := *u.head
	line := requestLine(h)
	out := append(u.buf[:0], line...)
	out = append(out, "\r\n"...)
	for k, v := range Fields(h) {
		if !drop(k) {
			out = appendField(out, k, v)
		}
	}
	if name != nil {
		out = appendCanonicalField(out, name, value)
	}
	*u.head, u.buf = append(out, "\r\n"...), h
}

// requestLine returns the request line of head, without its line end.
func requestLine(head []byte) []byte {
	line := head[:bytes.IndexByte(head, '\n')]
	return bytes.TrimSuffix(line, []byte("\r"))
}

// appendCanonicalField appends the header line "name: value" with name
// written as fasthttp writes a header name it sets: a capital at the start
// and after each "-", the rest in lower case.
func appendCanonicalField(dst, name, value []byte) []byte {
	start := len(dst)
	dst = append(dst, name...)
	upper := true
	for i, c := range dst[start:] {
		switch {
		case upper && 'a' <= c && c <= 'z':
			dst[start+i] = c - ('a' - 'A')
		case !upper && 'A' <= c && c <= 'Z':
			dst[start+i] = c + ('a' - 'A')
		}
		upper = c == '-'
	}
	return append(append(append(dst, ": "...), value...), "\r\n"...)
}

// policyMayWrite reports whether a Policy may set, add or remove the
// header name.
func policyMayWrite(name []byte) bool {
	return len(name) > 0 && httpsyntax.IsToken(name) && !IsReserved(name) && !isHopByHop(name) && !is(name, "Content-Length")
}

// caller is who a request comes from, once authenticated: all empty
// without authentication.
type caller struct {
	subject, claims []byte
	// token is the verified token; bearer reports that it came in the
	// Authorization header, which the proxy therefore consumed.
	token  []byte
	bearer bool
}

// decide runs the route policy on the upstream request. It returns false
// when the request must not go on: the client has its answer.
//
// The request is req, or when req is nil the head in sc.head.
func (p *Proxy) decide(ctx *fasthttp.RequestCtx, sc *scratch, req *fasthttp.Request, route Route, who caller, owner string) bool {
	info := RouteInfo{Client: ctx.RemoteAddr(), Subject: who.subject, Claims: who.claims, Workspace: route.ID, Owner: owner}
	sc.up.req, sc.up.head = req, nil
	if req == nil {
		sc.up.head = &sc.head
	}
	next, err := p.opts.Policy.Decide(ctx, &sc.up, info, &ctx.Response)
	sc.up.req, sc.up.head = nil, nil
	switch {
	case err != nil:
		ctx.Response.Reset() // drop whatever the failed policy wrote
		p.opts.Logger.Debug("route policy failed", "id", string(route.ID), "err", err)
		p.fail(ctx, outcomePolicyFailed, errPolicyFailed)
		return false
	case !next:
		p.m.request(outcomePolicyDenied, ctx.Response.StatusCode())
		return false
	}
	return true
}
