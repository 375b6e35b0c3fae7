package proxy

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/url"
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

// FuzzTokenExtraction feeds arbitrary Authorization headers, request
// targets and Cookie headers to the proxy: it never panics, hands the
// Authorizer only a token that came from the header, the token parameter
// or the Cookie header, and never builds an upstream target that still
// carries the token parameter.
func FuzzTokenExtraction(f *testing.F) {
	f.Add("Bearer abc", "/route/w/x?token=t&a=1", "")
	f.Add("bearer  spaced ", "/route/w/?token&token=&x=token", "nocrd_token=c")
	f.Add("Basic dXNlcjpwYXNz", "/route/w/p?tok=1&token=%41", "")
	f.Add("", "/route/w/p?a=1&token=q&b=2&token=r", "")
	f.Add("", "/route/w/p?%74oken=q&a=1&tok%65n=r&to%6ben", "")
	f.Add("", "/route/w/p?token%3D=1&+token=2&token+=3&%7=4", "")
	f.Add("", "/route/w/p", "a=1; nocrd_token=\"q\"; nocrd_token=r")
	f.Add("", "http://h/route/w/p?token=q", " nocrd_token = ; x")
	f.Fuzz(func(t *testing.T, authz, target, cookie string) {
		rec := &recordingAuthorizer{}
		p := New(nobodyResolver{t}, Options{Authorizer: rec, TokenCookie: true})
		var req fasthttp.Request
		req.Header.SetRequestURI(target)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
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
			fromCookie := strings.Contains(string(req.Header.Peek("Cookie")), tok)
			if !fromHeader && !fromQuery && !fromCookie {
				t.Fatalf("token %q came from none of %q (received as %q), %q and %q", tok, authz, req.Header.Peek("Authorization"), target, cookie)
			}
		}
		r, err := ParseRoute([]byte(target), nil)
		if err != nil {
			return
		}
		// The workspace reads the query as fasthttp (and the proxy's token)
		// does, escapes decoded: no key it sees may be the token's.
		up := p.upstreamURI(nil, r)
		if _, q, ok := bytes.Cut(up, []byte("?")); ok {
			var args fasthttp.Args
			args.ParseBytes(q)
			if args.Has("token") {
				t.Fatalf("upstream target %q still carries the token (from %q)", up, target)
			}
			if u, err := url.ParseQuery(string(q)); err == nil && u.Has("token") {
				t.Fatalf("upstream target %q still carries the token for net/url (from %q)", up, target)
			}
		}
	})
}

func TestIsTokenParam(t *testing.T) {
	cases := []struct {
		pair string
		want bool
	}{
		{"token", true},
		{"token=", true},
		{"token=abc", true},
		{"token=a=b", true},
		{"%74oken=abc", true},
		{"%74%6F%6b%65%6E=abc", true},
		{"tok%65n", true},
		{"to%6Ben=x", true},
		{"tokens=abc", false},
		{"Token=abc", false},
		{"x=token", false},
		{"token+=abc", false}, // "token " to fasthttp
		{"+token=abc", false},
		{"%74oke=abc", false},
		{"token%=abc", false},
		{"token%3D=abc", false}, // the key is "token="
		{"%7=x", false},
		{"%", false},
		{"", false},
	}
	for _, c := range cases {
		if got := isTokenParam([]byte(c.pair)); got != c.want {
			t.Errorf("isTokenParam(%q) = %v, want %v", c.pair, got, c.want)
		}
		// The oracle: what fasthttp's query parsing, which token uses,
		// makes of the pair.
		var args fasthttp.Args
		args.Parse(c.pair)
		if args.Has("token") != c.want {
			t.Errorf("fasthttp reads %q as token: %v; the table says %v", c.pair, args.Has("token"), c.want)
		}
	}
}
