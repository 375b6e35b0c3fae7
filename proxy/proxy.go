package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/nocrd/nocrd/internal/clock"
	"github.com/nocrd/nocrd/internal/lazydeadline"
	"github.com/nocrd/nocrd/internal/metrics"
)

// Endpoint is where a workspace's traffic goes and who owns it.
type Endpoint struct {
	// Addr is the pod's ip:port.
	Addr string
	// Owner is the workspace owner's subject.
	Owner string
}

// Resolver finds the endpoint of a workspace id. It answers *Error with
// status 404 for an unknown workspace and 503 for one not ready yet. id
// aliases the request's buffer and is valid only during the call: a
// Resolver that keeps it must copy it.
type Resolver interface {
	Resolve(ctx context.Context, id string) (Endpoint, error)
}

// Authorizer verifies a bearer token and returns its subject and its
// claims as compact JSON (nil when it has none to show). token is valid
// only during the call, like Resolver's id; claims is kept by the
// Authorizer and never modified by the proxy, which shows it to a Policy in
// HeaderClaims. Errors that implement Reason() string are counted in
// metrics under that reason.
type Authorizer interface {
	Authorize(ctx context.Context, token string) (subject string, claims []byte, err error)
}

// Options are the proxy's collaborators and behaviour.
type Options struct {
	// BaseURL is the path prefix the proxy is served under.
	BaseURL string
	// Authorizer, when set, requires a bearer token (Authorization header,
	// token query parameter or, with TokenCookie, the TokenCookie cookie)
	// whose subject owns the workspace.
	Authorizer Authorizer
	// TrustedProxies are the addresses of the proxies in front of nocrd
	// (an ingress, a load balancer) whose X-Forwarded-Proto and
	// X-Forwarded-Host say how the client addressed nocrd: on a request
	// from one of them, those go on to the workspace. From any other
	// client they are replaced by what nocrd saw.
	TrustedProxies []netip.Prefix
	// TokenCookie lets browsers use a workspace with its token: a top-level
	// navigation (GET, Sec-Fetch-Dest: document) that carries the token in
	// the query is redirected to the same address without it, and the
	// token goes into an HttpOnly cookie for that workspace's route, which
	// the proxy then reads and never forwards.
	TokenCookie bool
	// PassAuthorization gives the workspace its caller's verified token in
	// an Authorization header: the one the token came in, or, for a token
	// from the query or the cookie on a request without an Authorization
	// header, "Bearer <token>". By default the proxy sends none, so a
	// workspace can never replay its caller's token.
	PassAuthorization bool
	// SubjectHeader, when set, carries the verified subject to the
	// workspace. A client's own value of that header is always dropped.
	SubjectHeader string
	// KeepPrefix forwards the whole path, /route/<id> included, instead of
	// the path inside the workspace.
	KeepPrefix bool
	// ResourceMetadataPath, when set, is the path of the RFC 9728 metadata
	// named (with the request's scheme and host) in the WWW-Authenticate
	// challenge of 401 answers (RFC 9728 section 5.1).
	ResourceMetadataPath string
	// UpstreamTimeout bounds how long the proxy waits for the workspace to
	// send anything, headers or the next bytes of a body, as nginx's
	// proxy_read_timeout does (default 60 s). Streams that keep sending
	// are never cut.
	UpstreamTimeout time.Duration
	// DialTimeout bounds connecting to a workspace (default 5 s).
	DialTimeout time.Duration
	// ClientBodyTimeout, when set, bounds how long the client may stay
	// silent while it sends a request body, as nginx's
	// client_body_timeout does: past it the request is answered 408 and
	// the connection closed. A body that keeps coming is never cut.
	ClientBodyTimeout time.Duration
	// Policy, when set, decides on every request after authentication.
	Policy Policy
	// Metrics, when set, receives the proxy's metrics.
	Metrics *metrics.Registry
	Logger  *slog.Logger
}

// Proxy routes /route/<workspace-id>/<path> to the workspace's pod.
type Proxy struct {
	opts     Options
	base     []byte
	resolver Resolver
	// pools holds the keep-alive connections to each upstream address.
	pools   sync.Map  // string -> *pool
	scratch sync.Pool // *scratch
	streams sync.Pool
	// sweeper closes connections idle too long; started with the first
	// pool, stopped by Close.
	sweepOnce sync.Once
	stop      chan struct{}
	closeOnce sync.Once
	swept     sync.WaitGroup
	// upgraded holds the live WebSocket tunnels' connections and the
	// other client connections hijacked from fasthttp (rawConn of them:
	// fasthttp's own Close does nothing), so Close can end them.
	upgraded sync.Map // net.Conn -> struct{}
	m        proxyMetrics
}

