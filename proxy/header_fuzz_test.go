package proxy

import (
	"bufio"
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzRemoveFields: whatever the head and whichever names are dropped,
// removeFields leaves exactly the other fields, each name's values in the
// order they came.
func FuzzRemoveFields(f *testing.F) {
	f.Add("Authorization: Bearer t\r\nAccept: a\r\nAccept: b\r\n", "a")
	f.Add("Keep-Alive: 5\r\nX-Multi: 1\r\nCookie: a=\"q v\"; b=2\r\nX-Multi: 2\r\nCookie: c=3\r\n", "k")
	f.Add("A: 1\r\nB: 2\r\nA: 3\r\nC: 4\r\nB: 5\r\nA: 6\r\n", "b")
	f.Add("X: 1\r\nY: 2\r\n", "xy")
	f.Fuzz(func(t *testing.T, fields, drop string) {
		var h fasthttp.RequestHeader
		if h.Read(bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\nHost: h\r\n"+fields+"\r\n"))) != nil {
			return
		}
		// Names are dropped by their first letter, in any case.
		dropped := func(k []byte) bool {
			return len(k) > 0 && strings.ContainsRune(strings.ToLower(drop), rune(k[0]|0x20)) && !is(k, "Host")
		}
		before := valuesByName(h.AppendBytes(nil), nil)
		head := h.AppendBytes(nil)
		removeFields(&h, head, dropped)
		after := valuesByName(h.AppendBytes(nil), nil)
		want := valuesByName(head, dropped)
		for name, vs := range want {
			if !slices.Equal(after[name], vs) {
				t.Fatalf("%s: sent %q, want %q (was %q)\n%s", name, after[name], vs, before[name], h.AppendBytes(nil))
			}
		}
		for name := range after {
			if _, ok := want[name]; !ok {
				t.Fatalf("%s is still sent\n%s", name, h.AppendBytes(nil))
			}
		}
	})
}

// valuesByName lists the values of each field of head (by lowercase name)
// in order, leaving out those drop reports.
func valuesByName(head []byte, drop func([]byte) bool) map[string][]string {
	m := map[string][]string{}
	for k, v := range Fields(head) {
		if drop == nil || !drop(k) {
			name := string(bytes.ToLower(k))
			m[name] = append(m[name], string(v))
		}
	}
	return m
}

// FuzzHasField: for any bytes and any name, hasField answers as a look at
// every field Fields yields would, names compared by sameName.
func FuzzHasField(f *testing.F) {
	f.Add("GET / HTTP/1.1\r\nHost: h\r\nX-User: a\r\n\r\n", "x-user")
	f.Add("GET / HTTP/1.1\r\nHost: h\r\nX-User : a\r\n\r\nX-User: b\r\n", "X-User")
	f.Add("GET / HTTP/1.1\r\n:X-User: a\r\nX-Use: b\r\nX-Userr: c\r\n\r\n", "X-User")
	f.Add("GET / HTTP/1.1\r\nHost: h\r\nX-User: a", "X-User")
	f.Add("GET / HTTP/1.1\nA:\n\n", "a")
	f.Add("GET / HTTP/1.1\r\nX_user: a\r\n\r\n", "X-User")
	f.Fuzz(func(t *testing.T, head, name string) {
		if name == "" || strings.ContainsRune(name, ':') {
			return // a policy's name is a token
		}
		want := false
		for k := range Fields([]byte(head)) {
			want = want || sameName(k, name)
		}
		if got := hasField([]byte(head), []byte(name)); got != want {
			t.Fatalf("hasField(%q, %q) = %v, Fields finds %v", head, name, got, want)
		}
	})
}
