package proxy

import (
	"bufio"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// rewritten is the head the fasthttp path sends for in: the client's
// header copied, rewritten and serialised, as ServeFastHTTP does for a
// request with a body or a Policy.
func rewritten(p *Proxy, ctx *fasthttp.RequestCtx, r Route, who caller, addr string) []byte {
	var req fasthttp.Request
	ctx.Request.Header.CopyTo(&req.Header)
	if len(req.Header.Host()) == 0 {
		req.Header.Set("Host", addr)
	}
	buf := p.upstreamURI(nil, r)
	req.SetRequestURIBytes(buf)
	p.rewriteHeaders(ctx, &req.Header, r, who, &buf)
	return req.Header.AppendBytes(nil)
}

// sameHead fails t unless a and b have the same request line and the same
// fields, each name's values in the same order (the order of fields with
// different names means nothing, RFC 9110 section 5.3).
func sameHead(t *testing.T, got, want []byte) {
	t.Helper()
	line := func(h []byte) string { i := strings.Index(string(h), "\r\n"); return string(h[:max(i, 0)]) }
	if line(got) != line(want) {
		t.Fatalf("request line %q, want %q", line(got), line(want))
	}
	g, w := valuesByName(got, nil), valuesByName(want, nil)
	if !maps.EqualFunc(g, w, slices.Equal) {
		t.Fatalf("appendHead sends\n%s\nthe fasthttp path\n%s", got, want)
	}
	if !strings.HasSuffix(string(got), "\r\n\r\n") {
		t.Fatalf("head does not end with an empty line:\n%q", got)
	}
}

// headCase runs one request through both ways of building the upstream
// head, with the proxy configured by opts. It reports false, having
// compared nothing, for a request the proxy would not send by appendHead.
func headCase(t *testing.T, opts Options, raw string) bool {
	t.Helper()
	p := New(nil, opts)
	defer p.Close()
	var in fasthttp.Request
	if err := in.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		return false // the server would answer 400
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&in, &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 40000}, nil)
	r, perr := ParseRoute(ctx.Request.Header.RequestURI(), p.base)
	if perr != nil {
		return false
	}
	if !directHead(&ctx.Request.Header) {
		return false
	}
	var buf []byte
	// The caller as ServeFastHTTP makes it.
	tok, from := p.token(&ctx, r.Query)
	who := caller{subject: []byte("alice"), token: tok, bearer: len(tok) > 0 && from == fromHeader}
	got := p.appendHead(nil, &ctx, r, who, "10.0.0.7:8888", &buf)
	sameHead(t, got, rewritten(p, &ctx, r, who, "10.0.0.7:8888"))
	return true
}