// New returns a proxy resolving workspaces with r.
func New(r Resolver, opts Options) *Proxy {
	if opts.UpstreamTimeout == 0 {
		opts.UpstreamTimeout = 60 * time.Second
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	p := &Proxy{
		opts:     opts,
		base:     []byte(strings.TrimRight(opts.BaseURL, "/")),
		resolver: r,
		scratch:  sync.Pool{New: func() any { return &scratch{buf: make([]byte, 0, 1024)} }},
		stop:     make(chan struct{}),
	}
	p.streams = sync.Pool{New: func() any { return &bodyStream{p: p} }}
	p.m.register(opts.Metrics)
	return p
}

// scratch is a handler's pooled working memory.
type scratch struct {
	buf []byte
	// head is the request head sent upstream when appendHead builds it.
	head []byte
	// req is the request sent upstream. Between uses only its body is
	// reset: CopyTo resets the header, and setting the URI drops the
	// parsed one.
	req fasthttp.Request
	// up is what a Policy is handed, here so that handing it over does not
	// allocate.
	up Upstream
	// body wraps the client's body stream when ClientBodyTimeout is set.
	body lazydeadline.IdleReader
}

// b2s views b as a string without copying; the string must not outlive b.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// s2b views s as bytes without copying; they must not be written to.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// ServeFastHTTP proxies one request. It keeps nothing of ctx after it
// returns: a streamed response body is a bodyStream holding the upstream
// connection, which fasthttp closes when it has written it. The server
// should set StreamRequestBody, so that large bodies are not buffered,
// and DisablePreParseMultipartForm, or fasthttp hands on a multipart
// body parsed and serialised again, its parts reordered.
func (p *Proxy) ServeFastHTTP(ctx *fasthttp.RequestCtx) {
	route, perr := ParseRoute(ctx.Request.Header.RequestURI(), p.base)
	if perr != nil {
		p.fail(ctx, outcomeBadRequest, perr)
		return
	}
	var subject, claims, token []byte
	var from tokenSource
	if p.opts.Authorizer != nil {
		token, from = p.token(ctx, route.Query)
		if len(token) == 0 {
			p.m.authFailure(reasonMissing)
			p.challenge(ctx, false)
			p.fail(ctx, outcomeUnauthorized, errMissingToken)
			return
		}
		sub, cl, err := p.opts.Authorizer.Authorize(ctx, b2s(token))
		if err != nil {
			p.m.authFailure(reasonOf(err))
			p.challenge(ctx, true)
			if from == fromCookie {
				p.setTokenCookie(ctx, route, nil) // the browser stops sending it
			}
			p.fail(ctx, outcomeUnauthorized, errInvalidToken)
			return
		}
		subject, claims = unsafe.Slice(unsafe.StringData(sub), len(sub)), cl
	}
	ep, err := p.resolver.Resolve(ctx, b2s(route.ID))
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			pe = errResolve
			p.opts.Logger.Warn("resolve workspace", "id", string(route.ID), "err", err)
		}
		outcome := outcomeBadGateway
		switch pe.Status {
		case http.StatusNotFound:
			outcome = outcomeNotFound
		case http.StatusServiceUnavailable:
			outcome = outcomeNotReady
			ctx.Response.Header.Set("Retry-After", "2")
		}
		p.fail(ctx, outcome, pe)
		return
	}
	if p.opts.Authorizer != nil && b2s(subject) != ep.Owner {
		p.m.authFailure(reasonWrongOwner)
		p.fail(ctx, outcomeForbidden, errForbidden)
		return
	}
	who := caller{subject: subject, claims: claims, token: token, bearer: len(token) > 0 && from == fromHeader}
	if from == fromQuery && p.opts.TokenCookie && isNavigation(&ctx.Request.Header) && cookieSafe(token) {
		p.signIn(ctx, route, token)
		return
	}
	if isUpgrade(&ctx.Request.Header) {
		p.upgrade(ctx, ep.Addr, route, who, ep.Owner)
		return
	}

	sc := p.scratch.Get().(*scratch)
	defer p.scratch.Put(sc)
	req := &sc.req
	defer req.ResetBody() // before ctx's body stream goes back to fasthttp
	bp := &sc.buf
	var head []byte
	if directHead(&ctx.Request.Header) {
		// Nothing but the head to send: it is written out as it is built
		// (and as a Policy left it), without a fasthttp header to copy,
		// edit and serialise. req only carries the method.
		sc.head = p.appendHead(sc.head[:0], ctx, route, who, ep.Addr, bp)
		if p.opts.Policy != nil && !p.decide(ctx, sc, nil, route, who, ep.Owner) {
			return
		}
		head = sc.head
		req.Header.Reset()
		req.Header.SetMethodBytes(head[:bytes.IndexByte(head, ' ')])
	} else {
		ctx.Request.Header.CopyTo(&req.Header)
		if len(req.Header.Host()) == 0 {
			req.Header.Set("Host", ep.Addr) // an HTTP/1.0 client sent none
		}
		*bp = p.upstreamURI((*bp)[:0], route)
		req.SetRequestURIBytes(*bp)
		p.rewriteHeaders(ctx, &req.Header, route, who, bp)
		if p.opts.Policy != nil && !p.decide(ctx, sc, req, route, who, ep.Owner) {
			return
		}
		if cl := ctx.Request.Header.ContentLength(); cl > 0 || cl == -1 {
			if s := ctx.RequestBodyStream(); s != nil {
				// Also without a timeout: a body the client breaks off or
				// garbles is then told from a workspace's failure (400,
				// not 502).
				sc.body = lazydeadline.IdleReader{R: s, Conn: ctx.Conn(), Timeout: p.opts.ClientBodyTimeout}
				req.SetBodyStream(&sc.body, cl)
			} else {
				req.SetBodyRaw(ctx.Request.Body())
			}
		}
	}

	sent := clock.Mono() // one vDSO read, where time.Now makes two
	conn, skipBody, err := p.roundTrip(ep.Addr, req, head, &ctx.Response.Header, ctx.Conn(), sent)
	end := clock.Mono()
	if sc.body.Conn != nil {
		// The body has been sent, or has failed: the request is written
		// before its answer is read.
		bodyErr := sc.body.Err
		sc.body = lazydeadline.IdleReader{}
		if err != nil && bodyErr != nil {
			p.clientFailed(ctx, bodyErr)
			return
		}
	}
	p.m.upstream.Observe(end.Sub(sent).Seconds())
	if err == nil {
		p.scopeAnswer(ctx, &ctx.Response.Header, route, bp)
		if conn.early {
			err = p.answerEarly(ctx, conn, skipBody, bp)
		} else {
			err = p.respond(ctx, conn, skipBody, !req.Header.ConnectionClose(), bp, end)
		}
	}
	if err != nil {
		p.upstreamFailed(ctx, ep.Addr, err)
		return
	}
	p.m.request(outcomeProxied, ctx.Response.StatusCode())
}

