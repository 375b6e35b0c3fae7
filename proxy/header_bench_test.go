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

func (anyToken) Authorize(context.Context, string) (string, []byte, error) {
	return "alice", nil, nil
}

// BenchmarkRewriteHeaders is the header work of one proxied request: the
// client's request head copied and rewritten for the workspace (hop-by-hop
// headers and the token removed, X-Forwarded-* set), and the workspace's
// response head stripped of hop-by-hop headers. Both heads are parsed from
// the wire as the server and the upstream reader parse them.
func BenchmarkRewriteHeaders(b *testing.B) {
	for _, c := range []struct{ name, req string }{
		{"wrk", "GET /gw/route/ws1/api HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer " + strings.Repeat("t", 240) + "\r\n\r\n"},
		{"browser", "GET /gw/route/ws1/lab/api/contents?content=1 HTTP/1.1\r\nHost: nocrd.example\r\n" +
			"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/140.0\r\nAccept: application/json\r\n" +
			"Accept-Language: en-GB,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nReferer: https://nocrd.example/gw/route/ws1/lab\r\n" +
			"Authorization: Bearer " + strings.Repeat("t", 240) + "\r\nConnection: keep-alive\r\nCookie: _xsrf=2|abc|def; theme=dark\r\n" +
			"Sec-Fetch-Dest: empty\r\nSec-Fetch-Mode: cors\r\nSec-Fetch-Site: same-origin\r\nPriority: u=4\r\n\r\n"},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := New(nil, Options{BaseURL: "/gw", Authorizer: anyToken{}})
			defer p.Close()
			var ctx fasthttp.RequestCtx
			var in fasthttp.Request
			if err := in.Read(bufio.NewReader(strings.NewReader(c.req))); err != nil {
				b.Fatal(err)
			}
			ctx.Init(&in, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
			route, perr := ParseRoute(ctx.Request.Header.RequestURI(), p.base)
			if perr != nil {
				b.Fatal(perr)
			}
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
				p.rewriteHeaders(&ctx, &req.Header, route, []byte("alice"), &buf)
				upResp.CopyTo(&resp)
				stripHopByHop(&resp, &buf)
			}
			if len(req.Header.Peek("Authorization")) > 0 || len(req.Header.Peek("Connection")) > 0 {
				b.Fatalf("not stripped:\n%s", req.Header.Header())
			}
		})
	}
}

// TestStripReserved: every header named with HeaderPrefix goes, in any case
// and however many there are, whichever way it was set; the others stay.
func TestStripReserved(t *testing.T) {
	for _, c := range []struct {
		name    string
		set     [][2]string // in order, names as sent (not normalised)
		want    []string    // the header names left, in the order sent on
		cookies string      // the Cookie values sent on, joined by |
	}{
		{"none", [][2]string{{"Accept", "*/*"}, {"X-Policy", "yes"}}, []string{"Accept", "X-Policy"}, ""},
		{"one", [][2]string{{"Accept", "*/*"}, {"X-Nocrd-Subject", "mallory"}}, []string{"Accept"}, ""},
		{"lower case", [][2]string{{"x-nocrd-owner", "mallory"}, {"x-policy", "yes"}}, []string{"x-policy"}, ""},
		{"several", [][2]string{{"X-Nocrd-A", "1"}, {"Accept", "*/*"}, {"X-NOCRD-B", "2"}, {"X-Nocrd-A", "3"}}, []string{"Accept"}, ""},
		{"prefix only", [][2]string{{"X-Nocrd", "kept: not the prefix"}, {"X-Nocrdx", "kept"}}, []string{"X-Nocrd", "X-Nocrdx"}, ""},
		{"cookies kept as sent", [][2]string{{"Cookie", `a="q v"; b=2`}, {"X-Nocrd-A", "1"}, {"Cookie", "c=3"}}, []string{"Cookie", "Cookie"}, `a="q v"; b=2|c=3`},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Parsed from the wire, as the proxy gets it: fasthttp's Add
			// would parse the cookies at once.
			var h fasthttp.RequestHeader
			h.DisableNormalizing()
			head := "GET / HTTP/1.1\r\nHost: ws\r\n"
			for _, kv := range c.set {
				head += kv[0] + ": " + kv[1] + "\r\n"
			}
			if err := h.Read(bufio.NewReader(strings.NewReader(head + "\r\n"))); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 0, 64)
			stripReserved(&h, &buf)
			// Looked at as it will be sent: h.All would merge the cookies.
			var got, cookies []string
			for k, v := range Fields(h.AppendBytes(nil)) {
				if string(k) != "Host" {
					got = append(got, string(k))
				}
				if string(k) == "Cookie" {
					cookies = append(cookies, string(v))
				}
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Errorf("headers left %q, want %q", got, c.want)
			}
			if strings.Join(cookies, "|") != c.cookies {
				t.Errorf("cookies sent on as %q, want %q", cookies, c.cookies)
			}
		})
	}
}

// BenchmarkStripReserved is the check after a route policy, with nothing
// to strip (the usual case) and with a header a policy set.
func BenchmarkStripReserved(b *testing.B) {
	for _, c := range []struct {
		name     string
		reserved bool
	}{{"clean", false}, {"policy set one", true}} {
		b.Run(c.name, func(b *testing.B) {
			var base fasthttp.RequestHeader
			if err := base.Read(bufio.NewReader(strings.NewReader("GET /api HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n" +
				"User-Agent: wrk\r\nAccept: */*\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n" +
				"X-Forwarded-Host: 127.0.0.1:8080\r\nX-Forwarded-Prefix: /route/ws1\r\nX-Workspace-User: alice\r\n\r\n"))); err != nil {
				b.Fatal(err)
			}
			var h fasthttp.RequestHeader
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				base.CopyTo(&h)
				if c.reserved {
					h.Set("X-Nocrd-Smuggled", "yes")
				}
				stripReserved(&h, &buf)
			}
			for k := range Fields(h.AppendBytes(buf[:0])) {
				if isReserved(k) {
					b.Fatalf("%s is left", k)
				}
			}
		})
	}
}
