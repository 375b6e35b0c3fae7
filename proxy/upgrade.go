package proxy

import (
	"bytes"
	"io"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/nocrd/nocrd/internal/clock"
)

var (
	strWebSocket    = []byte("websocket")
	strUpgradeToken = []byte("Upgrade")
)

// isUpgrade reports whether a request asks to switch to WebSocket
// (Connection: upgrade with Upgrade: websocket). A request for any other
// protocol (h2c, say) is served as a request like any other: RFC 9110 lets
// a server ignore an upgrade, and its Upgrade and Connection headers are
// hop-by-hop, so they go no further.
func isUpgrade(h *fasthttp.RequestHeader) bool {
	if !bytes.EqualFold(h.PeekCanonical(strUpgrade), strWebSocket) {
		return false
	}
	for tok := range commaList(h.PeekCanonical(strConnection)) {
		if is(tok, "upgrade") {
			return true
		}
	}
	return false
}

// upgrade proxies a WebSocket handshake and, when the workspace switches
// protocols, the connection both ways. The handshake is an exchange like
// any other, made while ctx is valid: only a 101 answer turns the client's
// connection into a tunnel, which is served after the handler returns.
// Any other answer goes to the client as a response, and the connection
// stays HTTP, every request on it checked as usual. Tunnelling on any
// answer would let a client whose upgrade the workspace refused send it
// raw requests past authentication, the route policies and the header
// rewriting.
func (p *Proxy) upgrade(ctx *fasthttp.RequestCtx, addr string, r Route, who caller, owner string) {
	if cl := ctx.Request.Header.ContentLength(); cl > 0 || cl == -1 {
		// The body would not be sent, and the workspace would take the
		// one its Content-Length announces from the tunnel.
		p.fail(ctx, outcomeBadRequest, errUpgradeBody)
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
	p.rewriteHeaders(ctx, h, r, who, &sc.buf)
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", "websocket")
	if p.opts.Policy != nil && !p.decide(ctx, sc, req, r, who, owner) {
		return
	}

	// A connection of its own, never pooled: after a 101 it is the
	// tunnel's.
	nc, err := net.DialTimeout("tcp", addr, p.opts.DialTimeout)
	if err != nil {
		p.fail(ctx, outcomeBadGateway, errUnreachable)
		return
	}
	conn := newUpstreamConn(nc, p.pool(addr), p.opts.UpstreamTimeout)
	out := &ctx.Response
	if err := conn.exchange(req, h.Header(), &out.Header, clock.Mono()); err != nil {
		_ = conn.Close()
		p.upstreamFailed(ctx, addr, err)
		return
	}
	p.scopeAnswer(ctx, &out.Header, r, &sc.buf)
	status := out.Header.StatusCode()
	if status != fasthttp.StatusSwitchingProtocols {
		if err := p.respond(ctx, conn, h.IsHead() || noBody(status), false, &sc.buf, clock.Mono()); err != nil {
			p.upstreamFailed(ctx, addr, err)
			return
		}
		p.m.request(outcomeProxied, status)
		return
	}
	if !bytes.EqualFold(out.Header.Peek("Upgrade"), strWebSocket) {
		_ = conn.Close()
		ctx.Response.Reset()
		p.fail(ctx, outcomeBadGateway, errUpgradeAnswer)
		return
	}
	// The answer, without the workspace's other hop-by-hop headers, and
	// whatever the workspace sent after it go to the client from the
	// hijacked connection. fasthttp writes nothing itself: a response it
	// failed to write would skip the hijack and leave nc open.
	stripHopByHop(&out.Header, &sc.buf)
	out.Header.SetCanonical(strConnection, strUpgradeToken)
	out.Header.SetCanonical(strUpgrade, strWebSocket)
	buffered, _ := conn.br.Peek(conn.br.Buffered())
	lead := append(out.Header.AppendBytes(nil), buffered...)
	if err := nc.SetDeadline(time.Time{}); err != nil {
		_ = nc.Close()
		ctx.Response.Reset()
		p.fail(ctx, outcomeBadGateway, errUnreachable)
		return
	}
	p.m.request(outcomeUpgraded, status)
	p.upgraded.Store(nc, struct{}{}) // Close ends it, should the hijack not come
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(client net.Conn) {
		p.upgraded.Store(rawConn(client), struct{}{})
		p.m.ws.Add(1)
		defer func() {
			p.m.ws.Add(-1)
			p.upgraded.Delete(rawConn(client))
			p.upgraded.Delete(nc)
			_ = nc.Close()
		}()
		if _, err := client.Write(lead); err != nil {
			return
		}
		pipe(client, nc)
	})
}

// pipe copies both ways until either side ends, then closes both. The end
// of one direction is passed on as a half-close, so the other can finish.
func pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if !closeWrite(dst) {
			_ = rawConn(dst).Close()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	_ = rawConn(a).Close()
	_ = rawConn(b).Close()
}

// rawConn is the connection under c when c is fasthttp's hijacked
// connection, else c. That one's Close does nothing (the server closes the
// connection once the hijack handler returns) and it has no CloseWrite:
// ending it through it would leave the client waiting on a tunnel whose
// workspace has gone, and Proxy.Close unable to end it. Reads still go
// through c, which holds the bytes the server had buffered.
func rawConn(c net.Conn) net.Conn {
	if u, ok := c.(interface{ UnsafeConn() net.Conn }); ok {
		return u.UnsafeConn()
	}
	return c
}