// maxEarlyBody bounds the body of an answer a workspace gave before it
// took the whole request: answerEarly holds it whole.
const maxEarlyBody = 1 << 20

// answerEarly passes on the answer a workspace gave before it took the
// whole request (see upstreamConn.answeredEarly), whose head is in ctx's
// response. The workspace has closed the connection, so its whole answer
// is there to read; it goes to the client with Connection: close, as the
// rest of the client's body will never be read, from the hijacked
// connection, which is then half-closed and lingers (see linger). fasthttp
// would close it at once. answerEarly owns conn.
func (p *Proxy) answerEarly(ctx *fasthttp.RequestCtx, conn *upstreamConn, skipBody bool, bp *[]byte) error {
	defer conn.Close()
	out := &ctx.Response
	stripHopByHop(&out.Header, bp)
	if !skipBody {
		if err := out.ReadBody(conn.br, maxEarlyBody); err != nil {
			return err
		}
		out.Header.SetContentLength(len(out.Body())) // a chunked one too
	}
	out.SetConnectionClose()
	answer := out.Header.AppendBytes(nil)
	if !skipBody {
		answer = append(answer, out.Body()...)
	}
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		if _, err := c.Write(answer); err == nil {
			closeWrite(c)
			p.linger(c)
		}
	})
	return nil
}

// closeWrite half-closes a (hijacked) connection when it can, and reports
// whether it could: the peer reads the end of what was sent, however it
// is framed, and can still send.
func closeWrite(c net.Conn) bool {
	cw, ok := rawConn(c).(interface{ CloseWrite() error })
	if ok {
		_ = cw.CloseWrite()
	}
	return ok
}

// How long linger reads what a client still sends, in all and at most
// between two reads: nginx's lingering_time and lingering_timeout.
var (
	lingerTime    = 30 * time.Second
	lingerTimeout = 5 * time.Second
)

// linger serves a client connection, once the answer to a request whose
// body was not read to its end has gone out on it, by reading and dropping
// what the client still sends until it stops (lingerTimeout) or for
// lingerTime at most, as nginx's lingering_close does; fasthttp closes it
// after. Closed at once, it would answer the client's next bytes with a
// reset, and a client still sending its body may then never read the
// answer (Go's client reports its failed write instead).
func (p *Proxy) linger(c net.Conn) {
	p.upgraded.Store(rawConn(c), struct{}{}) // Close ends it
	defer p.upgraded.Delete(rawConn(c))
	buf := make([]byte, 16<<10)
	end := clock.Mono().Add(lingerTime)
	for {
		now := clock.Mono()
		if !now.Before(end) {
			return
		}
		d := now.Add(lingerTimeout)
		if d.After(end) {
			d = end
		}
		if c.SetReadDeadline(d) != nil {
			return
		}
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// upstreamFailed answers 504 when the workspace went silent, 499 (to
// nobody) when the client left while it was, and 502 for any other
// failure to get its response, saying whether the workspace could not be
// reached or answered with something other than an HTTP/1.x head.
func (p *Proxy) upstreamFailed(ctx *fasthttp.RequestCtx, addr string, err error) {
	ctx.Response.Reset()
	switch {
	case isTimeout(err):
		p.fail(ctx, outcomeTimeout, errTimeout)
		return
	case errors.Is(err, errClientGone):
		ctx.SetConnectionClose()
		p.fail(ctx, outcomeClientClosed, errClientClosed)
		return
	}
	p.opts.Logger.Debug("upstream request failed", "addr", addr, "err", err)
	var bad *answerError
	var large *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &large):
		p.fail(ctx, outcomeBadGateway, errAnswerTooLarge)
	case errors.As(err, &bad):
		p.fail(ctx, outcomeBadGateway, errAnswerNotHTTP)
	default:
		p.fail(ctx, outcomeBadGateway, errUnreachable)
	}
}

