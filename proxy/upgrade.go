package proxy

import (
	"bytes"
	"io"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// isUpgrade reports whether a request asks to switch protocols
// (Connection: upgrade with an Upgrade header), as WebSockets do.
func isUpgrade(h *fasthttp.RequestHeader) bool {
	if len(h.PeekCanonical(strUpgrade)) == 0 {
		return false
	}
	for tok := range commaList(h.PeekCanonical(strConnection)) {
		if is(tok, "upgrade") {
			return true
		}
	}
	return false
}

// upgrade proxies a WebSocket handshake and then the connection both ways.
// The upstream request is built now, while ctx is valid; the hijacked
// connection is served after the handler returns.
func (p *Proxy) upgrade(ctx *fasthttp.RequestCtx, addr string, r Route, who caller, owner string) {
	if !bytes.EqualFold(ctx.Request.Header.Peek("Upgrade"), []byte("websocket")) {
		p.fail(ctx, outcomeBadRequest, errUpgrade)
		return
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	h := &req.Header
	ctx.Request.Header.CopyTo(h)
	sc := p.scratch.Get().(*scratch)
	defer p.scratch.Put(sc)
	sc.buf = p.upstreamURI(sc.buf[:0], r)
	h.SetRequestURIBytes(sc.buf)
	p.rewriteHeaders(ctx, h, r, who.subject, &sc.buf)
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", "websocket")
	if p.opts.Policy != nil && !p.decide(ctx, sc, req, r, who, owner) {
		return
	}
	// The request line and headers, copied: req goes back to its pool when
	// this handler returns, before the hijacked connection is served.
	head := append([]byte(nil), h.Header()...)

	upstream, err := net.DialTimeout("tcp", addr, p.opts.DialTimeout)
	if err != nil {
		p.fail(ctx, outcomeBadGateway, errUnreachable)
		return
	}
	p.m.request(outcomeUpgraded, 101)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(client net.Conn) {
		p.upgraded.Store(client, struct{}{})
		p.upgraded.Store(upstream, struct{}{})
		p.m.ws.Add(1)
		defer func() {
			p.m.ws.Add(-1)
			p.upgraded.Delete(client)
			p.upgraded.Delete(upstream)
			_ = upstream.Close()
		}()
		_ = upstream.SetWriteDeadline(time.Now().Add(p.opts.UpstreamTimeout))
		if _, err := upstream.Write(head); err != nil {
			return
		}
		_ = upstream.SetWriteDeadline(time.Time{})
		pipe(client, upstream)
	})
}

// pipe copies both ways until either side ends, then closes both.
func pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		// Half-close when possible so the other direction can finish.
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	_ = a.Close()
	_ = b.Close()
}
