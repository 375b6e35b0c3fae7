package main

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/nocrd/nocrd/proxy"
)

// TestFastRequestHeaders: a route policy sees every header of the request
// (the reserved ones from RouteInfo, never the client's), its writes are
// seen by its next reads, and looking at the headers does not change the
// request that is forwarded: the cookies keep their quotes and stay two
// headers.
func TestFastRequestHeaders(t *testing.T) {
	var req fasthttp.Request
	err := req.Read(bufio.NewReader(strings.NewReader("GET /x HTTP/1.1\r\nHost: h\r\nCookie: a=\"q v\"; b=2\r\n" +
		"Accept: text/html\r\nX-Nocrd-Owner: root\r\nCookie: c=3\r\n\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	before := string(req.Header.Header())
	f := fastRequest{req: proxy.NewUpstream(&req), info: proxy.RouteInfo{Subject: []byte("alice"), Owner: "alice", Client: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 5}}}

	names := func() string {
		b, n := f.AppendHeaderNames(nil)
		if got := bytes.Count(b, []byte{0}); got != n {
			t.Fatalf("AppendHeaderNames counted %d names in %q", n, b)
		}
		return string(bytes.ReplaceAll(b, []byte{0}, []byte(",")))
	}
	values := func(name string) string {
		b, n := f.AppendHeaderValues(nil, []byte(name))
		if got := bytes.Count(b, []byte{0}); got != n {
			t.Fatalf("AppendHeaderValues counted %d values in %q", n, b)
		}
		return string(bytes.ReplaceAll(b, []byte{0}, []byte("|")))
	}

	if got, want := names(), "x-nocrd-subject,x-nocrd-owner,host,cookie,accept,"; got != want {
		t.Errorf("names = %q, want %q", got, want)
	}
	for name, want := range map[string]string{"cookie": `a="q v"; b=2|c=3|`, "X-Nocrd-Owner": "alice|", "accept": "text/html|", "x-nocrd-claims": ""} {
		if got := values(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if after := string(req.Header.Header()); after != before {
		t.Errorf("reading the headers changed the request:\n%s\nwas\n%s", after, before)
	}

	// Reading headers allocates nothing once the copy is made: a decision
	// on the proxy's hot path lists and reads them.
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() {
		f.AppendHeaderNames(buf[:0])
		f.AppendHeaderValues(buf[:0], []byte("accept"))
		f.AppendHeaderValues(buf[:0], []byte("x-nocrd-subject"))
	}); n != 0 {
		t.Errorf("reading headers: %v allocations, want 0", n)
	}

	f.SetHeader([]byte("x-added"), []byte("1"))
	f.RemoveHeader([]byte("Accept"))
	f.SetHeader([]byte("X-Nocrd-Subject"), []byte("mallory"))
	if got, want := names(), "x-nocrd-subject,x-nocrd-owner,host,cookie,x-added,"; got != want {
		t.Errorf("after writes, names = %q, want %q", got, want)
	}
	if got := values("x-added") + values("x-nocrd-subject"); got != "1|alice|" {
		t.Errorf("after writes, x-added and x-nocrd-subject = %q", got)
	}
}
