package proxy

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

func TestAppendCookieField(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"a=1", "Cookie: a=1\r\n"},
		{`theme="dark"; b=2`, "Cookie: theme=\"dark\"; b=2\r\n"}, // no token cookie: as it came
		{"a=1;b=2", "Cookie: a=1;b=2\r\n"},
		{"nocrd_token=abc", ""},
		{" nocrd_token = abc ; ", ""},
		{`nocrd_token="abc"`, ""},
		{"a=1; nocrd_token=abc; b=2", "Cookie: a=1; b=2\r\n"},
		{"nocrd_token=x;a=1;nocrd_token=y", "Cookie: a=1\r\n"},
		{`a="x; y"; nocrd_token=t`, "Cookie: a=\"x; y\"\r\n"}, // split where a browser would, at every ';'
		{"Nocrd_token=abc; nocrd_tokens=1; my_nocrd_token=2", "Cookie: Nocrd_token=abc; nocrd_tokens=1; my_nocrd_token=2\r\n"},
		{"a; nocrd_token=abc", "Cookie: a\r\n"},
		{"nocrd_token", "Cookie: nocrd_token\r\n"}, // no '=': a nameless cookie to browsers
		{"", "Cookie: \r\n"},
	} {
		if got := string(appendCookieField(nil, []byte("Cookie"), []byte(c.in), TokenCookie)); got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
}

func TestCookieValue(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"a=1"}, ""},
		{[]string{"nocrd_token=abc"}, "abc"},
		{[]string{"a=1; nocrd_token = abc ;b=2"}, "abc"},
		{[]string{`nocrd_token="abc"`}, "abc"},
		{[]string{"a=1", "nocrd_token=second"}, "second"},
		{[]string{"nocrd_token=first; nocrd_token=second"}, "first"}, // the most specific path comes first
		{[]string{"NOCRD_TOKEN=abc; xnocrd_token=1"}, ""},
		{[]string{"nocrd_token="}, ""},
	} {
		var values [][]byte
		for _, v := range c.in {
			values = append(values, []byte(v))
		}
		if got := string(cookieValue(values, TokenCookie)); got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
}

func TestCookieSafe(t *testing.T) {
	for tok, want := range map[string]bool{
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln": true,
		"":                         false,
		"a b":                      false,
		"a;b":                      false,
		"a,b":                      false,
		`a"b`:                      false,
		`a\b`:                      false,
		"a\x7fb":                   false,
		"é":                        false,
		string(make([]byte, 3801)): false,
	} {
		if got := cookieSafe([]byte(tok)); got != want {
			t.Errorf("%q: %v, want %v", tok, got, want)
		}
	}
}

// FuzzCookieStrip: whatever a Cookie header holds, what is forwarded of it
// has no cookie cookieValue would read as the token, and keeps every other
// cookie, in order.
func FuzzCookieStrip(f *testing.F) {
	for _, s := range []string{"a=1; nocrd_token=abc; b=2", `nocrd_token="x"`, " ; ;nocrd_token=;", "nocrd_token\t=\tv", "a=\"1;nocrd_token=2\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if bytes.ContainsAny([]byte(v), "\r\n") {
			return // not a field value
		}
		out := appendCookieField(nil, []byte("Cookie"), []byte(v), TokenCookie)
		if len(out) == 0 {
			for pair := range cookiePairs([]byte(v)) {
				if _, ok := cookieNamed(pair, TokenCookie); !ok {
					t.Fatalf("%q: dropped whole, yet it has %q", v, pair)
				}
			}
			return
		}
		value, ok := bytes.CutPrefix(out, []byte("Cookie: "))
		if !ok || !bytes.HasSuffix(value, []byte("\r\n")) {
			t.Fatalf("%q: not a field: %q", v, out)
		}
		value = value[:len(value)-2]
		if hasCookie(value, TokenCookie) || len(cookieValue([][]byte{value}, TokenCookie)) > 0 {
			t.Fatalf("%q: the token cookie went on: %q", v, value)
		}
		if !hasCookie([]byte(v), TokenCookie) {
			if string(value) != v {
				t.Fatalf("%q changed to %q", v, value)
			}
			return
		}
		var want, got [][]byte
		for pair := range cookiePairs([]byte(v)) {
			if _, ok := cookieNamed(pair, TokenCookie); !ok {
				want = append(want, pair)
			}
		}
		for pair := range cookiePairs(value) {
			got = append(got, pair)
		}
		if len(got) != len(want) {
			t.Fatalf("%q: kept %q, want %q", v, got, want)
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%q: kept %q, want %q", v, got, want)
			}
		}
	})
}

