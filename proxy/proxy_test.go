package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"github.com/valyala/fasthttp"

	"github.com/nocrd/nocrd/internal/auth"
	"github.com/nocrd/nocrd/proxy"
)

// seen is what the backend received.
type seen struct {
	Method, URI, Body string
	Header            map[string]string
	Raw               string // the header block as received
}

// backend starts a real HTTP server on loopback that echoes each request as
// JSON, standing in for a workspace container.
func backend(t *testing.T) (addr string, hits *atomic.Int32) {
	t.Helper()
	hits = &atomic.Int32{}
	srv := &fasthttp.Server{
		DisableHeaderNamesNormalizing: true,
		Handler: func(ctx *fasthttp.RequestCtx) {
			hits.Add(1)
			s := seen{Method: string(ctx.Method()), URI: string(ctx.Request.Header.RequestURI()), Body: string(ctx.PostBody()), Header: map[string]string{},
				Raw: string(ctx.Request.Header.RawHeaders())}
			for k, v := range ctx.Request.Header.All() {
				s.Header[string(k)] = string(v)
			}
			b, _ := json.Marshal(s)
			ctx.Response.Header.Set("Connection", "X-Backend-Private")
			ctx.Response.Header.Set("X-Backend-Private", "hop")
			ctx.Response.Header.Set("X-Backend", "yes")
			ctx.SetContentType("application/json")
			ctx.SetBody(b)
		},
	}
	return serve(t, srv), hits
}

func serve(t testing.TB, srv *fasthttp.Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(l); close(done) }()
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	return l.Addr().String()
}

type staticResolver map[string]proxy.Endpoint

func (s staticResolver) Resolve(_ context.Context, id string) (proxy.Endpoint, error) {
	switch ep, ok := s[id]; {
	case id == "starting":
		return proxy.Endpoint{}, &proxy.Error{Status: http.StatusServiceUnavailable, Detail: "workspace starting is not ready"}
	case !ok:
		return proxy.Endpoint{}, &proxy.Error{Status: http.StatusNotFound, Detail: "no workspace " + id}
	default:
		return ep, nil
	}
}

func startProxy(t *testing.T, r proxy.Resolver, opts proxy.Options) (string, *proxy.Proxy) {
	t.Helper()
	p := proxy.New(r, opts)
	t.Cleanup(p.Close)
	return "http://" + serve(t, &fasthttp.Server{Handler: p.ServeFastHTTP, StreamRequestBody: true, DisablePreParseMultipartForm: true}), p
}

// raw sends exact request bytes and returns the status code and body.
// TestWorkspaceAuthorization: with authentication the proxy removes the
// Authorization header when it consumed it (a bearer token, unless
// PassAuthorization), and only then: when the token came from the query
// or the cookie, an Authorization header that is not a bearer token is the
// workspace's own (Basic for a terminal server, JupyterLab's "token ...")
// and goes on, by every way a request is forwarded.
//
// With PassAuthorization the workspace gets its caller's token however it
// came: the bearer header as it was, and for a token from the query or
// the cookie (a browser's) an Authorization header the proxy makes, unless
// the request has a header of its own.
func TestWorkspaceAuthorization(t *testing.T) {
	addr, _ := backend(t)
	alice := token(t, "s3cret", "alice", time.Hour)
	cookie := "Cookie: " + proxy.TokenCookie + "=" + alice + "\r\n"
	for _, pass := range []bool{false, true} {
		base, _ := startProxy(t, staticResolver{"a": {Addr: addr, Owner: "alice"}},
			proxy.Options{Authorizer: hs256Verifier(t), TokenCookie: true, PassAuthorization: pass})
		// want and wantPassed are the workspace's Authorization fields,
		// without and with PassAuthorization.
		for _, c := range []struct{ name, target, fields, want, wantPassed string }{
			{"bearer", "/route/a/x", "Authorization: Bearer " + alice + "\r\n", "", "Bearer " + alice},
			{"bearer, with a second field", "/route/a/x", "Authorization: Bearer " + alice + "\r\nAuthorization: Basic dTpw\r\n", "", "Bearer " + alice + "|Basic dTpw"},
			{"the cookie", "/route/a/x", cookie, "", "Bearer " + alice},
			{"the query", "/route/a/x?token=" + alice, "", "", "Bearer " + alice},
			{"basic with the cookie", "/route/a/x", "Authorization: Basic dTpw\r\n" + cookie, "Basic dTpw", "Basic dTpw"},
			{"jupyter's with the query", "/route/a/x?token=" + alice, "Authorization: token jupyter-secret\r\n", "token jupyter-secret", "token jupyter-secret"},
		} {
			want := c.want
			if pass {
				want = c.wantPassed
			}
			for _, method := range []string{"GET", "POST"} {
				s := rawSeen(t, base, method+" "+c.target+" HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n"+c.fields+"\r\n")
				var got []string
				for _, line := range strings.Split(s.Raw, "\r\n") {
					if v, ok := strings.CutPrefix(line, "Authorization: "); ok {
						got = append(got, v)
					}
				}
				if strings.Join(got, "|") != want || strings.Count(s.Raw, alice) != strings.Count(want, alice) {
					t.Errorf("pass %v, %s, %s: the workspace saw Authorization %q, want %q\n%s", pass, c.name, method, got, want, s.Raw)
				}
			}
		}
	}
}

