package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/nocrd/nocrd/internal/metrics"
	"github.com/nocrd/nocrd/proxy"
)

// scripted is a workspace speaking raw HTTP/1.1: it answers every request
// with answer and counts the connections it accepts and the requests it
// reads, so tests can see whether the proxy kept a connection alive.
type scripted struct {
	addr     string
	accepted atomic.Int32
	requests atomic.Int32
	closed   chan struct{} // a connection the proxy closed (EOF while idle)
}

// serveRaw accepts connections on loopback and runs handle on each, in a
// goroutine of its own; the test's end closes them and waits. It returns
// the address.
func serveRaw(t *testing.T, handle func(c net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return l.Addr().String()
}

// startScripted serves answer(n) to the n-th request of each connection;
// closeAfter says whether to close the connection after that answer.
func startScripted(t *testing.T, answer func(n int) (resp string, closeAfter bool)) *scripted {
	t.Helper()
	s := &scripted{closed: make(chan struct{}, 16)}
	s.addr = serveRaw(t, func(c net.Conn) {
		s.accepted.Add(1)
		br := bufio.NewReader(c)
		for n := 0; ; n++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				if err == io.EOF {
					s.closed <- struct{}{}
				}
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			s.requests.Add(1)
			resp, closeAfter := answer(n)
			if _, err := io.WriteString(c, resp); err != nil || closeAfter {
				return
			}
		}
	})
	return s
}

