package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"github.com/valyala/fasthttp"

	"github.com/nocrd/nocrd/internal/auth"
	"github.com/nocrd/nocrd/proxy"
	policies "github.com/nocrd/nocrd/wasm-policies"
)

type oneWorkspace proxy.Endpoint

func (w oneWorkspace) Resolve(context.Context, string) (proxy.Endpoint, error) {
	return proxy.Endpoint(w), nil
}

// BenchmarkProxyRoutePolicy is the proxy's cached path to a real backend
// on loopback, with a (cached) HS256 token, without a route policy and with
// one (the WAT guest, the Go inject-identity guest) through the adapter
// nocrd uses; compare the ns/op of each to "none" for the policy's share.
func BenchmarkProxyRoutePolicy(b *testing.B) {
	dir := b.TempDir()
	verifier, err := auth.NewVerifier(b.Context(), auth.Config{SubJSONPath: "$.sub", JWTSecret: "s3cret"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	tok := jwt.New()
	_ = tok.Set(jwt.SubjectKey, "alice")
	_ = tok.Set(jwt.ExpirationKey, time.Now().Add(time.Hour))
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256, []byte("s3cret")))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, module string }{
		{"none", ""},
		{"WAT", watPolicy(b, dir, "readonly")},
		{"Go", buildPolicy(b, dir, "inject-identity")},
	} {
		b.Run(c.name, func(b *testing.B) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }}
			go func() { _ = srv.Serve(l) }()
			defer func() { _ = srv.Shutdown() }()
			opts := proxy.Options{Authorizer: verifier}
			if c.module != "" {
				set, err := policies.Open(context.Background(), policies.Config{
					Route: []string{c.module}, RouteTimeout: 5 * time.Millisecond, SpawnTimeout: time.Second, MemoryLimitMB: 64,
				}, nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer set.Close(context.Background())
				opts.Policy = newRoutePolicy(set.Chain(policies.HookRoute))
			}
			p := proxy.New(oneWorkspace{Addr: l.Addr().String(), Owner: "alice"}, opts)
			defer p.Close()
			var ctx fasthttp.RequestCtx
			var req fasthttp.Request
			req.SetRequestURI("/route/ws1/api/files?x=1")
			req.Header.SetHost("nocrd.example")
			req.Header.Set("Connection", "keep-alive")
			req.Header.Set("Authorization", "Bearer "+string(signed))
			ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
			bw := bufio.NewWriter(io.Discard)
			b.ReportAllocs()
			for b.Loop() {
				p.ServeFastHTTP(&ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
				if err := ctx.Response.Write(bw); err != nil {
					b.Fatal(err)
				}
				_ = bw.Flush()
				ctx.Response.Reset()
			}
		})
	}
}