// TestTokenParameter: with authentication a token query parameter is the
// proxy's and never reaches the workspace, nor does a Referer naming it,
// whichever way the request is forwarded (a head without a body, one with
// a body, a target in absolute-form, a query of only the token). Without
// authentication the proxy consumes no token: the parameter is the
// workspace's own (a Jupyter server's login link) and goes on as sent,
// as an Authorization header does.
func TestTokenParameter(t *testing.T) {
	addr, _ := backend(t)
	for _, auth := range []bool{false, true} {
		opts, cred := proxy.Options{}, ""
		if auth {
			opts.Authorizer = hs256Verifier(t)
			cred = "Authorization: Bearer " + token(t, "s3cret", "alice", time.Hour) + "\r\n"
		}
		base, _ := startProxy(t, staticResolver{"a": {Addr: addr, Owner: "alice"}}, opts)
		for _, c := range []struct{ target, referer, want, wantReferer string }{
			{"/route/a/lab?x=1&token=T&y=2&%74oken=T", "http://h/route/a/?token=T", "/lab?x=1&y=2", "http://h/route/a/"},
			{"/route/a/lab?token=T", "http://h/route/a/lab?a=1&token=T#f", "/lab", "http://h/route/a/lab?a=1#f"},
			{"http://h/route/a/abs?token=T&x=1", "http://h/", "/abs?x=1", "http://h/"},
			{"/route/a/lab?tokens=1&x=token", "http://h/?tokens=1", "/lab?tokens=1&x=token", "http://h/?tokens=1"},
		} {
			for _, method := range []string{"GET", "POST"} {
				s := rawSeen(t, base, method+" "+c.target+" HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nReferer: "+c.referer+"\r\n"+cred+"\r\n")
				want, wantReferer := c.want, c.wantReferer
				if !auth {
					want, wantReferer = strings.TrimPrefix(c.target, "http://h")[len("/route/a"):], c.referer
				}
				if s.URI != want || s.Header["Referer"] != wantReferer {
					t.Errorf("auth %v, %s %s with Referer %q: the workspace saw %q and %q, want %q and %q",
						auth, method, c.target, c.referer, s.URI, s.Header["Referer"], want, wantReferer)
				}
			}
		}
	}
}

// dialProxy connects to the proxy at base, closes the connection when the
// test ends, and bounds every read and write on it by 10 s, so that a
// test fails rather than hangs.
func dialProxy(t *testing.T, base string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn
}

