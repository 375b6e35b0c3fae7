package proxy

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

type recordingAuthorizer struct{ got []string }

func (r *recordingAuthorizer) Authorize(_ context.Context, token string) (string, []byte, error) {
	r.got = append(r.got, strings.Clone(token))
	return "", nil, errors.New("refused")
}

type nobodyResolver struct{ t *testing.T }

func (n nobodyResolver) Resolve(context.Context, string) (Endpoint, error) {
	n.t.Fatal("resolved a workspace for a refused token")
	return Endpoint{}, nil
}

// FuzzTokenExtraction feeds arbitrary Authorization headers and request
// targets to the proxy: it never panics, hands the Authorizer only a token
// that came from the header or the token parameter, and never builds an
// upstream target that still carries the token parameter.
func FuzzTokenExtraction(f *testing.F) {
	f.Add("Bearer abc", "/route/w/x?token=t&a=1")
	f.Add("bearer  spaced ", "/route/w/?token&token=&x=token")
	f.Add("Basic dXNlcjpwYXNz", "/route/w/p?tok=1&token=%41")
	f.Add("", "/route/w/p?a=1&token=q&b=2&token=r")
	f.Fuzz(func(t *testing.T, authz, target string) {
		rec := &recordingAuthorizer{}
		p := New(nobodyResolver{t}, Options{Authorizer: rec})
		var req fasthttp.Request
		req.Header.SetRequestURI(target)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
		p.ServeFastHTTP(&ctx)
		if s := ctx.Response.StatusCode(); s != 400 && s != 401 && s != 404 {
			t.Fatalf("status %d for %q %q", s, authz, target)
		}
		for _, tok := range rec.got {
			if tok == "" {
				t.Fatal("an empty token was handed to the Authorizer")
			}
			// The header as the proxy received it: fasthttp stores a CR
			// or LF of a value as a space (no client can send one).
			fromHeader := strings.Contains(string(req.Header.Peek("Authorization")), tok)
			fromQuery := bytes.Equal(ctx.QueryArgs().Peek("token"), []byte(tok))
			if !fromHeader && !fromQuery {
				t.Fatalf("token %q came from neither %q (received as %q) nor %q", tok, authz, req.Header.Peek("Authorization"), target)
			}
		}
		r, err := ParseRoute([]byte(target), nil)
		if err != nil {
			return
		}
		up := p.upstreamURI(nil, r)
		if _, q, ok := bytes.Cut(up, []byte("?")); ok {
			for _, pair := range bytes.Split(q, []byte("&")) {
				if bytes.Equal(pair, []byte("token")) || bytes.HasPrefix(pair, []byte("token=")) {
					t.Fatalf("upstream target %q still carries the token (from %q)", up, target)
				}
			}
		}
	})
}
