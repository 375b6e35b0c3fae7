package proxy_test

import (
	"bufio"
	"bytes"
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/nocrd/nocrd/proxy"
)

// BenchmarkServeFastHTTP forwards a request through the proxy to a real
// backend on loopback, calling the handler directly so that what is
// counted is the proxy's own work plus the upstream round trip. The small
// body is read straight into the client's response.
func BenchmarkServeFastHTTP(b *testing.B) { benchServe(b, []byte("ok")) }

// BenchmarkServeFastHTTPStreamed forwards a 256 KiB body, which is streamed.
func BenchmarkServeFastHTTPStreamed(b *testing.B) { benchServe(b, bytes.Repeat([]byte("s"), 256<<10)) }

func benchServe(b *testing.B, body []byte) {
	addr := serve(b, &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }})
	p := proxy.New(staticResolver{"ws1": {Addr: addr, Owner: "alice"}}, proxy.Options{BaseURL: "/gw"})
	b.Cleanup(p.Close)
	var ctx fasthttp.RequestCtx
	var out countingWriter
	bw := bufio.NewWriter(&out)
	var req fasthttp.Request
	req.SetRequestURI("/gw/route/ws1/api/files?x=1&token=t")
	req.Header.SetHost("nocrd.example")
	req.Header.Set("X-Forwarded-For", "10.0.0.9")
	req.Header.Set("Connection", "keep-alive")
	// The server makes one RequestCtx per connection; so does this loop,
	// reusing it for every request as a keep-alive connection does.
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		p.ServeFastHTTP(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		// Write the response as the server would, which also ends a
		// streamed body and gives the upstream connection back.
		out = 0
		if err := ctx.Response.Write(bw); err != nil {
			b.Fatal(err)
		}
		_ = bw.Flush()
		if int(out) < len(body) {
			b.Fatalf("wrote %d bytes for a %d-byte body", out, len(body))
		}
		ctx.Response.Reset()
	}
}

// countingWriter discards what it is given and counts it.
type countingWriter int

func (w *countingWriter) Write(p []byte) (int, error) {
	*w += countingWriter(len(p))
	return len(p), nil
}