func raw(t *testing.T, base, request string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// rawSeen sends request with raw, requires a 200 and returns what the
// backend saw.
func rawSeen(t *testing.T, base, request string) seen {
	t.Helper()
	status, body := raw(t, base, request)
	var s seen
	if err := json.Unmarshal([]byte(body), &s); status != 200 || err != nil {
		t.Fatalf("status %d (%v): %s", status, err, body)
	}
	return s
}

func get(t *testing.T, url string, header map[string]string) (*http.Response, seen) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s seen
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("backend answer %q: %v", b, err)
		}
	} else {
		s.Body = string(b)
	}
	return resp, s
}

func TestForwarding(t *testing.T) {
	addr, hits := backend(t)
	base, _ := startProxy(t, staticResolver{"ws1": {Addr: addr, Owner: "alice"}}, proxy.Options{BaseURL: "/gw/"})

	resp, s := get(t, base+"/gw/route/ws1/a/b%20c?x=1&token=secret&y=2&%74oken=secret", map[string]string{
		"X-Custom": "kept", "Connection": "X-Secret", "X-Secret": "dropped", "Proxy-Authorization": "Basic x",
		"X-Forwarded-For": "10.9.8.7", "Authorization": "Bearer passes-without-auth",
		// What CGI-like servers read as the proxy's own headers.
		"X_Forwarded_Host": "evil", "X_Forwarded_For": "6.6.6.6", "X_Nocrd_Subject": "mallory", "X_Custom": "kept",
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, s.Body)
	}
	checks := map[string]bool{
		"path and query (a token is the workspace's without auth)": s.URI == "/a/b%20c?x=1&token=secret&y=2&%74oken=secret",
		"custom header":                        s.Header["X-Custom"] == "kept",
		"Connection-named header":              s.Header["X-Secret"] == "",
		"hop-by-hop":                           s.Header["Proxy-Authorization"] == "" && s.Header["Connection"] != "X-Secret",
		"X-Forwarded-For appended":             s.Header["X-Forwarded-For"] == "10.9.8.7, 127.0.0.1",
		"X-Forwarded-Proto":                    s.Header["X-Forwarded-Proto"] == "http",
		"X-Forwarded-Host":                     strings.HasPrefix(s.Header["X-Forwarded-Host"], "127.0.0.1:"),
		"X-Forwarded-Prefix":                   s.Header["X-Forwarded-Prefix"] == "/gw/route/ws1",
		"Authorization untouched without auth": s.Header["Authorization"] == "Bearer passes-without-auth",
		"response header":                      resp.Header.Get("X-Backend") == "yes",
		"response hop-by-hop":                  resp.Header.Get("X-Backend-Private") == "",
		"the proxy's headers spelled with '_'": !strings.Contains(s.Raw, "evil") && !strings.Contains(s.Raw, "6.6.6.6") && !strings.Contains(s.Raw, "mallory"),
		"other headers spelled with '_'":       s.Header["X_custom"] == "kept",
	}
	for what, ok := range checks {
		if !ok {
			t.Errorf("%s: %+v / %v", what, s, resp.Header)
		}
	}

	// A target in absolute-form, as RFC 9112 section 3.2.2 has servers
	// accept, with and without a body.
	for _, m := range []string{"GET", "POST"} {
		s := rawSeen(t, base, m+" http://nocrd.example/gw/route/ws1/abs?x=1 HTTP/1.1\r\nHost: nocrd.example\r\nContent-Length: 0\r\n\r\n")
		if s.URI != "/abs?x=1" || s.Method != m {
			t.Errorf("absolute-form %s forwarded as %s %q", m, s.Method, s.URI)
		}
	}

	// A body.
	req, _ := http.NewRequest(http.MethodPost, base+"/gw/route/ws1/upload", strings.NewReader("payload"))
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var s2 seen
	_ = json.NewDecoder(r2.Body).Decode(&s2)
	r2.Body.Close()
	if s2.Method != "POST" || s2.Body != "payload" || s2.URI != "/upload" {
		t.Errorf("POST forwarded as %+v", s2)
	}

	// Errors are JSON with the right status, and nothing reaches the backend.
	before := hits.Load()
	for _, c := range []struct {
		request string
		status  int
	}{
		{"GET /gw/route/ghost/x HTTP/1.1\r\nHost: h\r\n\r\n", 404},
		{"GET /gw/route/starting/x HTTP/1.1\r\nHost: h\r\n\r\n", 503},
		{"GET /gw/route/ws1/../ws2/x HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"GET /gw/route/ws1/%2e%2e/ws2 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"GET /gw/route/ws1/a%2Fb HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"GET /gw/route/..%2Fws2/x HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"GET /route/ws1/x HTTP/1.1\r\nHost: h\r\n\r\n", 404},
	} {
		status, body := raw(t, base, c.request)
		var e struct{ Error, Detail string }
		if status != c.status || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" || e.Detail == "" {
			t.Errorf("%q: %d %s; want %d with a JSON error", strings.Fields(c.request)[1], status, body, c.status)
		}
	}
	if hits.Load() != before {
		t.Errorf("refused requests reached the backend")
	}
}

