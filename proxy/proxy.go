package proxy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Endpoint is where a workspace's traffic goes and who owns it.
type Endpoint struct {
	// Addr is the pod's ip:port.
	Addr string
	// Owner is the workspace owner's subject.
	Owner string
}

// Resolver finds the endpoint of a workspace id. It answers *Error with
// status 404 for an unknown workspace and 503 for one not ready yet.
type Resolver interface {
	Resolve(ctx context.Context, id string) (Endpoint, error)
}

// Authorizer verifies a bearer token and returns its subject.
type Authorizer interface {
	Authorize(ctx context.Context, token string) (subject string, err error)
}

// Options are the proxy's collaborators and behaviour.
type Options struct {
	// BaseURL is the path prefix the proxy is served under.
	BaseURL string
	// Authorizer, when set, requires a bearer token (Authorization header or
	// token query parameter) whose subject owns the workspace.
	Authorizer Authorizer
	// PassAuthorization forwards the Authorization header the proxy
	// verified; by default it is removed, so a workspace can never replay
	// its caller's token.
	PassAuthorization bool
	// UpstreamTimeout bounds each request to a workspace (default 60 s).
	UpstreamTimeout time.Duration
	Logger          *slog.Logger
}

// Proxy routes /route/<workspace-id>/<path> to the workspace's pod.
type Proxy struct {
	opts     Options
	base     []byte
	resolver Resolver
	// clients holds one keep-alive client per upstream address.
	clients sync.Map // string -> *fasthttp.HostClient
	bufs    sync.Pool
}

// New returns a proxy resolving workspaces with r.
func New(r Resolver, opts Options) *Proxy {
	if opts.UpstreamTimeout == 0 {
		opts.UpstreamTimeout = 60 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Proxy{
		opts:     opts,
		base:     []byte(strings.TrimRight(opts.BaseURL, "/")),
		resolver: r,
		bufs:     sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }},
	}
}

// hopByHop are the headers that describe one connection, not the message
// (RFC 9110 section 7.6.1); they are never forwarded.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// ServeFastHTTP proxies one request. It keeps nothing of ctx after it
// returns.
func (p *Proxy) ServeFastHTTP(ctx *fasthttp.RequestCtx) {
	route, perr := ParseRoute(ctx.Request.Header.RequestURI(), p.base)
	if perr != nil {
		writeError(ctx, perr)
		return
	}
	token := p.token(ctx, route.Query)
	var subject string
	if p.opts.Authorizer != nil {
		if len(token) == 0 {
			ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="nocrd"`)
			writeError(ctx, &Error{Status: http.StatusUnauthorized, Detail: "a bearer token is required (Authorization header or token query parameter)"})
			return
		}
		var err error
		if subject, err = p.opts.Authorizer.Authorize(ctx, string(token)); err != nil {
			ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="nocrd", error="invalid_token"`)
			writeError(ctx, &Error{Status: http.StatusUnauthorized, Detail: "invalid token"})
			return
		}
	}
	ep, err := p.resolver.Resolve(ctx, string(route.ID))
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			pe = &Error{Status: http.StatusBadGateway, Detail: "cannot resolve the workspace"}
			p.opts.Logger.Warn("resolve workspace", "id", string(route.ID), "err", err)
		}
		if pe.Status == http.StatusServiceUnavailable {
			ctx.Response.Header.Set("Retry-After", "2")
		}
		writeError(ctx, pe)
		return
	}
	if p.opts.Authorizer != nil && subject != ep.Owner {
		writeError(ctx, &Error{Status: http.StatusForbidden, Detail: "the workspace belongs to another user"})
		return
	}

	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	ctx.Request.CopyTo(req)
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	*bp = upstreamURI((*bp)[:0], route)
	req.SetRequestURIBytes(*bp) // on the Request: CopyTo brought a parsed URI that would win
	p.rewriteHeaders(ctx, req, route, bp)

	resp := &ctx.Response
	if err := p.client(ep.Addr).DoTimeout(req, resp, p.opts.UpstreamTimeout); err != nil {
		resp.Reset()
		if errors.Is(err, fasthttp.ErrTimeout) {
			writeError(ctx, &Error{Status: http.StatusGatewayTimeout, Detail: "the workspace did not answer in time"})
		} else {
			writeError(ctx, &Error{Status: http.StatusBadGateway, Detail: "the workspace cannot be reached"})
		}
		return
	}
	stripHopByHop(&resp.Header, bp)
}