// clientFailed answers a request whose body the client stopped sending:
// 408 when it went silent past ClientBodyTimeout, 400 when its connection
// failed. Either way the connection is closed, as the rest of the body
// cannot be told from a next request.
func (p *Proxy) clientFailed(ctx *fasthttp.RequestCtx, err error) {
	ctx.Response.Reset()
	ctx.SetConnectionClose()
	if isTimeout(err) {
		p.fail(ctx, outcomeClientTimeout, errBodyTimeout)
		return
	}
	p.opts.Logger.Debug("reading the request body failed", "err", err)
	p.fail(ctx, outcomeBadRequest, errBodyRead)
}

// challenge sets the WWW-Authenticate header of a 401 (RFC 6750, with the
// RFC 9728 resource_metadata parameter).
func (p *Proxy) challenge(ctx *fasthttp.RequestCtx, hadToken bool) {
	v := `Bearer realm="nocrd"`
	if host := clientHost(ctx); p.opts.ResourceMetadataPath != "" && safeHost(host) {
		v += `, resource_metadata="` + string(clientProto(ctx)) + "://" + string(host) + p.opts.ResourceMetadataPath + `"`
	}
	if hadToken {
		v += `, error="invalid_token"`
	}
	ctx.Response.Header.Set("WWW-Authenticate", v)
}

// safeHost reports whether a Host header may be quoted into a challenge:
// letters, digits and the characters of names, IPv4 and IPv6 literals.
func safeHost(h []byte) bool {
	if len(h) == 0 || len(h) > 255 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// respond passes the upstream response, whose head roundTrip has read into
// ctx.Response, to the client: its body is read straight into the client's
// response when it is small and of known length, else it goes as a stream
// fasthttp reads while writing, so no large body is held whole and
// server-sent events go out as they arrive. conn is kept alive after it
// when reuse is set and the workspace did not ask to close it. respond
// owns conn; when it fails the caller answers instead.
func (p *Proxy) respond(ctx *fasthttp.RequestCtx, conn *upstreamConn, skipBody, reuse bool, bp *[]byte, now time.Time) error {
	out := &ctx.Response
	reuse = reuse && !out.Header.ConnectionClose()
	n := out.Header.ContentLength()
	stripHopByHop(&out.Header, bp) // also drops the upstream's Connection: close
	switch {
	case skipBody:
		// HEAD, 204 and 304 answers have no body; the workspace's
		// Content-Length stays as it sent it.
		out.SkipBody = true
		out.Header.SetContentLength(n)
		conn.done(reuse, now)
	case n >= 0 && n <= maxBufferedBody:
		out.Header.SetContentLength(n)
		if err := out.ReadBody(conn.br, 0); err != nil {
			_ = conn.Close()
			return err
		}
		conn.done(reuse, now)
	default:
		resp := fasthttp.AcquireResponse()
		resp.Header.SetContentLength(n)
		resp.StreamBody = true
		if err := resp.ReadBody(conn.br, 0); err != nil {
			fasthttp.ReleaseResponse(resp)
			_ = conn.Close()
			return err
		}
		bs := p.streams.Get().(*bodyStream)
		bs.conn, bs.r, bs.resp, bs.left = conn, resp.BodyStream(), resp, -1
		bs.close = !reuse || n == -2 // a body that ends with the connection
		if n >= 0 {
			bs.left = int64(n)
		} else if !ctx.Request.Header.IsHTTP11() {
			p.untilClose(ctx, bs)
			return nil
		} else {
			n = -1 // chunked, or until the upstream closes: re-framed as chunked
		}
		out.SetBodyStream(bs, n)
	}
	return nil
}

// untilClose sends a body of unknown length to an HTTP/1.0 client, which
// cannot read chunked framing (RFC 9112, section 6.1, forbids sending it
// Transfer-Encoding): the body goes as it comes, and the end of the
// connection ends it. fasthttp frames every body of unknown length as
// chunked, so the connection is hijacked to write the answer.
func (p *Proxy) untilClose(ctx *fasthttp.RequestCtx, body *bodyStream) {
	out := &ctx.Response
	out.Header.SetContentLength(-2) // neither Content-Length nor Transfer-Encoding
	out.SetConnectionClose()
	head := out.Header.AppendBytes(nil)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		defer body.Close()
		p.upgraded.Store(rawConn(c), struct{}{}) // Close ends it
		defer p.upgraded.Delete(rawConn(c))
		if _, err := c.Write(head); err == nil {
			_, _ = io.Copy(c, body)
		}
	})
}

// passedToken returns the verified token to send the workspace in an
// Authorization header of the proxy's making: with PassAuthorization, when
// the token came in the query or the cookie (a browser's) and the request
// has no Authorization header with a value (empty ones are replaced), so
// that the workspace gets its caller's token however the caller sent it.
// nil otherwise: a bearer header goes on as it came, and a header of
// another scheme is the workspace's own.
func (p *Proxy) passedToken(ctx *fasthttp.RequestCtx, who caller) []byte {
	if !p.opts.PassAuthorization || p.opts.Authorizer == nil || who.bearer || len(who.token) == 0 {
		return nil
	}
	for _, v := range ctx.Request.Header.PeekAll("Authorization") {
		if len(v) > 0 {
			return nil
		}
	}
	return who.token
}