// TestResponseFraming sends two requests through the proxy for each way a
// workspace may frame its answer, and checks the body the client gets and
// whether the upstream connection was kept for the second request.
func TestResponseFraming(t *testing.T) {
	big := strings.Repeat("b", 200_000) // over the buffered-body limit: streamed
	cases := []struct {
		name       string
		resp       string
		closeAfter bool
		method     string
		status     int
		body       string
		conns      int32 // connections the two requests used
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, "GET", 200, "hello", 1},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n", false, "GET", 200, "hello", 1},
		{"large, streamed", "HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + big, false, "GET", 200, big, 1},
		{"ends with the connection", "HTTP/1.1 200 OK\r\n\r\nhello", true, "GET", 200, "hello", 2},
		{"Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", true, "GET", 200, "hello", 2},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", false, "DELETE", 204, "", 1},
		{"interim answer first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, "POST", 200, "ok", 1},
		{"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, "HEAD", 200, "", 1},
		// An HTTP/1.0 workspace: the client still gets an HTTP/1.1 answer,
		// whose framing (chunked, here) it may then read.
		{"HTTP/1.0, until the connection ends", "HTTP/1.0 200 OK\r\n\r\nhello", true, "GET", 200, "hello", 2},
		{"HTTP/1.0 with a length", "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", true, "GET", 200, "hello", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ws := startScripted(t, func(int) (string, bool) { return c.resp, c.closeAfter })
			base, _ := startProxy(t, staticResolver{"w": {Addr: ws.addr}}, proxy.Options{})
			client := &http.Client{Timeout: 10 * time.Second}
			t.Cleanup(client.CloseIdleConnections)
			for i := range 2 {
				req, _ := http.NewRequest(c.method, base+"/route/w/x", strings.NewReader("p"))
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != c.status || string(b) != c.body {
					t.Fatalf("request %d: %d %.80q, want %d %.80q", i, resp.StatusCode, b, c.status, c.body)
				}
				if resp.Proto != "HTTP/1.1" {
					t.Errorf("request %d: answered as %s", i, resp.Proto)
				}
				if resp.Close || resp.Header.Get("Connection") != "" {
					t.Errorf("request %d: the workspace's framing reached the client (Connection %q)", i, resp.Header.Get("Connection"))
				}
			}
			if got := ws.accepted.Load(); got != c.conns {
				t.Errorf("two requests used %d upstream connections, want %d", got, c.conns)
			}
		})
	}
}

// TestTruncatedBody: a workspace that dies inside a body it announced gets
// the client a 502 (for a small body, not yet committed) or a cut response,
// and its connection is never reused.
func TestTruncatedBody(t *testing.T) {
	ws := startScripted(t, func(int) (string, bool) { return "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel", true })
	base, _ := startProxy(t, staticResolver{"w": {Addr: ws.addr}}, proxy.Options{})
	if status, body := fetch(t, "GET", base+"/route/w/"); status != 502 || !strings.Contains(body, "cannot be reached") {
		t.Fatalf("truncated body: %d %s", status, body)
	}
}

// TestStaleKeepAliveIsRetried: a workspace closes a kept-alive connection
// between requests without saying so. The next idempotent request is
// retried on a new connection; a POST finds the connection closed before
// it is sent, and goes on a new one.
func TestStaleKeepAliveIsRetried(t *testing.T) {
	ws := startScripted(t, func(int) (string, bool) { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true })
	base, _ := startProxy(t, staticResolver{"w": {Addr: ws.addr}}, proxy.Options{})
	for i := range 3 {
		if status, body := fetch(t, "GET", base+"/route/w/"); status != 200 || body != "ok" {
			t.Fatalf("GET %d: %d %s", i, status, body)
		}
		time.Sleep(20 * time.Millisecond) // let the close arrive
	}
	if r, a := ws.requests.Load(), ws.accepted.Load(); r != 3 || a != 3 {
		t.Errorf("the workspace saw %d requests on %d connections, want 3 on 3", r, a)
	}
	if status, body := fetch(t, "POST", base+"/route/w/"); status != 200 || body != "ok" {
		t.Errorf("POST after the workspace closed the idle connection: %d %s, want 200", status, body)
	}
	if r, a := ws.requests.Load(), ws.accepted.Load(); r != 4 || a != 4 {
		t.Errorf("the workspace saw %d requests on %d connections, want 4 on 4", r, a)
	}
}

// TestPostIsNeverSentTwice: a workspace reads a POST on a kept-alive
// connection and closes it without an answer. The POST may have done its
// work: it is answered 502, not sent again.
func TestPostIsNeverSentTwice(t *testing.T) {
	ws := startScripted(t, func(n int) (string, bool) {
		if n == 0 {
			return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
		}
		return "", true
	})
	base, _ := startProxy(t, staticResolver{"w": {Addr: ws.addr}}, proxy.Options{})
	if status, body := fetch(t, "GET", base+"/route/w/"); status != 200 || body != "ok" {
		t.Fatalf("GET: %d %s", status, body)
	}
	if status, body := fetch(t, "POST", base+"/route/w/"); status != 502 {
		t.Errorf("POST closed without an answer: %d %s, want 502", status, body)
	}
	if r, a := ws.requests.Load(), ws.accepted.Load(); r != 2 || a != 1 {
		t.Errorf("the workspace saw %d requests on %d connections, want 2 on 1: the POST was sent again", r, a)
	}
}

// TestWorkspaceIdleTimeout: a workspace server that closes keep-alive
// connections idle for a while (Node.js after 5 s, gunicorn after 2 s;
// 100 ms here) has closed the proxy's pooled connection by the time the
// next request comes. A request that cannot be retried (a POST, a
// streamed body) must not be sent on it and fail: it goes on a live one.
func TestWorkspaceIdleTimeout(t *testing.T) {
	var posts atomic.Int32
	addr := serve(t, &fasthttp.Server{IdleTimeout: 100 * time.Millisecond, Handler: func(ctx *fasthttp.RequestCtx) {
		if ctx.IsPost() {
			posts.Add(1)
		}
		ctx.SetBodyString(string(ctx.Method()) + " " + string(ctx.PostBody()))
	}})
	base, _ := startProxy(t, staticResolver{"w": {Addr: addr}}, proxy.Options{})
	for i := range 3 {
		if status, body := fetch(t, "POST", base+"/route/w/"); status != 200 || body != "POST body" {
			t.Fatalf("POST %d: %d %s", i, status, body)
		}
		time.Sleep(300 * time.Millisecond) // the workspace closes the idle connection
	}
	if n := posts.Load(); n != 3 {
		t.Errorf("the workspace saw %d POSTs, want 3", n)
	}
}

// TestForgetClosesIdleConnections: when the route cache says an address is
// gone, the proxy's idle connections to it are closed at once.
func TestForgetClosesIdleConnections(t *testing.T) {
	ws := startScripted(t, func(int) (string, bool) { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false })
	base, p := startProxy(t, staticResolver{"w": {Addr: ws.addr}}, proxy.Options{})
	if status, body := fetch(t, "GET", base+"/route/w/"); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	p.Forget(ws.addr)
	select {
	case <-ws.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection to a forgotten address stayed open")
	}
}

func fetch(t *testing.T, method, url string) (int, string) {
	t.Helper()
	var body io.Reader
	if method == "POST" {
		body = strings.NewReader("body")
	}
	req, _ := http.NewRequest(method, url, body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// silentWorkspace accepts one connection, reads a request head, sends
// answer (nothing, or a first part), and then stays silent; gone receives
// how long after the request it saw the proxy close the connection.
func silentWorkspace(t *testing.T, answer string) (addr string, gone <-chan time.Duration) {
	t.Helper()
	ch := make(chan time.Duration, 1)
	addr = serveRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		start := time.Now()
		if _, err := io.WriteString(c, answer); err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := br.ReadByte(); err == io.EOF {
			select {
			case ch <- time.Since(start):
			default: // a later connection's close: the first one counts
			}
		}
	})
	return addr, ch
}

// TestClientAbortReachesWorkspace: a client that closes its connection
// while the workspace is silent, before its answer or in the middle of a
// streamed one, has the proxy close the workspace's connection too (as
// nginx does), well before the upstream timeout, so the workspace can
// stop working for nobody. A client that waits gets its answer.
func TestClientAbortReachesWorkspace(t *testing.T) {
	defer proxy.SetClientCheckEvery(50 * time.Millisecond)()
	for _, c := range []struct{ name, answer, until string }{
		{"before the answer", "", ""},
		{"in a streamed answer", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n", "data: 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, gone := silentWorkspace(t, c.answer)
			reg := metrics.NewRegistry()
			base, _ := startProxy(t, staticResolver{"w": {Addr: addr}}, proxy.Options{UpstreamTimeout: 30 * time.Second, Metrics: reg})
			conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(conn, "GET /route/w/events HTTP/1.1\r\nHost: nocrd\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			if c.until != "" {
				br := bufio.NewReader(conn)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						t.Fatalf("reading the stream: %v", err)
					}
					if strings.Contains(line, c.until) {
						break
					}
				}
			} else {
				time.Sleep(100 * time.Millisecond)
			}
			_ = conn.Close()
			select {
			case d := <-gone:
				t.Logf("the workspace saw the close %v after the request", d)
			case <-time.After(5 * time.Second):
				t.Fatal("the workspace's connection is still open 5 s after the client left")
			}
			if c.until == "" {
				// Counted as nginx counts it, not as the workspace's failure.
				want := `nocrd_proxy_requests_total{outcome="client_closed",status="499"} 1`
				var out strings.Builder
				for range 100 { // counted just after the connection closes
					out.Reset()
					_, _ = reg.WriteTo(&out)
					if strings.Contains(out.String(), want) {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				if !strings.Contains(out.String(), want) {
					t.Errorf("metrics lack %s:\n%s", want, out.String())
				}
			}
		})
	}

	t.Run("a client that waits", func(t *testing.T) {
		slow := serve(t, &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
			time.Sleep(500 * time.Millisecond) // ten checks of the client
			ctx.SetBodyString("late")
		}})
		base, _ := startProxy(t, staticResolver{"w": {Addr: slow}}, proxy.Options{UpstreamTimeout: 30 * time.Second})
		if status, body := fetch(t, "GET", base+"/route/w/"); status != 200 || body != "late" {
			t.Fatalf("%d %s, want 200 late", status, body)
		}
	})

	t.Run("a workspace silent past the timeout", func(t *testing.T) {
		addr, _ := silentWorkspace(t, "")
		base, _ := startProxy(t, staticResolver{"w": {Addr: addr}}, proxy.Options{UpstreamTimeout: 300 * time.Millisecond})
		start := time.Now()
		status, body := fetch(t, "GET", base+"/route/w/")
		if took := time.Since(start); status != 504 || took < 250*time.Millisecond || took > 2*time.Second {
			t.Fatalf("%d %s after %v, want 504 after about 300 ms", status, body, took)
		}
	})
}