func TestRetryAfterAndUpstreamDown(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	base, _ := startProxy(t, staticResolver{"gone": {Addr: dead}}, proxy.Options{})
	resp, _ := get(t, base+"/route/starting/", nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("not ready: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	resp, s := get(t, base+"/route/gone/", nil)
	if resp.StatusCode != 502 || !strings.Contains(s.Body, "cannot be reached") {
		t.Errorf("upstream down: %d %s", resp.StatusCode, s.Body)
	}
}

func TestUpstreamTimeout(t *testing.T) {
	slow := serve(t, &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { time.Sleep(500 * time.Millisecond) }})
	base, _ := startProxy(t, staticResolver{"slow": {Addr: slow}}, proxy.Options{UpstreamTimeout: 100 * time.Millisecond})
	resp, s := get(t, base+"/route/slow/", nil)
	if resp.StatusCode != 504 {
		t.Errorf("slow upstream: %d %s", resp.StatusCode, s.Body)
	}
}

func token(t *testing.T, secret, sub string, exp time.Duration) string {
	t.Helper()
	tok := jwt.New()
	_ = tok.Set(jwt.SubjectKey, sub)
	_ = tok.Set(jwt.ExpirationKey, time.Now().Add(exp))
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256, []byte(secret)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hs256Verifier verifies the tokens token signs with "s3cret".
func hs256Verifier(t *testing.T) *auth.Verifier {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := auth.NewVerifier(ctx, auth.Config{SubJSONPath: "$.sub", JWTSecret: "s3cret"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// wsServer starts a real HTTP server on loopback serving mux, for the
// WebSocket tests, and returns its address.
func wsServer(t *testing.T, mux http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go func() { _ = hs.Serve(l) }()
	t.Cleanup(func() { _ = hs.Close() })
	return l.Addr().String()
}

// TestOwnership: with an Authorizer, only the owner's verified token
// reaches a workspace, and the proxy's credentials are not forwarded.
func TestOwnership(t *testing.T) {
	addr, hits := backend(t)
	v := hs256Verifier(t)
	base, _ := startProxy(t, staticResolver{"a": {Addr: addr, Owner: "alice"}, "b": {Addr: addr, Owner: "bob"}},
		proxy.Options{Authorizer: v})
	alice := token(t, "s3cret", "alice", time.Hour)

	resp, s := get(t, base+"/route/a/x?q=1", map[string]string{"Authorization": "Bearer " + alice})
	if resp.StatusCode != 200 || s.Header["Authorization"] != "" || s.URI != "/x?q=1" {
		t.Errorf("owner with header: %d %+v", resp.StatusCode, s)
	}
	resp, s = get(t, base+"/route/a/x?token="+alice+"&q=1", nil)
	if resp.StatusCode != 200 || s.URI != "/x?q=1" {
		t.Errorf("owner with query token: %d %+v", resp.StatusCode, s)
	}
	before := hits.Load()
	for name, c := range map[string]struct {
		url    string
		header map[string]string
		status int
	}{
		"no token":        {"/route/a/x", nil, 401},
		"garbage":         {"/route/a/x", map[string]string{"Authorization": "Bearer garbage"}, 401},
		"wrong key":       {"/route/a/x", map[string]string{"Authorization": "Bearer " + token(t, "other", "alice", time.Hour)}, 401},
		"expired":         {"/route/a/x", map[string]string{"Authorization": "Bearer " + token(t, "s3cret", "alice", -time.Hour)}, 401},
		"other's space":   {"/route/b/x", map[string]string{"Authorization": "Bearer " + alice}, 403},
		"basic auth":      {"/route/a/x", map[string]string{"Authorization": "Basic YWxpY2U6eA=="}, 401},
		"unknown with ok": {"/route/ghost/x", map[string]string{"Authorization": "Bearer " + alice}, 404},
	} {
		resp, s := get(t, base+c.url, c.header)
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d %s, want %d", name, resp.StatusCode, s.Body, c.status)
		}
		if c.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: no WWW-Authenticate challenge", name)
		}
	}
	if hits.Load() != before {
		t.Errorf("refused requests reached the backend")
	}
}

type allowAll struct{}

func (allowAll) Decide(context.Context, *proxy.Upstream, proxy.RouteInfo, *fasthttp.Response) (bool, error) {
	return true, nil
}

// TestForwardedHeadersExact: what the proxy does not own reaches the
// workspace byte for byte (cookies keep their quotes and stay two
// headers), while every copy of the headers it does own is replaced: a
// client cannot slip a second X-Forwarded-Host or -Proto past it. Prior
// X-Forwarded-For headers are kept as one chain, unless the client marked
// them hop-by-hop. Lines of one name keep their order when a header before
// them is dropped (fasthttp's own deletion would swap them).
func TestForwardedHeadersExact(t *testing.T) {
	addr, _ := backend(t)
	for _, c := range []struct {
		name string
		opts proxy.Options
	}{{"plain", proxy.Options{}}, {"with a route policy", proxy.Options{Policy: allowAll{}}}} {
		t.Run(c.name, func(t *testing.T) {
			base, _ := startProxy(t, staticResolver{"a": {Addr: addr, Owner: "alice"}}, c.opts)
			s := rawSeen(t, base, "GET /route/a/x HTTP/1.1\r\nHost: h.example\r\nKeep-Alive: timeout=5\r\nX-Multi: 1\r\n"+
				"Cookie: a=\"q v\"; b=2\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Host: evil.example\r\n"+
				"Cookie: c=3\r\nX-Forwarded-Host: evil2.example\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 10.0.0.2\r\n"+
				"x-forwarded-prefix: /evil\r\nX-Nocrd-Owner: root\r\nX-Multi: 2\r\n\r\n")
			lines := map[string][]string{}
			for _, l := range strings.Split(strings.TrimSpace(s.Raw), "\r\n") {
				k, v, _ := strings.Cut(l, ": ")
				lines[strings.ToLower(k)] = append(lines[strings.ToLower(k)], v)
			}
			want := map[string][]string{
				"cookie":             {`a="q v"; b=2`, "c=3"},
				"x-forwarded-for":    {"10.0.0.1, 10.0.0.2, 127.0.0.1"},
				"x-forwarded-host":   {"h.example"},
				"x-forwarded-proto":  {"http"},
				"x-forwarded-prefix": {"/route/a"},
				"x-nocrd-owner":      nil,
				"keep-alive":         nil,
				"x-multi":            {"1", "2"}, // RFC 9110 section 5.3: in their order
			}
			for k, v := range want {
				if !slices.Equal(lines[k], v) {
					t.Errorf("%s: forwarded %q, want %q\n%s", k, lines[k], v, s.Raw)
				}
			}
		})
	}

	base, _ := startProxy(t, staticResolver{"a": {Addr: addr, Owner: "alice"}}, proxy.Options{})
	s := rawSeen(t, base, "GET /route/a/x HTTP/1.1\r\nHost: h\r\nConnection: x-forwarded-for\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n")
	if s.Header["X-Forwarded-For"] != "127.0.0.1" {
		t.Errorf("X-Forwarded-For named in Connection: forwarded %q, want only the client", s.Header["X-Forwarded-For"])
	}
}

// TestRequestsShareNothing: requests that follow one another on a client
// connection, and so reuse the proxy's working memory, each reach the
// workspace with only their own body and headers.
func TestRequestsShareNothing(t *testing.T) {
	addr, _ := backend(t)
	p := proxy.New(staticResolver{"ws1": {Addr: addr, Owner: "alice"}}, proxy.Options{})
	t.Cleanup(p.Close)
	// The body comes as a stream, or read whole first.
	for _, stream := range []bool{true, false} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			requestsShareNothing(t, serve(t, &fasthttp.Server{Handler: p.ServeFastHTTP, StreamRequestBody: stream}))
		})
	}
}