// dropsAuthorization reports whether the client's Authorization fields are
// not forwarded: the proxy consumed them (they carried the token, and
// PassAuthorization is off), or it sends one of its own (passed).
func (p *Proxy) dropsAuthorization(who caller, passed []byte) bool {
	return p.opts.Authorizer != nil && (who.bearer && !p.opts.PassAuthorization || passed != nil)
}

// bearer returns the token of the request's (first) Authorization header
// when it is a bearer token, which the proxy reads before any other; nil
// otherwise.
func bearer(h *fasthttp.RequestHeader) []byte {
	if a := h.PeekCanonical(strAuthorization); len(a) > 7 && strings.EqualFold(b2s(a[:7]), "bearer ") {
		return bytes.TrimSpace(a[7:])
	}
	return nil
}

// tokenSource is where a request's token came from.
type tokenSource uint8

const (
	fromHeader tokenSource = iota
	fromQuery
	fromCookie
)

// token returns the bearer token of the request, from the Authorization
// header, else the token query parameter, else (with TokenCookie) the
// TokenCookie cookie, and where it came from; nil when there is none.
func (p *Proxy) token(ctx *fasthttp.RequestCtx, query []byte) ([]byte, tokenSource) {
	if t := bearer(&ctx.Request.Header); t != nil {
		return t, fromHeader
	}
	if len(query) > 0 {
		if t := ctx.QueryArgs().Peek("token"); len(t) > 0 {
			return t, fromQuery
		}
	}
	if p.opts.TokenCookie {
		// PeekAll leaves the cookies unparsed (see Fields).
		if t := cookieValue(ctx.Request.Header.PeekAll("Cookie"), TokenCookie); len(t) > 0 {
			return t, fromCookie
		}
	}
	return nil, fromHeader
}

// upstreamURI writes the path and query sent to the workspace: the route's
// path as the client sent it (or the whole path with KeepPrefix), and its
// query, with authentication without the token parameter, which is then
// the proxy's and never the workspace's. Without authentication the proxy
// consumes no token, and a token parameter is the workspace's own (the
// login link of a Jupyter server), as an Authorization header goes on.
func (p *Proxy) upstreamURI(dst []byte, r Route) []byte {
	if p.opts.KeepPrefix {
		dst = append(append(append(dst, p.base...), RoutePrefix...), r.ID...)
		if len(r.Path) > 1 || len(r.Query) == 0 {
			dst = append(dst, r.Path...)
		}
	} else {
		dst = append(dst, r.Path...)
	}
	if p.opts.Authorizer == nil {
		if len(r.Query) > 0 {
			dst = append(append(dst, '?'), r.Query...)
		}
		return dst
	}
	return appendQueryWithoutToken(dst, r.Query)
}

// appendQueryWithoutToken appends "?" and the query without its token
// parameters, or nothing when it had no other.
func appendQueryWithoutToken(dst, query []byte) []byte {
	if len(query) == 0 {
		return dst
	}
	start := len(dst)
	dst = append(dst, '?')
	for pair := range split(query, '&') {
		if isTokenParam(pair) {
			continue
		}
		if len(dst) > start+1 {
			dst = append(dst, '&')
		}
		dst = append(dst, pair...)
	}
	if len(dst) == start+1 {
		dst = dst[:start] // every parameter was the token
	}
	return dst
}

// isTokenParam reports whether a query pair (key, or key=value) is the
// token parameter: whether its key decodes to "token" as fasthttp's query
// arguments decode it, %XX escapes and '+' included, since token reads it
// from those. "%74oken=<jwt>" authenticates as "token=<jwt>" does, and must
// be stripped as surely.
func isTokenParam(pair []byte) bool {
	const name = "token"
	key := pair
	if i := bytes.IndexByte(pair, '='); i >= 0 {
		key = pair[:i]
	}
	n := 0 // bytes of name matched
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch c {
		case '+':
			c = ' '
		case '%':
			// As fasthttp: a valid escape is decoded, anything else is
			// taken as it is.
			if i+2 < len(key) {
				if h, l := unhex(key[i+1]), unhex(key[i+2]); h < 16 && l < 16 {
					c = h<<4 | l
					i += 2
				}
			}
		}
		if n == len(name) || c != name[n] {
			return false
		}
		n++
	}
	return n == len(name)
}

// unhex is the value of a hex digit, or 16 for any other byte.
func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 16
}

