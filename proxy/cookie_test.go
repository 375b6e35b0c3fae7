package proxy_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/nocrd/nocrd/internal/testcert"
	"github.com/nocrd/nocrd/proxy"
)

// navigate is what a browser adds to a top-level navigation.
const navigate = "Sec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n"

// rawAnswer sends request as rawSeen does and returns the whole answer.
func rawAnswer(t *testing.T, base, request string) *http.Response {
	t.Helper()
	conn := dialProxy(t, base)
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp
}

// decode requires a 200 and reads what the backend saw from its body.
func decode(t *testing.T, resp *http.Response, s *seen) {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	*s = seen{}
	if err := json.Unmarshal(b, s); resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("%s: %d %s", resp.Request.URL, resp.StatusCode, b)
	}
}

// TestTokenCookie: a browser that opens a workspace with ?token= is sent
// to the same address without it and keeps the token in a cookie for that
// workspace's route, which then authenticates the page's every request
// and never reaches the workspace, in any request the proxy forwards.
func TestTokenCookie(t *testing.T) {
	addr, hits := backend(t)
	base, _ := startProxy(t, staticResolver{"a": {Addr: addr, Owner: "alice"}, "b": {Addr: addr, Owner: "bob"}},
		proxy.Options{BaseURL: "/gw", Authorizer: hs256Verifier(t), TokenCookie: true})
	alice := token(t, "s3cret", "alice", time.Hour)

	// The navigation: answered by the proxy, not the workspace.
	before := hits.Load()
	resp := rawAnswer(t, base, "GET /gw/route/a/lab/a?x=1&token="+alice+"&y=%20 HTTP/1.1\r\nHost: h\r\n"+navigate+"\r\n")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/gw/route/a/lab/a?x=1&y=%20" ||
		resp.Header.Get("Cache-Control") != "no-store" || hits.Load() != before {
		t.Fatalf("navigation answered %d %v (the workspace saw %d)", resp.StatusCode, resp.Header, hits.Load()-before)
	}
	resp2 := rawAnswer(t, base, "GET /gw/route/a?token="+alice+" HTTP/1.1\r\nHost: h\r\n"+navigate+"\r\n")
	if resp2.StatusCode != http.StatusSeeOther || resp2.Header.Get("Location") != "/gw/route/a/" {
		t.Errorf("navigation to the bare route: %d %v, want a 303 to /gw/route/a/", resp2.StatusCode, resp2.Header)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v", resp.Header["Set-Cookie"])
	}
	c := cookies[0]
	if c.Name != proxy.TokenCookie || c.Value != alice || c.Path != "/gw/route/a" || !c.HttpOnly ||
		c.SameSite != http.SameSiteLaxMode || c.Secure || c.MaxAge != 0 || !c.Expires.IsZero() {
		t.Errorf("cookie %q", resp.Header.Get("Set-Cookie"))
	}

	// A browser's way through it, with a cookie of the workspace's own.
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(base + "/gw/route/a/")
	jar.SetCookies(u, []*http.Cookie{{Name: "_xsrf", Value: "2|abc", Path: "/gw/route/a"}})
	browser := &http.Client{Jar: jar}
	req, _ := http.NewRequest(http.MethodGet, base+"/gw/route/a/lab?token="+alice, nil)
	req.Header.Set("Sec-Fetch-Dest", "document")
	r2, err := browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var s seen
	decode(t, r2, &s)
	if s.URI != "/lab" || strings.Contains(s.Raw, alice) || s.Header["Cookie"] != "_xsrf=2|abc" ||
		s.Header["Referer"] != base+"/gw/route/a/lab" { // Go's client names the address it was sent from
		t.Errorf("after the redirect the workspace saw %q", s.Raw)
	}
	// The page's script asks for more, with the cookie alone.
	r3, err := browser.Get(base + "/gw/route/a/api/contents")
	if err != nil {
		t.Fatal(err)
	}
	decode(t, r3, &s)
	if s.URI != "/api/contents" || strings.Contains(s.Raw, alice) {
		t.Errorf("a request with the cookie: the workspace saw %q", s.Raw)
	}

	// Every way a request is forwarded drops the cookie, whatever
	// authenticated it, and leaves the other cookies as they were sent.
	cookieLines := "Cookie: theme=\"dark\"; " + proxy.TokenCookie + "=" + alice + "; b=2\r\nX-Between: 1\r\nCookie: c=3\r\n"
	for name, request := range map[string]string{
		"GET":                   "GET /gw/route/a/x HTTP/1.1\r\nHost: h\r\n" + cookieLines + "\r\n",
		"GET with a header":     "GET /gw/route/a/x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + alice + "\r\n" + cookieLines + "\r\n",
		"POST":                  "POST /gw/route/a/x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n" + cookieLines + "\r\nbody",
		"HTTP/1.0":              "GET /gw/route/a/x HTTP/1.0\r\nHost: h\r\n" + cookieLines + "\r\n",
		"a WebSocket handshake": "GET /gw/route/a/x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + cookieLines + "\r\n",
	} {
		s := rawSeen(t, base, request)
		if strings.Contains(s.Raw, alice) || !strings.Contains(s.Raw, "Cookie: theme=\"dark\"; b=2\r\nX-Between: 1\r\nCookie: c=3\r\n") {
			t.Errorf("%s: the workspace saw %q", name, s.Raw)
		}
	}
	s = rawSeen(t, base, "GET /gw/route/a/x HTTP/1.1\r\nHost: h\r\nCookie: "+proxy.TokenCookie+"="+alice+"\r\n\r\n")
	if strings.Contains(strings.ToLower(s.Raw), "cookie") {
		t.Errorf("a Cookie field of the token alone went on: %q", s.Raw)
	}

	// The cookie is a credential like any other.
	before = hits.Load()
	resp = rawAnswer(t, base, "GET /gw/route/b/x HTTP/1.1\r\nHost: h\r\nCookie: "+proxy.TokenCookie+"="+alice+"\r\n\r\n")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("alice's cookie on bob's workspace: %d", resp.StatusCode)
	}
	expired := token(t, "s3cret", "alice", -time.Hour)
	resp = rawAnswer(t, base, "GET /gw/route/a/x HTTP/1.1\r\nHost: h\r\n"+navigate+"Cookie: "+proxy.TokenCookie+"="+expired+"\r\n\r\n")
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 1 || resp.Cookies()[0].MaxAge != -1 ||
		resp.Cookies()[0].Path != "/gw/route/a" || resp.Cookies()[0].Value != "" {
		t.Errorf("an expired cookie: %d %q, want 401 clearing it", resp.StatusCode, resp.Header["Set-Cookie"])
	}
	resp = rawAnswer(t, base, "GET /gw/route/a/x?token="+expired+" HTTP/1.1\r\nHost: h\r\n"+navigate+"\r\n")
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("a navigation with an expired token: %d %q, want 401 and no cookie", resp.StatusCode, resp.Header["Set-Cookie"])
	}
	resp = rawAnswer(t, base, "GET /gw/route/b/x?token="+alice+" HTTP/1.1\r\nHost: h\r\n"+navigate+"\r\n")
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("a navigation to another's workspace: %d %q, want 403 and no cookie", resp.StatusCode, resp.Header["Set-Cookie"])
	}
	if hits.Load() != before {
		t.Errorf("refused requests reached the workspace")
	}

	// What is not a top-level navigation goes on as before, the token
	// taken out of the query.
	for name, extra := range map[string]string{
		"no Fetch metadata": "",
		"a frame":           "Sec-Fetch-Dest: iframe\r\nSec-Fetch-Mode: navigate\r\n",
		"a fetch":           "Sec-Fetch-Dest: empty\r\nSec-Fetch-Mode: cors\r\n",
	} {
		s := rawSeen(t, base, "GET /gw/route/a/x?token="+alice+"&q=1 HTTP/1.1\r\nHost: h\r\n"+extra+"\r\n")
		if s.URI != "/x?q=1" {
			t.Errorf("%s: the workspace saw %q", name, s.URI)
		}
	}
	status, _ := raw(t, base, "POST /gw/route/a/x?token="+alice+" HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n"+navigate+"\r\n")
	if status != http.StatusOK {
		t.Errorf("a POST navigation: %d", status)
	}
}

