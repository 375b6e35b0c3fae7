package proxy_test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/nocrd/nocrd/proxy"
)

// TestRelocate: a redirect to a path of the workspace's own (as it sees
// its paths, without the route) is put under the workspace's route, so a
// browser stays in the workspace; with KeepPrefix the workspace sees, and
// names, whole paths.
func TestRelocate(t *testing.T) {
	cases := []struct {
		status     int
		loc, moved string
	}{
		{302, "/login?next=/x", "/gw/route/ws1/login?next=/x"},
		{302, "/", "/gw/route/ws1/"},
		{301, "http://h/lab#top", "http://h/gw/route/ws1/lab#top"},
		{303, "HTTP://H/lab", "HTTP://H/gw/route/ws1/lab"},
		{307, "https://other.example/x", ""},
		{302, "http://h", ""},
		{302, "tree", ""},
		{302, "../tree", ""},
		{302, "/gw/route/ws1/already", ""},
		{302, "/gw/route/ws1", ""},
		{302, "/gw/route/ws10/x", "/gw/route/ws1/gw/route/ws10/x"},
		{302, "//evil.example/x", ""},
		{302, "/\\evil.example/x", ""},
		{201, "/items/1", "/gw/route/ws1/items/1"},
		{200, "/x", ""},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c := cases[len(r.URL.Query().Get("i"))]
		w.Header().Set("Location", c.loc)
		w.WriteHeader(c.status)
	})
	addr := wsServer(t, mux)
	for _, keep := range []bool{false, true} {
		base, _ := startProxy(t, staticResolver{"ws1": {Addr: addr}}, proxy.Options{BaseURL: "/gw", KeepPrefix: keep})
		for i, c := range cases {
			for _, method := range []string{"GET", "POST"} {
				resp := rawAnswer(t, base, method+" /gw/route/ws1/x?i="+strings.Repeat("i", i)+" HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
				want := c.moved
				if want == "" || keep {
					want = c.loc
				}
				if resp.StatusCode != c.status || resp.Header.Get("Location") != want {
					t.Errorf("keep prefix %v, %s, %d Location %q: the client got %d %q, want %q", keep, method, c.status, c.loc, resp.StatusCode, resp.Header.Get("Location"), want)
				}
			}
		}
	}
}

// TestRelocateTrustedHost: behind a trusted proxy, an absolute redirect on
// the host it named in X-Forwarded-Host goes under the route too.
func TestRelocateTrustedHost(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "https://"+r.Header.Get("X-Forwarded-Host")+"/login")
		w.WriteHeader(http.StatusFound)
	})
	addr := wsServer(t, mux)
	base, _ := startProxy(t, staticResolver{"ws1": {Addr: addr}}, proxy.Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	resp := rawAnswer(t, base, "GET /route/ws1/ HTTP/1.1\r\nHost: nocrd.internal\r\nX-Forwarded-Host: nocrd.example.com\r\nX-Forwarded-Proto: https\r\n\r\n")
	if got := resp.Header.Get("Location"); got != "https://nocrd.example.com/route/ws1/login" {
		t.Errorf("Location %q", got)
	}
}