// token returns the bearer token of the request, from the Authorization
// header or the token query parameter, or nil.
func (p *Proxy) token(ctx *fasthttp.RequestCtx, query []byte) []byte {
	if a := ctx.Request.Header.Peek("Authorization"); len(a) > 7 && strings.EqualFold(string(a[:7]), "bearer ") {
		return a[7:]
	}
	if len(query) > 0 {
		if t := ctx.QueryArgs().Peek("token"); len(t) > 0 {
			return t
		}
	}
	return nil
}

// upstreamURI writes the path and query sent to the workspace: the route's
// path as the client sent it, and its query without the token parameter,
// which is the proxy's and never the workspace's.
func upstreamURI(dst []byte, r Route) []byte {
	dst = append(dst, r.Path...)
	if len(r.Query) == 0 {
		return dst
	}
	start := len(dst)
	dst = append(dst, '?')
	for q := r.Query; len(q) > 0; {
		pair := q
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			pair, q = q[:i], q[i+1:]
		} else {
			q = nil
		}
		if bytes.Equal(pair, []byte("token")) || bytes.HasPrefix(pair, []byte("token=")) {
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

// rewriteHeaders prepares the upstream request's headers, building values
// in buf (the handler's pooled scratch) so that nothing is allocated.
func (p *Proxy) rewriteHeaders(ctx *fasthttp.RequestCtx, req *fasthttp.Request, r Route, buf *[]byte) {
	h := &req.Header
	stripHopByHop(h, buf)
	if p.opts.Authorizer != nil && !p.opts.PassAuthorization {
		h.Del("Authorization")
	}
	b := (*buf)[:0]
	if prior := h.Peek("X-Forwarded-For"); len(prior) > 0 {
		b = append(append(b, prior...), ", "...)
	}
	if ip, ok := netip.AddrFromSlice(ctx.RemoteIP()); ok {
		b = ip.Unmap().AppendTo(b)
	}
	h.SetBytesV("X-Forwarded-For", b)
	if ctx.IsTLS() {
		h.Set("X-Forwarded-Proto", "https")
	} else {
		h.Set("X-Forwarded-Proto", "http")
	}
	h.SetBytesV("X-Forwarded-Host", ctx.Host())
	b = append(append(append(b[:0], p.base...), RoutePrefix...), r.ID...)
	h.SetBytesV("X-Forwarded-Prefix", b)
	*buf = b
}

// stripHopByHop removes hop-by-hop headers and those the Connection header
// names. buf is scratch space for the Connection value, which is copied
// because deleting headers may move the bytes Peek returned.
func stripHopByHop(h interface {
	Peek(string) []byte
	Del(string)
	DelBytes([]byte)
}, buf *[]byte) {
	if c := h.Peek("Connection"); len(c) > 0 {
		names := append((*buf)[:0], c...)
		*buf = names
		for len(names) > 0 {
			name := names
			if i := bytes.IndexByte(names, ','); i >= 0 {
				name, names = names[:i], names[i+1:]
			} else {
				names = nil
			}
			if name = bytes.TrimSpace(name); len(name) > 0 {
				h.DelBytes(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// client returns the keep-alive client for an upstream address.
func (p *Proxy) client(addr string) *fasthttp.HostClient {
	if c, ok := p.clients.Load(addr); ok {
		return c.(*fasthttp.HostClient)
	}
	c, _ := p.clients.LoadOrStore(addr, &fasthttp.HostClient{
		Addr:                          addr,
		MaxIdleConnDuration:           30 * time.Second,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
	})
	return c.(*fasthttp.HostClient)
}

// Forget closes the idle connections to an upstream address and drops its
// client, for when the pod behind it is gone.
func (p *Proxy) Forget(addr string) {
	if c, ok := p.clients.LoadAndDelete(addr); ok {
		c.(*fasthttp.HostClient).CloseIdleConnections()
	}
}

// Close drops every upstream client and its idle connections.
func (p *Proxy) Close() {
	p.clients.Range(func(addr, _ any) bool {
		p.Forget(addr.(string))
		return true
	})
}

func writeError(ctx *fasthttp.RequestCtx, e *Error) {
	ctx.Response.SetStatusCode(e.Status)
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.SetBodyRaw(e.body(nil))
}