// rewriteHeaders prepares the upstream request's headers from one pass
// over a copy of them (see Fields): hop-by-hop headers and those the
// Connection header names go, and so do the token (unless it is passed
// on), and any subject, X-Nocrd-* or X-Forwarded-* header the client sent
// (see removeFields for how the order of the others is kept). Then
// X-Forwarded-For gets the client's address after the chain the client
// sent, and X-Forwarded-Proto, -Host and -Prefix are set. Most requests
// have few of these, and cost one scan and a deletion or two. buf is the
// handler's pooled scratch; nothing is allocated.
func (p *Proxy) rewriteHeaders(ctx *fasthttp.RequestCtx, h *fasthttp.RequestHeader, r Route, who caller, buf *[]byte) {
	subject := who.subject
	head := h.AppendBytes((*buf)[:0])
	var listsArr [2][]byte
	passed := p.passedToken(ctx, who)
	d := p.newDropper(p.dropsAuthorization(who, passed), listsArr[:0])
	kept := repeats{head: head}
	var dropped, priorFor, forListed, edit bool
	for k, v := range Fields(head) {
		switch {
		case d.changes(k, v):
			edit = true // changed by rewrite below
			kept.add(k)
			continue
		case is(k, "Connection"):
			d.lists = append(d.lists, v)
			for name := range commaList(v) {
				h.DelBytes(name)
				forListed = forListed || is(name, "X-Forwarded-For")
			}
		case is(k, "X-Forwarded-For"):
			priorFor = true
		case !d.dropOwn(k):
			kept.add(k)
			continue
		}
		h.DelBytes(k)
		dropped = true
	}
	if edit || dropped && kept.found {
		if err := rewrite(h, head, d.appendKept, nil, nil); err != nil && edit {
			// The token must not go on: then no cookie or Referer does.
			// (Otherwise, the fields are as fasthttp ordered them.)
			h.DelBytes(strCookie)
			h.DelBytes(strReferer)
		}
	}
	if passed != nil {
		v := append(append(head, "Bearer "...), passed...)
		h.SetCanonical(strAuthorization, v[len(head):])
	}
	if p.opts.SubjectHeader != "" && len(subject) > 0 {
		h.SetBytesV(p.opts.SubjectHeader, subject)
	}

	// Values are built after the copy, in the same buffer.
	out := p.appendForwardedFor(head, ctx, head, priorFor && !forListed)
	h.SetCanonical(strXForwardedFor, out[len(head):])
	h.SetCanonical(strXForwardedProto, p.forwardedProto(ctx))
	// An HTTP/1.0 request may come without a Host: then no
	// X-Forwarded-Host, rather than an empty one. (appendHead takes only
	// HTTP/1.1 requests, which fasthttp refuses without a Host.)
	if host := p.forwardedHost(ctx); len(host) > 0 {
		h.SetCanonical(strXForwardedHost, host)
	}
	out = p.appendForwardedPrefix(out[:len(head)], r)
	h.SetCanonical(strXForwardedPrefix, out[len(head):])
	*buf = out[:0]
}

// appendForwardedFor appends the X-Forwarded-For value sent upstream: the
// values of the client's own X-Forwarded-For fields in head (when prior:
// the client sent some, and not as hop-by-hop), then the client's address.
func (p *Proxy) appendForwardedFor(dst []byte, ctx *fasthttp.RequestCtx, head []byte, prior bool) []byte {
	start := len(dst)
	if prior {
		for k, v := range Fields(head) {
			if len(v) > 0 && is(k, "X-Forwarded-For") {
				dst = append(append(dst, v...), ", "...)
			}
		}
	}
	if ip, ok := netip.AddrFromSlice(ctx.RemoteIP()); ok {
		return ip.Unmap().AppendTo(dst)
	}
	if len(dst) > start {
		dst = dst[:len(dst)-2] // the last ", "
	}
	return dst
}

// forwardedProto is the X-Forwarded-Proto value: the client's scheme, as a
// trusted proxy in front says it (see clientProto), else as nocrd saw it.
func (p *Proxy) forwardedProto(ctx *fasthttp.RequestCtx) []byte {
	if p.trusted(ctx) {
		return clientProto(ctx)
	}
	return connProto(ctx)
}

// forwardedHost is the X-Forwarded-Host value: the host the client
// addressed, as a trusted proxy in front says it (see clientHost), else
// the request's Host.
func (p *Proxy) forwardedHost(ctx *fasthttp.RequestCtx) []byte {
	if p.trusted(ctx) {
		return clientHost(ctx)
	}
	return ctx.Host()
}

// trusted reports whether the client's connection comes from one of
// TrustedProxies.
func (p *Proxy) trusted(ctx *fasthttp.RequestCtx) bool {
	if len(p.opts.TrustedProxies) == 0 {
		return false
	}
	ip, ok := netip.AddrFromSlice(ctx.RemoteIP())
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, pr := range p.opts.TrustedProxies {
		if pr.Contains(ip) {
			return true
		}
	}
	return false
}

// clientProto is the scheme the client used to reach nocrd: the first
// value of X-Forwarded-Proto when it is http or https, else the
// connection's. It is what nocrd tells the client about its own address
// (the challenge's metadata URL, the cookie's Secure flag), as the MCP
// side's auth.Origin reads it: a client that lies misleads only itself.
// What goes to a workspace takes it only from TrustedProxies.
func clientProto(ctx *fasthttp.RequestCtx) []byte {
	v := ctx.Request.Header.Peek("X-Forwarded-Proto")
	if i := bytes.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	switch v = bytes.TrimSpace(v); {
	case bytes.EqualFold(v, strHTTPS):
		return strHTTPS
	case bytes.EqualFold(v, strHTTP):
		return strHTTP
	}
	return connProto(ctx)
}