func requestsShareNothing(t *testing.T, addr string) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	send := func(request string) seen {
		t.Helper()
		if _, err := io.WriteString(conn, request); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var s seen
		if err := json.Unmarshal(b, &s); resp.StatusCode != 200 || err != nil {
			t.Fatalf("status %d (%v): %s", resp.StatusCode, err, b)
		}
		return s
	}
	for i := range 20 {
		var first seen
		if i%2 == 0 {
			first = send("POST /route/ws1/a HTTP/1.1\r\nHost: x\r\nX-Only-First: 1\r\nContent-Length: 5\r\n\r\nfirst")
		} else {
			first = send("POST /route/ws1/a HTTP/1.1\r\nHost: x\r\nX-Only-First: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n")
		}
		if first.Body != "first" {
			t.Fatalf("round %d: the POST arrived with body %q", i, first.Body)
		}
		// GET never carries a body in fasthttp; DELETE and an empty POST
		// would carry one left over.
		for _, method := range []string{"GET", "DELETE", "POST"} {
			next := send(method + " /route/ws1/b HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
			if next.Method != method || next.URI != "/b" || next.Body != "" {
				t.Fatalf("round %d: the %s arrived as %s %s with body %q", i, method, next.Method, next.URI, next.Body)
			}
			if v, ok := next.Header["X-Only-First"]; ok {
				t.Fatalf("round %d: the %s arrived with X-Only-First: %q", i, method, v)
			}
			if v := next.Header["Content-Length"]; v != "" && v != "0" {
				t.Fatalf("round %d: the %s arrived with Content-Length: %q", i, method, v)
			}
		}
	}
}

