package proxy

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestStripReserved: every header named with HeaderPrefix goes, in any case
// and however many there are, whichever way it was set; the others stay.
func TestStripReserved(t *testing.T) {
	for _, c := range []struct {
		name    string
		set     [][2]string // in order, names as sent (not normalised)
		want    []string    // the header names left, in the order sent on
		cookies string      // the Cookie values sent on, joined by |
	}{
		{"none", [][2]string{{"Accept", "*/*"}, {"X-Policy", "yes"}}, []string{"Accept", "X-Policy"}, ""},
		{"one", [][2]string{{"Accept", "*/*"}, {"X-Nocrd-Subject", "mallory"}}, []string{"Accept"}, ""},
		{"lower case", [][2]string{{"x-nocrd-owner", "mallory"}, {"x-policy", "yes"}}, []string{"x-policy"}, ""},
		{"several", [][2]string{{"X-Nocrd-A", "1"}, {"Accept", "*/*"}, {"X-NOCRD-B", "2"}, {"X-Nocrd-A", "3"}}, []string{"Accept"}, ""},
		{"prefix only", [][2]string{{"X-Nocrd", "kept: not the prefix"}, {"X-Nocrdx", "kept"}}, []string{"X-Nocrd", "X-Nocrdx"}, ""},
		{"cookies kept as sent", [][2]string{{"Cookie", `a="q v"; b=2`}, {"X-Nocrd-A", "1"}, {"Cookie", "c=3"}}, []string{"Cookie", "Cookie"}, `a="q v"; b=2|c=3`},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Parsed from the wire, as the proxy gets it: fasthttp's Add
			// would parse the cookies at once.
			var h fasthttp.RequestHeader
			h.DisableNormalizing()
			head := "GET / HTTP/1.1\r\nHost: ws\r\n"
			for _, kv := range c.set {
				head += kv[0] + ": " + kv[1] + "\r\n"
			}
			if err := h.Read(bufio.NewReader(strings.NewReader(head + "\r\n"))); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 0, 64)
			stripReserved(&h, &buf)
			// Looked at as it will be sent: h.All would merge the cookies.
			var got, cookies []string
			for k, v := range Fields(h.AppendBytes(nil)) {
				if string(k) != "Host" {
					got = append(got, string(k))
				}
				if string(k) == "Cookie" {
					cookies = append(cookies, string(v))
				}
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Errorf("headers left %q, want %q", got, c.want)
			}
			if strings.Join(cookies, "|") != c.cookies {
				t.Errorf("cookies sent on as %q, want %q", cookies, c.cookies)
			}
		})
	}
}