// clientHost is the host the client addressed: the first value of
// X-Forwarded-Host when it is a plain host[:port] (safeHost), else the
// request's Host. See clientProto for who takes it from where.
func clientHost(ctx *fasthttp.RequestCtx) []byte {
	v := ctx.Request.Header.Peek("X-Forwarded-Host")
	if i := bytes.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	if v = bytes.TrimSpace(v); safeHost(v) {
		return v
	}
	return ctx.Host()
}

// connProto is the scheme of the client's connection to nocrd.
func connProto(ctx *fasthttp.RequestCtx) []byte {
	if ctx.IsTLS() {
		return strHTTPS
	}
	return strHTTP
}

// appendForwardedPrefix appends the X-Forwarded-Prefix value: the path
// the proxy removed.
func (p *Proxy) appendForwardedPrefix(dst []byte, r Route) []byte {
	return append(append(append(dst, p.base...), RoutePrefix...), r.ID...)
}

// appendHead appends the complete head of the request sent upstream for
// ctx's request, which has no body: the request line, the client's fields
// that rewriteHeaders keeps, in their order, then those the proxy sets.
// It does in one pass, straight into bytes, what the fasthttp header
// rewriteHeaders edits would produce; TestAppendHeadMatchesRewrite holds
// the two to the same result. buf is scratch space.
func (p *Proxy) appendHead(dst []byte, ctx *fasthttp.RequestCtx, r Route, who caller, addr string, buf *[]byte) []byte {
	subject := who.subject
	in := &ctx.Request.Header
	head := in.AppendBytes((*buf)[:0])
	*buf = head[:0]
	dst = append(append(dst, in.Method()...), ' ')
	dst = p.upstreamURI(dst, r)
	dst = append(dst, " HTTP/1.1\r\n"...)
	var listsArr [2][]byte
	passed := p.passedToken(ctx, who)
	d := p.newDropper(p.dropsAuthorization(who, passed), listsArr[:0])
	var priorFor, forListed, host, connection bool
	start := len(dst)
	for again := false; ; again = true {
		// The names a Connection field lists are dropped wherever they
		// are, before it too: a head that has one is written again once
		// all are known.
		dst, priorFor, host = dst[:start], false, false
		for k, v := range Fields(head) {
			if !again && is(k, "Connection") {
				connection = true
				d.lists = append(d.lists, v)
				for name := range commaList(v) {
					forListed = forListed || is(name, "X-Forwarded-For")
				}
			}
			if d.drop(k) {
				priorFor = priorFor || is(k, "X-Forwarded-For")
				continue
			}
			host = host || is(k, "Host")
			dst = d.appendForwarded(dst, k, v)
		}
		if again || !connection {
			break
		}
	}
	if !host {
		dst = appendField(dst, []byte("Host"), s2b(addr))
	}
	if passed != nil {
		dst = append(append(append(dst, "Authorization: Bearer "...), passed...), "\r\n"...)
	}
	if p.opts.SubjectHeader != "" && len(subject) > 0 {
		dst = appendCanonicalField(dst, s2b(p.opts.SubjectHeader), subject)
	}
	dst = append(dst, "X-Forwarded-For: "...)
	dst = p.appendForwardedFor(dst, ctx, head, priorFor && !forListed)
	dst = append(append(append(dst, "\r\nX-Forwarded-Proto: "...), p.forwardedProto(ctx)...), "\r\nX-Forwarded-Host: "...)
	dst = append(append(dst, p.forwardedHost(ctx)...), "\r\nX-Forwarded-Prefix: "...)
	dst = p.appendForwardedPrefix(dst, r)
	return append(dst, "\r\n\r\n"...)
}

// appendField appends the header line "name: value".
func appendField(dst, name, value []byte) []byte {
	return append(append(append(append(dst, name...), ": "...), value...), "\r\n"...)
}

// directHead reports whether a request goes upstream as a head appendHead
// builds: it has no body (a GET or HEAD without one) and is HTTP/1.1.
func directHead(h *fasthttp.RequestHeader) bool {
	if !h.IsHTTP11() || !(h.IsGet() || h.IsHead()) {
		return false
	}
	cl := h.ContentLength()
	return cl == 0 || cl == -2
}

// dropper decides which of the client's headers are not forwarded.
type dropper struct {
	p *Proxy
	// lists are the values of the request's Connection headers, whose
	// names are hop-by-hop too.
	lists [][]byte
	// auth drops the Authorization fields (see dropsAuthorization). An
	// Authorization header of another scheme, on a request whose token
	// came in the query or the cookie, is the workspace's own (Basic,
	// JupyterLab's "token") and goes on.
	auth bool
	// cookie takes the TokenCookie cookie out of the Cookie fields: the
	// proxy reads it, and it never goes on, whatever the token came in.
	cookie bool
	// referer takes the token parameter out of a Referer's query, with
	// authentication, where the parameter is the proxy's (see
	// upstreamURI).
	referer bool
}

// newDropper returns the dropper of p's requests, with lists (empty) for
// the values of their Connection fields; auth reports whether the
// Authorization fields go (see dropsAuthorization).
func (p *Proxy) newDropper(auth bool, lists [][]byte) dropper {
	return dropper{
		p: p, lists: lists,
		auth:    auth,
		cookie:  p.opts.Authorizer != nil && p.opts.TokenCookie,
		referer: p.opts.Authorizer != nil,
	}
}