// TestNoHostNoForwardedHost: a request without a Host header (HTTP/1.0
// allows it) reaches the workspace with the workspace's address as its
// Host and no X-Forwarded-Host, not an empty one a framework would build
// its URLs from.
func TestNoHostNoForwardedHost(t *testing.T) {
	addr, _ := backend(t)
	base, _ := startProxy(t, staticResolver{"a": {Addr: addr}}, proxy.Options{})
	for _, req := range []string{
		"GET /route/a/x HTTP/1.0\r\n\r\n",
		"POST /route/a/x HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi",
	} {
		s := rawSeen(t, base, req)
		if _, ok := s.Header["X-Forwarded-Host"]; ok || s.Header["Host"] != addr {
			t.Errorf("%q: the workspace saw %v", req, s.Header)
		}
	}
}

// TestNoInventedContentType: a body sent without a Content-Type reaches
// the workspace without one; the client's own is kept.
func TestNoInventedContentType(t *testing.T) {
	addr, _ := backend(t)
	base, _ := startProxy(t, staticResolver{"a": {Addr: addr}}, proxy.Options{})
	for req, want := range map[string]string{
		"POST /route/a/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi":                           "",
		"PUT /route/a/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n": "",
		"POST /route/a/x HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 2\r\n\r\nhi": "text/csv",
	} {
		s := rawSeen(t, base, req)
		if got, ok := s.Header["Content-Type"]; got != want || (want == "") == ok || s.Body != "hi" {
			t.Errorf("%q: the workspace saw Content-Type %q (%v), body %q", req, got, ok, s.Body)
		}
	}
}

