package proxy

import (
	"bufio"
	"cmp"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestUpstreamWrites: what a Policy may change on the request it is handed,
// and what it may not: reserved, hop-by-hop and framing headers, malformed
// names and values, a method that is not a token, a URI that is not a path.
// Refused writes change nothing and report false. Whatever was done, the
// other headers go on as they came: repeated ones in their order, cookies
// as sent.
func TestUpstreamWrites(t *testing.T) {
	const cookies, multi = `a="q v"; b=2|c=3`, "1|2"
	for _, c := range []struct {
		name  string
		write func(u *Upstream) bool
		ok    bool
		want  string // a header line that must be sent, or a request line
		never string // a string the head must not hold
		// The X-Multi and Cookie values sent, when the write is theirs.
		multi, cookies string
	}{
		{"set a header", func(u *Upstream) bool { return u.SetHeader([]byte("X-Policy"), []byte("yes")) }, true, "X-Policy: yes", "", "", ""},
		{"add a header", func(u *Upstream) bool { return u.AddHeader([]byte("x-user"), []byte("alice")) }, true, "X-User: alice", "", "", ""},
		{"replace a header", func(u *Upstream) bool { return u.SetHeader([]byte("accept"), []byte("text/html")) }, true, "Accept: text/html", "*/*", "", ""},
		{"replace the host", func(u *Upstream) bool { return u.SetHeader([]byte("Host"), []byte("app.internal")) }, true, "Host: app.internal", "Host: ws", "", ""},
		{"remove a header", func(u *Upstream) bool { return u.DelHeader([]byte("accept")) }, true, "", "Accept:", "", ""},
		{"reserved", func(u *Upstream) bool { return u.SetHeader([]byte(HeaderSubject), []byte("root")) }, false, "", "root", "", ""},
		{"reserved, lower case", func(u *Upstream) bool { return u.AddHeader([]byte("x-nocrd-owner"), []byte("root")) }, false, "", "root", "", ""},
		{"reserved, other name", func(u *Upstream) bool { return u.AddHeader([]byte("X-NOCRD-Anything"), []byte("root")) }, false, "", "root", "", ""},
		{"hop-by-hop", func(u *Upstream) bool { return u.SetHeader([]byte("Keep-Alive"), []byte("timeout=1")) }, false, "", "timeout=1", "", ""},
		{"connection", func(u *Upstream) bool { return u.AddHeader([]byte("connection"), []byte("close")) }, false, "", "close", "", ""},
		{"removing connection", func(u *Upstream) bool { return u.DelHeader([]byte("Connection")) }, false, "Connection: Upgrade", "", "", ""},
		{"transfer-encoding", func(u *Upstream) bool { return u.SetHeader([]byte("Transfer-Encoding"), []byte("chunked")) }, false, "", "chunked", "", ""},
		{"content-length", func(u *Upstream) bool { return u.SetHeader([]byte("Content-Length"), []byte("5")) }, false, "", "Content-Length", "", ""},
		{"name with CRLF", func(u *Upstream) bool { return u.SetHeader([]byte("X-A\r\nX-Nocrd-Subject"), []byte("root")) }, false, "", "root", "", ""},
		{"name with a space", func(u *Upstream) bool { return u.SetHeader([]byte(" X-Nocrd-Subject"), []byte("root")) }, false, "", "root", "", ""},
		{"name with a colon", func(u *Upstream) bool { return u.SetHeader([]byte("X-A:"), []byte("root")) }, false, "", "root", "", ""},
		{"empty name", func(u *Upstream) bool { return u.SetHeader(nil, []byte("root")) }, false, "", "root", "", ""},
		{"value with CRLF", func(u *Upstream) bool { return u.SetHeader([]byte("X-A"), []byte("1\r\nX-Nocrd-Subject: root")) }, false, "", "root", "", ""},
		{"value with NUL", func(u *Upstream) bool { return u.AddHeader([]byte("X-A"), []byte("1\x00root")) }, false, "", "root", "", ""},
		{"method", func(u *Upstream) bool { return u.SetMethod([]byte("PATCH")) }, true, "PATCH /api?x=1 HTTP/1.1", "", "", ""},
		{"method not a token", func(u *Upstream) bool { return u.SetMethod([]byte("GET /x")) }, false, "GET /api?x=1 HTTP/1.1", "", "", ""},
		{"uri", func(u *Upstream) bool { return u.SetURI([]byte("/v2/api?y=2")) }, true, "GET /v2/api?y=2 HTTP/1.1", "", "", ""},
		{"uri not a path", func(u *Upstream) bool { return u.SetURI([]byte("http://elsewhere/")) }, false, "GET /api?x=1 HTTP/1.1", "elsewhere", "", ""},
		{"set a repeated header", func(u *Upstream) bool { return u.SetHeader([]byte("x-multi"), []byte("3")) }, true, "", "", "3", ""},
		{"add to a repeated header", func(u *Upstream) bool { return u.AddHeader([]byte("X-Multi"), []byte("3")) }, true, "", "", "1|2|3", ""},
		{"remove a repeated header", func(u *Upstream) bool { return u.DelHeader([]byte("X-Multi")) }, true, "", "X-Multi", "-", ""},
		{"add a cookie", func(u *Upstream) bool { return u.AddHeader([]byte("Cookie"), []byte(`d="4"`)) }, true, "", "", "", cookies + `|d="4"`},
		{"set the cookies", func(u *Upstream) bool { return u.SetHeader([]byte("cookie"), []byte(`d="4"`)) }, true, "", "", "", `d="4"`},
		{"remove the cookies", func(u *Upstream) bool { return u.DelHeader([]byte("Cookie")) }, true, "", "Cookie", "", "-"},
		{"set a header sent spelled with '_'", func(u *Upstream) bool { return u.SetHeader([]byte("X-Workspace-User"), []byte("alice")) }, true, "X-Workspace-User: alice", "mallory", "", ""},
		{"remove a header sent spelled with '_'", func(u *Upstream) bool { return u.DelHeader([]byte("x-workspace-user")) }, true, "", "mallory", "", ""},
		{"reserved, spelled with '_'", func(u *Upstream) bool { return u.AddHeader([]byte("X_Nocrd_Subject"), []byte("root")) }, false, "", "root", "", ""},
		{"uri with a space", func(u *Upstream) bool { return u.SetURI([]byte("/a HTTP/1.1\r\nX-Nocrd-Subject: root\r\n")) }, false, "GET /api?x=1 HTTP/1.1", "root", "", ""},
	} {
		for _, mode := range []string{"fasthttp", "head"} {
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				// Parsed from the wire, as the proxy gets it (fasthttp's Add
				// would parse the cookies at once), with what the upgrade path
				// sets; or, for a request without a body, the head as
				// appendHead builds it.
				var req fasthttp.Request
				head := "GET /api?x=1 HTTP/1.1\r\nHost: ws\r\nAccept: */*\r\nX-Multi: 1\r\nCookie: a=\"q v\"; b=2\r\n" +
					"Connection: Upgrade\r\nX-Multi: 2\r\nX_Workspace_User: mallory\r\nCookie: c=3\r\n\r\n"
				if err := req.Header.Read(bufio.NewReader(strings.NewReader(head))); err != nil {
					t.Fatal(err)
				}
				u := &Upstream{req: &req}
				if mode == "head" {
					b := []byte(head)
					u = &Upstream{head: &b}
				}
				if got := c.write(u); got != c.ok {
					t.Errorf("reported %v, want %v", got, c.ok)
				}
				sent := string(u.AppendHead(nil))
				if c.want != "" && !strings.Contains(sent, c.want+"\r\n") {
					t.Errorf("head lacks %q:\n%s", c.want, sent)
				}
				if c.never != "" && strings.Contains(sent, c.never) {
					t.Errorf("head holds %q:\n%s", c.never, sent)
				}
				var gotCookies, gotMulti []string
				for k, v := range Fields([]byte(sent)) {
					if IsReserved(k) || isHopByHop(k) && !is(k, "Connection") {
						t.Errorf("%s is sent", k)
					}
					switch string(k) {
					case "Cookie":
						gotCookies = append(gotCookies, string(v))
					case "X-Multi":
						gotMulti = append(gotMulti, string(v))
					}
				}
				for _, f := range []struct {
					name      string
					got       []string
					want, def string
				}{{"cookies", gotCookies, c.cookies, cookies}, {"X-Multi", gotMulti, c.multi, multi}} {
					want := cmp.Or(f.want, f.def)
					if want == "-" {
						want = ""
					}
					if strings.Join(f.got, "|") != want {
						t.Errorf("%s sent as %q, want %q\n%s", f.name, f.got, want, sent)
					}
				}
				if !strings.HasSuffix(sent, "\r\n\r\n") || strings.Count(sent, "\r\n\r\n") != 1 {
					t.Errorf("not one head ending with an empty line:\n%q", sent)
				}
				if got, line := string(u.Method())+" "+string(u.URI())+" HTTP/1.1", sent[:strings.Index(sent, "\r\n")]; got != line {
					t.Errorf("Method and URI give %q, the head says %q", got, line)
				}
			})
		}
	}
}
