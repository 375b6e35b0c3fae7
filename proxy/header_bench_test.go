package proxy

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

type anyToken struct{}

// benchHeads are the request heads of the header benchmarks: wrk's, as the
// proxy benchmark sends it, and a browser's.
var benchHeads = []struct{ name, req string }{
	{"wrk", "GET /gw/route/ws1/api HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer " + strings.Repeat("t", 240) + "\r\n\r\n"},
	{"browser", "GET /gw/route/ws1/lab/api/contents?content=1 HTTP/1.1\r\nHost: nocrd.example\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/140.0\r\nAccept: application/json\r\n" +
		"Accept-Language: en-GB,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nReferer: https://nocrd.example/gw/route/ws1/lab\r\n" +
		"Authorization: Bearer " + strings.Repeat("t", 240) + "\r\nConnection: keep-alive\r\nCookie: _xsrf=2|abc|def; theme=dark\r\n" +
		"Sec-Fetch-Dest: empty\r\nSec-Fetch-Mode: cors\r\nSec-Fetch-Site: same-origin\r\nPriority: u=4\r\n\r\n"},
}

// alice is the caller of benchHeads: her token came in the Authorization
// header.
var alice = caller{subject: []byte("alice"), bearer: true}

func (anyToken) Authorize(context.Context, string) (string, []byte, error) {
	return "alice", nil, nil
}

// benchCtx is the request ctx of the client request raw, read from the
// wire as the server reads it, and its route under p.
func benchCtx(b *testing.B, p *Proxy, raw string) (*fasthttp.RequestCtx, Route) {
	var ctx fasthttp.RequestCtx
	var in fasthttp.Request
	if err := in.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		b.Fatal(err)
	}
	ctx.Init(&in, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	route, perr := ParseRoute(ctx.Request.Header.RequestURI(), p.base)
	if perr != nil {
		b.Fatal(perr)
	}
	return &ctx, route
}

// BenchmarkRewriteHeaders is the header work of one proxied request: the
// client's request head copied and rewritten for the workspace (hop-by-hop
// headers and the token removed, X-Forwarded-* set), and the workspace's
// response head stripped of hop-by-hop headers. Both heads are parsed from
// the wire as the server and the upstream reader parse them.
func BenchmarkRewriteHeaders(b *testing.B) {
	for _, c := range benchHeads {
		b.Run(c.name, func(b *testing.B) {
			p := New(nil, Options{BaseURL: "/gw", Authorizer: anyToken{}})
			defer p.Close()
			ctx, route := benchCtx(b, p, c.req)
			var upResp fasthttp.ResponseHeader
			if err := upResp.Read(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nServer: fasthttp\r\n" +
				"Date: Mon, 23 Nov 2026 10:00:00 GMT\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n"))); err != nil {
				b.Fatal(err)
			}
			var req fasthttp.Request
			var resp fasthttp.ResponseHeader
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				req.Header.Reset()
				ctx.Request.Header.CopyTo(&req.Header)
				p.rewriteHeaders(ctx, &req.Header, route, alice, &buf)
				upResp.CopyTo(&resp)
				stripHopByHop(&resp, &buf)
			}
			if len(req.Header.Peek("Authorization")) > 0 || len(req.Header.Peek("Connection")) > 0 {
				b.Fatalf("not stripped:\n%s", req.Header.Header())
			}
		})
	}
}

// BenchmarkUpstreamHead compares the two ways the proxy makes the head it
// sends upstream for a request without a body: the fasthttp path (the
// client's header copied, rewritten and serialised, as for a request with
// a body or a Policy) and appendHead, which writes it in one pass.
func BenchmarkUpstreamHead(b *testing.B) {
	for _, c := range benchHeads {
		p := New(nil, Options{BaseURL: "/gw", Authorizer: anyToken{}})
		ctx, route := benchCtx(b, p, c.req)
		buf, out := make([]byte, 0, 1024), make([]byte, 0, 2048)
		b.Run(c.name+"/fasthttp", func(b *testing.B) {
			var req fasthttp.Request
			b.ReportAllocs()
			for b.Loop() {
				ctx.Request.Header.CopyTo(&req.Header)
				buf = p.upstreamURI(buf[:0], route)
				req.SetRequestURIBytes(buf)
				p.rewriteHeaders(ctx, &req.Header, route, alice, &buf)
				out = req.Header.AppendBytes(out[:0])
			}
		})
		b.Run(c.name+"/appendHead", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out = p.appendHead(out[:0], ctx, route, alice, "10.0.0.7:8888", &buf)
			}
			if strings.Contains(string(out), "Authorization") || !strings.Contains(string(out), "X-Forwarded-Prefix: /gw/route/ws1\r\n") {
				b.Fatalf("not rewritten:\n%s", out)
			}
		})
		p.Close()
	}
}

// BenchmarkUpstreamSetHeader is a route policy setting one header on the
// request the proxy forwards, as the inject-identity example does: the
// checks that keep the proxy's promises, then the write, on a fasthttp
// request (a request with a body) and on the head appendHead builds (one
// without). Nothing is looked at again after the policy.
func BenchmarkUpstreamSetHeader(b *testing.B) {
	const head = "GET /api HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n" +
		"User-Agent: wrk\r\nAccept: */*\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n" +
		"X-Forwarded-Host: 127.0.0.1:8080\r\nX-Forwarded-Prefix: /route/ws1\r\n\r\n"
	name, value := []byte("X-Workspace-User"), []byte("alice")
	b.Run("fasthttp", func(b *testing.B) {
		var base fasthttp.Request
		if err := base.Header.Read(bufio.NewReader(strings.NewReader(head))); err != nil {
			b.Fatal(err)
		}
		var req fasthttp.Request
		u := Upstream{req: &req}
		b.ReportAllocs()
		for b.Loop() {
			base.Header.CopyTo(&req.Header)
			if !u.SetHeader(name, value) {
				b.Fatal("refused")
			}
		}
		if got := string(req.Header.Peek("X-Workspace-User")); got != "alice" {
			b.Fatalf("X-Workspace-User: %q", got)
		}
	})
	b.Run("head", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		u := Upstream{head: &buf}
		b.ReportAllocs()
		for b.Loop() {
			buf = append(buf[:0], head...)
			if !u.SetHeader(name, value) {
				b.Fatal("refused")
			}
		}
		if !strings.Contains(string(buf), "\r\nX-Workspace-User: alice\r\n\r\n") {
			b.Fatalf("not set:\n%s", buf)
		}
	})
}