// TestTokenCookieOff: without TokenCookie the proxy neither redirects nor
// reads the cookie, and so leaves it to the workspace.
func TestTokenCookieOff(t *testing.T) {
	addr, _ := backend(t)
	base, _ := startProxy(t, staticResolver{"a": {Addr: addr, Owner: "alice"}}, proxy.Options{Authorizer: hs256Verifier(t)})
	alice := token(t, "s3cret", "alice", time.Hour)
	s := rawSeen(t, base, "GET /route/a/x?token="+alice+" HTTP/1.1\r\nHost: h\r\n"+navigate+"Cookie: "+proxy.TokenCookie+"=kept\r\n\r\n")
	if s.URI != "/x" || s.Header["Cookie"] != proxy.TokenCookie+"=kept" {
		t.Errorf("the workspace saw %q", s.Raw)
	}
	if status, _ := raw(t, base, "GET /route/a/x HTTP/1.1\r\nHost: h\r\nCookie: "+proxy.TokenCookie+"="+alice+"\r\n\r\n"); status != http.StatusUnauthorized {
		t.Errorf("the cookie authenticated: %d", status)
	}
}

// TestTokenCookieSecure: over TLS the cookie is Secure.
func TestTokenCookieSecure(t *testing.T) {
	addr, _ := backend(t)
	pair := testcert.New(t, 1)
	p := proxy.New(staticResolver{"a": {Addr: addr, Owner: "alice"}}, proxy.Options{Authorizer: hs256Verifier(t), TokenCookie: true})
	t.Cleanup(p.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: p.ServeFastHTTP}
	done := make(chan struct{})
	go func() { _ = srv.Serve(tls.NewListener(l, pair.ServerConfig())); close(done) }()
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })

	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: pair.ClientConfig()},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(client.CloseIdleConnections)
	req, _ := http.NewRequest(http.MethodGet, "https://"+l.Addr().String()+"/route/a/?token="+token(t, "s3cret", "alice", time.Hour), nil)
	req.Header.Set("Sec-Fetch-Dest", "document")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 || !resp.Cookies()[0].Secure {
		t.Errorf("over TLS: %d %q", resp.StatusCode, resp.Header["Set-Cookie"])
	}
}