// TestUnsolicitedAnswerOnIdleConnection: some servers answer an idle
// keep-alive connection with a 408 of their own before closing it. That
// answer belongs to no request: a GET that comes a while later must get
// its own answer, on a new connection, not that 408.
func TestUnsolicitedAnswerOnIdleConnection(t *testing.T) {
	addr := serveRaw(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		time.Sleep(100 * time.Millisecond) // idle: time out the connection
		_, _ = io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
	})
	base, _ := startProxy(t, staticResolver{"w": {Addr: addr}}, proxy.Options{})
	for i := range 2 {
		if status, body := fetch(t, "GET", base+"/route/w/"); status != 200 || body != "ok" {
			t.Fatalf("GET %d: %d %q, want 200 ok", i, status, body)
		}
		time.Sleep(300 * time.Millisecond) // the 408 comes meanwhile
	}
}

// TestBytesPastTheAnswer: a workspace that sends more than its answer, in
// the same write (a second answer nobody asked for, or a body after a
// HEAD), leaves those bytes in the connection's buffer. They belong to no
// request: the next request goes on a new connection and gets its own
// answer.
func TestBytesPastTheAnswer(t *testing.T) {
	for _, c := range []struct{ name, method, extra string }{
		{"a second answer", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"},
		{"a body after a HEAD", "HEAD", "evil"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var answered atomic.Int32 // over every connection
			ws := startScripted(t, func(int) (string, bool) {
				if answered.Add(1) == 1 {
					return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + map[bool]string{true: "", false: "ok"}[c.method == "HEAD"] + c.extra, false
				}
				return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
			})
			base, _ := startProxy(t, staticResolver{"w": {Addr: ws.addr}}, proxy.Options{})
			if status, _ := fetch(t, c.method, base+"/route/w/"); status != 200 {
				t.Fatalf("%s: %d, want 200", c.method, status)
			}
			if status, body := fetch(t, "GET", base+"/route/w/"); status != 200 || body != "ok" {
				t.Fatalf("the GET after: %d %q, want 200 ok", status, body)
			}
			if a := ws.accepted.Load(); a != 2 {
				t.Errorf("%d connections, want 2: the first could not be used again", a)
			}
		})
	}
}