func TestConfinedCookie(t *testing.T) {
	prefix := []byte("/gw/route/ws1")
	for _, c := range []struct{ in, want string }{
		{"sid=1", "sid=1"},
		{"sid=1; Path=/", "sid=1; Path=/gw/route/ws1"},
		{"sid=1; path=/api; HttpOnly", "sid=1; Path=/gw/route/ws1/api; HttpOnly"},
		{"_xsrf=2|a|b; Path=/; SameSite=Lax", "_xsrf=2|a|b; Path=/gw/route/ws1; SameSite=Lax"},
		{"sid=1; Path=/gw/route/ws1", "sid=1; Path=/gw/route/ws1"},
		{"sid=1; Path=/gw/route/ws1/lab", "sid=1; Path=/gw/route/ws1/lab"},
		{"sid=1; Path=/gw/route/ws10", "sid=1; Path=/gw/route/ws1/gw/route/ws10"},
		{"sid=1; Path=relative", "sid=1; Path=relative"},
		{"sid=1; Path=", "sid=1; Path="},
		{"path=/x; Max-Age=5", "path=/x; Max-Age=5"}, // a cookie named path
		{"sid=1; Path=/a; Path=/b", "sid=1; Path=/gw/route/ws1/a; Path=/gw/route/ws1/b"},
	} {
		outside := cookiePathOutside([]byte(c.in), prefix)
		got := c.in
		if outside {
			got = string(appendConfinedCookie(nil, []byte(c.in), prefix))
		}
		if got != c.want || outside != (c.in != c.want) {
			t.Errorf("%q: %q (outside %v), want %q", c.in, got, outside, c.want)
		}
	}
}

// FuzzConfinedCookie: whatever Set-Cookie value a workspace sends, once
// confined it keeps its name and value, and a browser (net/http's parser
// standing in for one) scopes it to a path under the route, or to none of
// its own choosing.
func FuzzConfinedCookie(f *testing.F) {
	for _, s := range []string{"sid=1; Path=/", "a=b; path=/x; HttpOnly", "a=b;Path=/gw/route/ws1", "a=b; Path=relative; Path=/y", "a=\"q; r\"; Path=/"} {
		f.Add(s)
	}
	prefix := []byte("/gw/route/ws1")
	f.Fuzz(func(t *testing.T, v string) {
		if strings.ContainsAny(v, "\r\n") {
			return
		}
		out := v
		if cookiePathOutside([]byte(v), prefix) {
			out = string(appendConfinedCookie(nil, []byte(v), prefix))
		}
		before := (&http.Response{Header: http.Header{"Set-Cookie": {v}}}).Cookies()
		after := (&http.Response{Header: http.Header{"Set-Cookie": {out}}}).Cookies()
		if len(before) != len(after) {
			t.Fatalf("%q became %q: %d cookies, then %d", v, out, len(before), len(after))
		}
		for i, c := range after {
			if c.Name != before[i].Name || c.Value != before[i].Value {
				t.Fatalf("%q became %q: the cookie changed from %s=%s to %s=%s", v, out, before[i].Name, before[i].Value, c.Name, c.Value)
			}
			if strings.HasPrefix(c.Path, "/") && c.Path != string(prefix) && !strings.HasPrefix(c.Path, string(prefix)+"/") {
				t.Fatalf("%q became %q, whose path %q is outside the route", v, out, c.Path)
			}
		}
	})
}