// TestRefererLosesToken: a page opened with ?token= names its address in
// the Referer of the requests it makes; with authentication the token
// parameter is taken out of it, as out of the request's own query, on
// every way a request is forwarded (without, see TestTokenParameter).
func TestRefererLosesToken(t *testing.T) {
	addr, _ := backend(t)
	for _, tokenCookie := range []bool{false, true} {
		opts := proxy.Options{Authorizer: hs256Verifier(t), TokenCookie: tokenCookie}
		cred := "Authorization: Bearer " + token(t, "s3cret", "alice", time.Hour) + "\r\n"
		base, _ := startProxy(t, staticResolver{"a": {Addr: addr, Owner: "alice"}}, opts)
		for _, c := range []struct{ referer, want string }{
			{"http://h/route/a/?token=secret", "http://h/route/a/"},
			{"http://h/route/a/lab?x=1&%74oken=secret&y=2#frag", "http://h/route/a/lab?x=1&y=2#frag"},
			{"http://h/route/a/lab?tokens=1&x=token", "http://h/route/a/lab?tokens=1&x=token"},
			{"http://h/", "http://h/"},
		} {
			for _, method := range []string{"GET", "POST"} {
				s := rawSeen(t, base, method+" /route/a/x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nReferer: "+c.referer+"\r\n"+cred+"\r\n")
				if s.Header["Referer"] != c.want || strings.Contains(s.Raw, "secret") {
					t.Errorf("token cookie %v, %s with Referer %q: the workspace saw %q", tokenCookie, method, c.referer, s.Raw)
				}
			}
		}
	}
}

// TestWorkspaceCookiesConfined: the cookies a workspace sets for its own
// paths are kept to its route, so two workspaces of one image open in one
// browser do not overwrite each other's cookies, and none reaches nocrd's
// other paths; with KeepPrefix the workspace sees, and sets, whole paths.
// A workspace cannot set the proxy's own cookie.
func TestWorkspaceCookiesConfined(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		for _, c := range []string{"sid=a; Path=/", "_xsrf=x; Path=/; SameSite=Lax", "plain=1", "same=1; Path=/a", "same=2; Path=/b",
			"own=1; Path=/gw/route/ws1/lab", proxy.TokenCookie + "=forged; Path=/"} {
			w.Header().Add("Set-Cookie", c)
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		_, _ = io.WriteString(w, strings.Repeat("b", n))
	})
	addr := wsServer(t, mux)
	alice := token(t, "s3cret", "alice", time.Hour)
	for _, keep := range []bool{false, true} {
		base, _ := startProxy(t, staticResolver{"ws1": {Addr: addr, Owner: "alice"}},
			proxy.Options{BaseURL: "/gw", KeepPrefix: keep, Authorizer: hs256Verifier(t), TokenCookie: true})
		for _, n := range []string{"2", "100000"} { // a small answer, and one streamed
			resp := rawAnswer(t, base, "GET /gw/route/ws1/x?n="+n+" HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer "+alice+"\r\n\r\n")
			got := strings.Join(resp.Header["Set-Cookie"], " | ")
			want := "sid=a; Path=/gw/route/ws1 | _xsrf=x; Path=/gw/route/ws1; SameSite=Lax | plain=1 | same=1; Path=/gw/route/ws1/a | same=2; Path=/gw/route/ws1/b | own=1; Path=/gw/route/ws1/lab"
			if keep {
				want = "sid=a; Path=/ | _xsrf=x; Path=/; SameSite=Lax | plain=1 | same=1; Path=/a | same=2; Path=/b | own=1; Path=/gw/route/ws1/lab"
			}
			if resp.StatusCode != 200 || got != want {
				t.Errorf("keep prefix %v, body of %s: %d\n got %s\nwant %s", keep, n, resp.StatusCode, got, want)
			}
		}
	}
}