func TestAppendHeadMatchesRewrite(t *testing.T) {
	auth := Options{BaseURL: "/gw", Authorizer: anyToken{}}
	withSubject := Options{Authorizer: anyToken{}, SubjectHeader: "X-User", KeepPrefix: true}
	pass := Options{Authorizer: anyToken{}, PassAuthorization: true}
	passCookie := Options{Authorizer: anyToken{}, PassAuthorization: true, TokenCookie: true}
	cookie := Options{BaseURL: "/gw", Authorizer: anyToken{}, TokenCookie: true}
	trusted := Options{Authorizer: anyToken{}, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, c := range []struct {
		name string
		opts Options
		raw  string
	}{
		{"wrk", auth, "GET /gw/route/ws1/api HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer t.t.t\r\n\r\n"},
		{"head", auth, "HEAD /gw/route/ws1/ HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"no auth", Options{}, "GET /route/ws1/a?b=c HTTP/1.1\r\nHost: h\r\nAuthorization: Basic x\r\n\r\n"},
		{"token query", auth, "GET /gw/route/ws1/a?token=abc&x=1&token HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"browser", auth, "GET /gw/route/ws1/lab?x=1 HTTP/1.1\r\nHost: nocrd.example\r\nUser-Agent: Mozilla/5.0\r\n" +
			"Accept: text/html\r\nAccept-Encoding: gzip, br\r\nConnection: keep-alive\r\nCookie: _xsrf=2|a|b; theme=\"dark blue\"\r\n" +
			"Cookie: c=3\r\nSec-Fetch-Mode: cors\r\nAccept: */*\r\n\r\n"},
		{"hop-by-hop", auth, "GET /gw/route/ws1/ HTTP/1.1\r\nHost: h\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Connection: x\r\n" +
			"Connection: X-Secret, keep-alive\r\nX-Secret: s\r\nX-Other: o\r\nUpgrade: h2c\r\nTrailer: X-T\r\n\r\n"},
		{"empty connection first", auth, "GET /gw/route/ws1/ HTTP/1.1\r\nHost: h\r\nX-Secret: s\r\nConnection:\r\nConnection: X-Secret\r\n\r\n"},
		{"listed before", auth, "GET /gw/route/ws1/ HTTP/1.1\r\nHost: h\r\nX-Secret: s\r\nX-Keep: 1\r\nConnection: x-secret\r\nX-Keep: 2\r\n\r\n"},
		{"connection close", auth, "GET /gw/route/ws1/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"},
		{"forwarded chain", auth, "GET /gw/route/ws1/ HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3\r\n" +
			"X-Forwarded-Proto: ftp\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Prefix: /evil\r\n\r\n"},
		{"forwarded listed", auth, "GET /gw/route/ws1/ HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\nConnection: X-Forwarded-For\r\n\r\n"},
		{"reserved", auth, "GET /gw/route/ws1/ HTTP/1.1\r\nHost: h\r\nX-Nocrd-Subject: mallory\r\nx-nocrd-owner: m\r\n\r\n"},
		{"spelled with '_'", withSubject, "GET /route/ws1/p HTTP/1.1\r\nHost: h\r\nX_User: mallory\r\nX_Forwarded_For: 6.6.6.6\r\n" +
			"x_forwarded_host: evil\r\nX_Nocrd_Subject: m\r\nX_Keep: 1\r\n\r\n"},
		{"subject header", withSubject, "GET /route/ws1/p HTTP/1.1\r\nHost: h\r\nX-User: mallory\r\nAuthorization: Bearer t\r\n\r\n"},
		{"pass authorization", pass, "GET /route/ws1/p HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t\r\n\r\n"},
		{"pass authorization, cookie", passCookie, "GET /route/ws1/p HTTP/1.1\r\nHost: h\r\nCookie: a=1; nocrd_token=t\r\n\r\n"},
		{"pass authorization, query", passCookie, "GET /route/ws1/p?token=t HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"pass authorization, an empty field", passCookie, "GET /route/ws1/p?token=t HTTP/1.1\r\nHost: h\r\nAuthorization:\r\n\r\n"},
		{"pass authorization, the workspace's own", passCookie, "GET /route/ws1/p?token=t HTTP/1.1\r\nHost: h\r\nAuthorization: Basic x\r\n\r\n"},
		{"content-length 0", auth, "GET /gw/route/ws1/ HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"},
		{"repeats", auth, "GET /gw/route/ws1/ HTTP/1.1\r\nHost: h\r\nAccept: a\r\nAuthorization: Bearer t\r\nX-A: 1\r\nAccept: b\r\nX-A: 2\r\n\r\n"},
		{"token cookie", cookie, "GET /gw/route/ws1/ HTTP/1.1\r\nHost: h\r\nCookie: a=\"1\"; nocrd_token=t; b=2\r\nX-A: 1\r\nCookie: nocrd_token=u\r\nCookie: c=3\r\n\r\n"},
		{"workspace's authorization", cookie, "GET /gw/route/ws1/ HTTP/1.1\r\nHost: h\r\nAuthorization: Basic dTpw\r\nCookie: nocrd_token=t\r\nAuthorization: Bearer x\r\n\r\n"},
		{"token cookie kept", auth, "GET /gw/route/ws1/ HTTP/1.1\r\nHost: h\r\nCookie: a=1; nocrd_token=t\r\n\r\n"},
		{"trusted proxy", trusted, "GET /route/ws1/ HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https, http\r\nX-Forwarded-Host: a.example\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n"},
		{"trusted proxy, bad claims", trusted, "GET /route/ws1/ HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: gopher\r\nX-Forwarded-Host: a b\r\n\r\n"},
		{"referer", cookie, "GET /gw/route/ws1/ HTTP/1.1\r\nHost: h\r\nReferer: http://h/gw/route/ws1/?a=1&token=t#f\r\nX-A: 1\r\n\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !headCase(t, c.opts, c.raw) {
				t.Fatal("the request does not go upstream by appendHead")
			}
		})
	}
}

// FuzzAppendHead: for any bodiless request, the head appendHead builds
// carries what the fasthttp path would send.
func FuzzAppendHead(f *testing.F) {
	f.Add("GET", "/route/ws1/a?token=t&b=1", "Host: h\r\nAuthorization: Bearer t\r\nAccept: a\r\nAccept: b\r\n", false, false, false)
	f.Add("HEAD", "/route/ws1/", "Host: h\r\nConnection: X-A, close\r\nX-A: 1\r\nX-Forwarded-For: 9.9.9.9\r\nCookie: a=\"b c\"\r\n", true, false, false)
	f.Add("GET", "/route/ws1/", "Host: h\r\nX-B: 1\r\nConnection:\r\nconnection: x-b\r\n", false, true, false)
	f.Add("GET", "/route/ws1/x", "Host: h\r\nX-Nocrd-Claims: {}\r\nTE: x\r\nConnection: x-forwarded-for\r\nX-Forwarded-For: 1.2.3.4\r\n", true, false, false)
	f.Add("GET", "/route/ws1/", "Host: h\r\nCookie: a=1; nocrd_token=t\r\nReferer: /route/ws1/?token=t\r\nCookie: nocrd_token=u\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: a\r\n", true, true, false)
	f.Add("GET", "/route/ws1/?token=t", "Host: h\r\nCookie: nocrd_token=u\r\nAuthorization: Basic x\r\n", false, false, true)
	f.Fuzz(func(t *testing.T, method, uri, fields string, subjectHeader, trusted, pass bool) {
		opts := Options{Authorizer: anyToken{}, TokenCookie: true, PassAuthorization: pass}
		if trusted {
			opts.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		}
		if subjectHeader {
			opts.SubjectHeader = "X-User"
		}
		_ = headCase(t, opts, method+" "+uri+" HTTP/1.1\r\n"+fields+"\r\n")
	})
}