// TestSubjectWithControlCharacters: a verified token whose subject holds
// a CR or LF is refused (401). Taken as it is, it would own a workspace
// of that name and be written into the subject header as header lines of
// the caller's choosing.
func TestSubjectWithControlCharacters(t *testing.T) {
	addr, hits := backend(t)
	evil := "alice\r\nX-Admin: true"
	base, _ := startProxy(t, staticResolver{"a": {Addr: addr, Owner: evil}},
		proxy.Options{Authorizer: hs256Verifier(t), SubjectHeader: "X-Forwarded-User"})
	resp, s := get(t, base+"/route/a/x", map[string]string{"Authorization": "Bearer " + token(t, "s3cret", evil, time.Hour)})
	if resp.StatusCode != http.StatusUnauthorized || hits.Load() != 0 {
		t.Errorf("answered %d; the workspace saw %v", resp.StatusCode, s.Header)
	}
}

// TestTrustedProxyHeaders: behind a proxy in TrustedProxies (a TLS
// ingress, say), the workspace is told the scheme and host the client
// used, on every way a request is forwarded; any other client's claims
// are replaced by what nocrd saw. What nocrd says back to the client (the
// 401's metadata URL, the cookie's Secure flag) follows the client's
// X-Forwarded-Proto and -Host either way, as the MCP side's metadata does.
func TestTrustedProxyHeaders(t *testing.T) {
	addr, _ := backend(t)
	alice := token(t, "s3cret", "alice", time.Hour)
	claims := "X-Forwarded-Proto: https\r\nX-Forwarded-Host: nocrd.example.com\r\n"
	for _, c := range []struct {
		trusted     string
		proto, host string
	}{
		{"127.0.0.0/8", "https", "nocrd.example.com"},
		{"127.0.0.1", "https", "nocrd.example.com"},
		{"10.0.0.0/8", "http", "h"},
		{"", "http", "h"},
	} {
		cfg := proxy.Config{TrustedProxies: c.trusted}
		prefixes, err := cfg.TrustedPrefixes()
		if err != nil {
			t.Fatal(err)
		}
		base, _ := startProxy(t, staticResolver{"a": {Addr: addr, Owner: "alice"}}, proxy.Options{
			Authorizer: hs256Verifier(t), TokenCookie: true, TrustedProxies: prefixes, ResourceMetadataPath: "/.well-known/oauth-protected-resource/route"})
		for _, method := range []string{"GET", "POST"} {
			s := rawSeen(t, base, method+" /route/a/x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nAuthorization: Bearer "+alice+"\r\n"+claims+"\r\n")
			if s.Header["X-Forwarded-Proto"] != c.proto || s.Header["X-Forwarded-Host"] != c.host ||
				strings.Count(s.Raw, "X-Forwarded-Proto") != 1 || strings.Count(s.Raw, "X-Forwarded-Host") != 1 {
				t.Errorf("trusting %q, %s: the workspace saw %q", c.trusted, method, s.Raw)
			}
		}
		resp := rawAnswer(t, base, "GET /route/a/x HTTP/1.1\r\nHost: h\r\n"+claims+"\r\n")
		if want := `resource_metadata="https://nocrd.example.com/.well-known/oauth-protected-resource/route"`; !strings.Contains(resp.Header.Get("WWW-Authenticate"), want) {
			t.Errorf("trusting %q: challenge %q, want %s", c.trusted, resp.Header.Get("WWW-Authenticate"), want)
		}
		resp = rawAnswer(t, base, "GET /route/a/?token="+alice+" HTTP/1.1\r\nHost: h\r\n"+navigate+claims+"\r\n")
		if cs := resp.Cookies(); resp.StatusCode != http.StatusSeeOther || len(cs) != 1 || !cs[0].Secure {
			t.Errorf("trusting %q: %d %q, want a Secure cookie", c.trusted, resp.StatusCode, resp.Header["Set-Cookie"])
		}
	}
}