// TestHTTP10ClientGetsNoChunks: an HTTP/1.0 client cannot read chunked
// framing, and RFC 9112 forbids sending it Transfer-Encoding. A body of
// unknown length (chunked, or ending with the workspace's connection)
// reaches it as it comes, and the connection's end ends it; an HTTP/1.1
// client still gets it chunked, on a connection kept alive.
func TestHTTP10ClientGetsNoChunks(t *testing.T) {
	chunked := startScripted(t, func(int) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n", false
	})
	untilClose := startScripted(t, func(int) (string, bool) {
		return "HTTP/1.0 200 OK\r\n\r\ndata: 1\n\ndata: 2\n\n", true
	})
	base, _ := startProxy(t, staticResolver{"c": {Addr: chunked.addr}, "u": {Addr: untilClose.addr}}, proxy.Options{})
	for _, id := range []string{"c", "u"} {
		for _, version := range []string{"1.0", "1.1"} {
			c := dialProxy(t, base)
			_, _ = io.WriteString(c, "GET /route/"+id+"/ HTTP/"+version+"\r\nHost: nocrd\r\n\r\n")
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("%s over HTTP/%s: %v", id, version, err)
			}
			body, err := io.ReadAll(resp.Body)
			_ = c.Close()
			chunkedOut := len(resp.TransferEncoding) > 0
			switch {
			case err != nil || string(body) != "data: 1\n\ndata: 2\n\n":
				t.Errorf("%s over HTTP/%s: body %q, %v", id, version, body, err)
			case version == "1.0" && (chunkedOut || resp.ContentLength != -1 || !resp.Close):
				t.Errorf("%s over HTTP/1.0: Transfer-Encoding %v, Content-Length %d, close %v; want the body until the connection closes",
					id, resp.TransferEncoding, resp.ContentLength, resp.Close)
			case version == "1.1" && (!chunkedOut || resp.Close):
				t.Errorf("%s over HTTP/1.1: Transfer-Encoding %v, close %v; want chunked on a kept connection", id, resp.TransferEncoding, resp.Close)
			}
		}
	}
}

// TestBadAnswers: a workspace that answers with something other than an
// HTTP/1.x response head gets a 502 that says so, not "cannot be
// reached", which sends its developer looking at the network.
func TestBadAnswers(t *testing.T) {
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := down.Addr().String()
	down.Close() // nothing listens there
	resolver := staticResolver{"down": {Addr: downAddr}}
	for name, answer := range map[string]string{
		"huge":      "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 20000) + "\r\nContent-Length: 2\r\n\r\nok",
		"garbage":   "hello there\r\n\r\n",
		"status":    "HTTP/1.1 abc OK\r\n\r\n",
		"http2":     "\x00\x00\x12\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64\x00\x04\x00\x10\x00\x00\x00\x06\x00\x00\x40\x00",
		"truncated": "HTTP/1.1 200 OK\r\nX-A: 1\r\n",
		"nothing":   "",
	} {
		resolver[name] = proxy.Endpoint{Addr: serveRaw(t, func(c net.Conn) {
			_, _ = http.ReadRequest(bufio.NewReader(c))
			_, _ = io.WriteString(c, answer)
			c.Close()
		})}
	}
	base, _ := startProxy(t, resolver, proxy.Options{})
	for id, want := range map[string]string{
		"huge":      "larger than 16 KiB",
		"garbage":   "did not answer in HTTP/1.x",
		"status":    "did not answer in HTTP/1.x",
		"http2":     "did not answer in HTTP/1.x",
		"truncated": "did not answer in HTTP/1.x",
		"nothing":   "cannot be reached",
		"down":      "cannot be reached",
	} {
		status, body := raw(t, base, "GET /route/"+id+"/x HTTP/1.1\r\nHost: h\r\n\r\n")
		if status != http.StatusBadGateway || !strings.Contains(body, want) {
			t.Errorf("%s: %d %s, want 502 saying %q", id, status, body, want)
		}
	}
}
