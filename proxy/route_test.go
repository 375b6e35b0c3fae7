package proxy

import (
	"bytes"
	"net/url"
	"strings"
	"testing"
)

func TestParseRoute(t *testing.T) {
	cases := []struct {
		uri, base       string
		id, path, query string
		status          int
	}{
		{uri: "/route/ws1/index.html", id: "ws1", path: "/index.html"},
		{uri: "/route/ws1", id: "ws1", path: "/"},
		{uri: "/route/ws1/", id: "ws1", path: "/"},
		{uri: "/route/ws1/a/b?x=1&token=t", id: "ws1", path: "/a/b", query: "x=1&token=t"},
		{uri: "/route/Agent_session-42.v2/api", id: "Agent_session-42.v2", path: "/api"},
		{uri: "/route/ws1/a%20b/%7Euser", id: "ws1", path: "/a%20b/%7Euser"},
		{uri: "/route/ws1/file.tar.gz", id: "ws1", path: "/file.tar.gz"},
		{uri: "/route/ws1/...", id: "ws1", path: "/..."},
		{uri: "/route/ws1/x#frag", id: "ws1", path: "/x"},
		{uri: "/gw/route/ws1/x", base: "/gw", id: "ws1", path: "/x"},
		{uri: "/route/ws1/x", base: "/gw", status: 404},
		{uri: "/mcp", status: 404},
		{uri: "/routes/ws1/x", status: 404},
		{uri: "/route/", status: 400},
		{uri: "/route//x", status: 400},
		{uri: "/route/-ws/x", status: 400},
		{uri: "/route/ws%31/x", status: 400},
		{uri: "/route/" + strings.Repeat("a", 64) + "/x", status: 400},
		{uri: "/route/a/../b/x", status: 400},
		{uri: "/route/a/..", status: 400},
		{uri: "/route/a/./x", status: 400},
		{uri: "/route/a/%2e%2e/b", status: 400},
		{uri: "/route/a/%2E%2e/b", status: 400},
		{uri: "/route/a/.%2e/b", status: 400},
		{uri: "/route/a/x%2Fy", status: 400},
		{uri: "/route/a/x%5cy", status: 400},
		{uri: "/route/a/x\\..\\b", status: 400},
		{uri: "/route/a/x%00", status: 400},
		{uri: "/route/a/x%2", status: 400},
		{uri: "/route/a//etc", status: 400},
		{uri: "/route/..%2fb/x", status: 400},
		// Absolute-form targets (RFC 9112 section 3.2.2).
		{uri: "http://nocrd.example/route/ws1/a?b=1", id: "ws1", path: "/a", query: "b=1"},
		{uri: "HTTPS://nocrd.example:8443/gw/route/ws1/a", base: "/gw", id: "ws1", path: "/a"},
		{uri: "http://nocrd.example", status: 404},
		{uri: "http://nocrd.example?/route/ws1/", status: 404},
		{uri: "http://evil/route/a/../b/x", status: 400},
		{uri: "ftp://h/route/ws1/a", status: 404},
		{uri: "*", status: 404},
	}
	for _, c := range cases {
		r, err := ParseRoute([]byte(c.uri), []byte(c.base))
		if c.status != 0 {
			if err == nil || err.Status != c.status {
				t.Errorf("ParseRoute(%q) = %+v, %v; want status %d", c.uri, r, err, c.status)
			}
			continue
		}
		if err != nil || string(r.ID) != c.id || string(r.Path) != c.path || string(r.Query) != c.query {
			t.Errorf("ParseRoute(%q) = id %q path %q query %q, %v; want %q %q %q", c.uri, r.ID, r.Path, r.Query, err, c.id, c.path, c.query)
		}
	}
}

func TestParseRouteDoesNotAllocate(t *testing.T) {
	base := []byte("/gw")
	for _, uri := range []string{"/gw/route/ws-1/a/b/c?x=1", "https://h/gw/route/ws-1/a?x=1"} {
		b := []byte(uri)
		if n := testing.AllocsPerRun(100, func() { _, _ = ParseRoute(b, base) }); n != 0 {
			t.Errorf("ParseRoute(%q) allocates %.0f times", uri, n)
		}
	}
}

// FuzzParseRoute: an accepted target names a valid id, and its path, once
// decoded as a server would, has no dot segment and cannot climb out of the
// workspace.
func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"/route/a/b", "http://h/route/a/b", "/route/a/../b", "/route/a/%2e%2e/x", "/route/a/x?y", "/route/a/%252e%252e/", "/route/a/%C0%AE%C0%AE/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		r, err := ParseRoute([]byte(uri), nil)
		if err != nil {
			return
		}
		if !validID(r.ID) || !bytes.HasPrefix(r.Path, []byte("/")) {
			t.Fatalf("accepted %q as id %q path %q", uri, r.ID, r.Path)
		}
		decoded, derr := url.PathUnescape(string(r.Path))
		if derr != nil {
			return // the workspace server will refuse it too
		}
		for _, seg := range strings.Split(decoded, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("accepted %q whose path decodes to %q", uri, decoded)
			}
		}
		if strings.ContainsAny(decoded, "\\\x00") {
			t.Fatalf("accepted %q whose path decodes to %q", uri, decoded)
		}
	})
}

func BenchmarkParseRoute(b *testing.B) {
	uri, base := []byte("/gw/route/agent-session-42/api/v1/files/src/main.go?raw=1&token=x"), []byte("/gw")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRoute(uri, base); err != nil {
			b.Fatal(err)
		}
	}
}