// appendKept appends the field k: v as it is forwarded: nothing when drop
// reports k, else as appendForwarded writes it.
func (d *dropper) appendKept(dst, k, v []byte) []byte {
	if d.drop(k) {
		return dst
	}
	return d.appendForwarded(dst, k, v)
}

// appendForwarded appends the field k: v, one drop keeps, as it is
// forwarded: a Cookie field without the TokenCookie cookie (nothing when
// it held no other), a Referer without the token parameter in its query,
// and any other as it is.
func (d *dropper) appendForwarded(dst, k, v []byte) []byte {
	switch {
	case d.cookie && is(k, "Cookie"):
		return appendCookieField(dst, k, v, TokenCookie)
	case d.referer && is(k, "Referer"):
		return appendRefererField(dst, k, v)
	}
	return appendField(dst, k, v)
}

// changes reports whether appendForwarded changes the field k: v.
func (d *dropper) changes(k, v []byte) bool {
	return d.cookie && is(k, "Cookie") && hasCookie(v, TokenCookie) || d.referer && is(k, "Referer") && refersToken(v)
}

// refersToken reports whether a Referer value's query has a token
// parameter: the address of a page opened with ?token=, which a browser
// names in the requests the page makes.
func refersToken(v []byte) bool {
	_, q, _, ok := cutQuery(v)
	if !ok {
		return false
	}
	for pair := range split(q, '&') {
		if isTokenParam(pair) {
			return true
		}
	}
	return false
}

// appendRefererField appends the Referer field k: v without the token
// parameters of its query (see upstreamURI).
func appendRefererField(dst, k, v []byte) []byte {
	if !refersToken(v) {
		return appendField(dst, k, v)
	}
	head, q, frag, _ := cutQuery(v)
	dst = append(append(append(dst, k...), ": "...), head...)
	dst = appendQueryWithoutToken(dst, q)
	return append(append(dst, frag...), "\r\n"...)
}

// cutQuery splits a URL at its query: what comes before the "?", the
// query, and the fragment from its "#" on; ok is false when it has no
// query.
func cutQuery(u []byte) (head, query, frag []byte, ok bool) {
	i := bytes.IndexByte(u, '?')
	if i < 0 {
		return u, nil, nil, false
	}
	query = u[i+1:]
	if j := bytes.IndexByte(query, '#'); j >= 0 {
		query, frag = query[:j], query[j:]
	}
	return u[:i], query, frag, true
}

// dropOwn reports whether k is a header the proxy drops for itself: all
// but those a Connection header names. The headers the proxy sets go in
// every spelling sameName matches: X_Forwarded_User from a client must not
// reach a WSGI workspace as the X-Forwarded-User the proxy vouches for.
// Expect goes too, as nginx drops it: the front door has answered
// "100-continue" already, and a workspace told the client waits for its
// 100 may answer without reading the body and close the connection.
func (d *dropper) dropOwn(k []byte) bool {
	return isHopByHop(k) || IsReserved(k) || d.auth && is(k, "Authorization") || is(k, "Expect") ||
		d.p.opts.SubjectHeader != "" && sameName(k, d.p.opts.SubjectHeader) || isForwarded(k)
}

// drop reports whether k is not forwarded.
func (d *dropper) drop(k []byte) bool {
	if d.dropOwn(k) {
		return true
	}
	for _, l := range d.lists {
		for name := range commaList(l) {
			if len(name) == len(k) && strings.EqualFold(b2s(name), b2s(k)) {
				return true
			}
		}
	}
	return false
}

// pool returns the connection pool of an upstream address.
func (p *Proxy) pool(addr string) *pool {
	if pl, ok := p.pools.Load(addr); ok {
		return pl.(*pool)
	}
	p.sweepOnce.Do(func() {
		p.swept.Add(1)
		go p.sweep()
	})
	pl, _ := p.pools.LoadOrStore(addr, &pool{addr: addr})
	return pl.(*pool)
}

// sweep closes idle connections that outlived maxIdleTime until Close.
func (p *Proxy) sweep() {
	defer p.swept.Done()
	t := time.NewTicker(maxIdleTime / 3)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.pools.Range(func(_, pl any) bool {
				pl.(*pool).sweep(now)
				return true
			})
		}
	}
}

// Forget closes the idle connections to an upstream address and drops its
// pool, for when the pod behind it is gone; connections in use close when
// their response ends.
func (p *Proxy) Forget(addr string) {
	if pl, ok := p.pools.LoadAndDelete(addr); ok {
		pl.(*pool).close()
	}
}

// Close drops every upstream client and its idle connections, and ends
// every upgraded connection.
func (p *Proxy) Close() {
	p.closeOnce.Do(func() { close(p.stop) })
	p.swept.Wait()
	p.pools.Range(func(addr, _ any) bool {
		p.Forget(addr.(string))
		return true
	})
	p.upgraded.Range(func(c, _ any) bool {
		_ = c.(net.Conn).Close()
		return true
	})
}

// fail answers with e and counts the outcome.
func (p *Proxy) fail(ctx *fasthttp.RequestCtx, o outcome, e *Error) {
	e.Answer(ctx)
	p.m.request(o, e.Status)
}
