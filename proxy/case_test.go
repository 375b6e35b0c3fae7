package proxy_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/nocrd/nocrd/proxy"
)

// TestHeaderNamesAnyCase: header names are case-insensitive, so a token,
// hop-by-hop headers and forged X-Nocrd-* headers sent in lower case are
// read, stripped and overwritten exactly as in canonical case, both ways.
func TestHeaderNamesAnyCase(t *testing.T) {
	addr, _ := backend(t)
	lower := serve(t, &fasthttp.Server{
		DisableHeaderNamesNormalizing: true,
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.DisableNormalizing()
			ctx.Response.Header.Set("connection", "x-private")
			ctx.Response.Header.Set("x-private", "hop")
			ctx.Response.Header.Set("keep-alive", "timeout=5")
			ctx.Response.Header.Set("x-public", "yes")
			ctx.SetBodyString("ok")
		},
	})
	v := hs256Verifier(t)
	g := &gate{}
	base, _ := startProxy(t, staticResolver{"a": {Addr: addr, Owner: "alice"}, "l": {Addr: lower, Owner: "alice"}},
		proxy.Options{Authorizer: v, Policy: g})
	alice := token(t, "s3cret", "alice", time.Hour)

	s := rawSeen(t, base, "GET /route/a/x HTTP/1.1\r\nHost: h\r\nauthorization: Bearer "+alice+
		"\r\nconnection: x-secret\r\nx-secret: 1\r\nkeep-alive: 5\r\nproxy-authorization: y\r\nx-nocrd-subject: root\r\nx-nocrd-owner: root\r\n\r\n")
	for name := range s.Header {
		switch strings.ToLower(name) {
		case "authorization", "connection", "x-secret", "keep-alive", "proxy-authorization", "x-nocrd-subject", "x-nocrd-owner":
			t.Errorf("forwarded %s: %q", name, s.Header[name])
		}
	}
	saw, _ := g.last()
	if saw[proxy.HeaderSubject] != "alice" || saw[proxy.HeaderOwner] != "alice" {
		t.Errorf("the policy saw forged identity headers: %v", saw)
	}
	for k := range saw {
		if k != proxy.HeaderSubject && strings.EqualFold(k, proxy.HeaderSubject) {
			t.Errorf("the policy saw a second subject header %q", k)
		}
	}

	status, body := raw(t, base, "GET /route/l/ HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer "+alice+"\r\n\r\n")
	if status != 200 || body != "ok" {
		t.Fatalf("lower-case response: %d %q", status, body)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/route/l/", nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Private") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-Public") != "yes" {
		t.Errorf("response headers: %v", resp.Header)
	}
}
