package proxy_test

import (
	"bufio"
	"io"
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/nocrd/nocrd/proxy"
)

// BenchmarkServeFastHTTP forwards a request through the proxy to a real
// backend on loopback, calling the handler directly so that what is
// counted is the proxy's own work plus the upstream round trip.
func BenchmarkServeFastHTTP(b *testing.B) {
	addr := serve(b, &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }})
	p := proxy.New(staticResolver{"ws1": {Addr: addr, Owner: "alice"}}, proxy.Options{BaseURL: "/gw"})
	b.Cleanup(p.Close)
	var ctx fasthttp.RequestCtx
	bw := bufio.NewWriter(io.Discard)
	var req fasthttp.Request
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	b.ReportAllocs()
	for b.Loop() {
		req.Reset()
		req.SetRequestURI("/gw/route/ws1/api/files?x=1&token=t")
		req.Header.SetHost("nocrd.example")
		req.Header.Set("X-Forwarded-For", "10.0.0.9")
		req.Header.Set("Connection", "keep-alive")
		ctx.Init(&req, remote, nil)
		p.ServeFastHTTP(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		// Write the response as the server would, which also ends the
		// streamed body and gives the upstream connection back.
		if err := ctx.Response.Write(bw); err != nil {
			b.Fatal(err)
		}
		ctx.Response.Reset()
	}
}
