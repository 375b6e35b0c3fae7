package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nocrd/nocrd/proxy"
)

// TestClientBodyTimeout: a client that stops sending in the middle of a
// request body is answered 408 once it has been silent for
// ClientBodyTimeout, and its connections closed, instead of holding its
// workspace connection for ever; one that sends slowly but keeps sending
// is never cut, however long the body takes. (fasthttp reads the first
// 8 KiB of a body before the handler runs, under the server's own
// deadline: the stall here comes after them.)
func TestClientBodyTimeout(t *testing.T) {
	addr, hits := backend(t)
	base, _ := startProxy(t, staticResolver{"a": {Addr: addr}}, proxy.Options{ClientBodyTimeout: time.Second})
	dial := func() (net.Conn, *bufio.Reader) {
		conn := dialProxy(t, base)
		return conn, bufio.NewReader(conn)
	}
	head := func(n int) string {
		return "POST /route/a/up HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(n) + "\r\n\r\n"
	}

	t.Run("stalled", func(t *testing.T) {
		conn, br := dial()
		start := time.Now()
		_, _ = io.WriteString(conn, head(20000)+strings.Repeat("s", 10000))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "request body") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if waited := time.Since(start); waited < 900*time.Millisecond || waited > 4*time.Second {
			t.Errorf("answered after %s", waited)
		}
		if _, err := br.ReadByte(); err == nil {
			t.Error("the connection stayed open after the body timed out")
		}
		if hits.Load() != 0 {
			t.Errorf("the workspace handled %d requests", hits.Load())
		}
	})

	t.Run("slow but steady", func(t *testing.T) {
		conn, br := dial()
		_, _ = io.WriteString(conn, head(10000+150)+strings.Repeat("a", 10000))
		for range 15 { // 1.5 s in all, never 1 s silent
			time.Sleep(100 * time.Millisecond)
			_, _ = io.WriteString(conn, strings.Repeat("b", 10))
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(body), strings.Repeat("b", 150)) {
			t.Fatalf("%d %.200s", resp.StatusCode, body)
		}
	})
}

// TestEarlyAnswer: a workspace that answers a large upload before reading
// it (a 413, or a handler that ignores the body) and closes the
// connection has its answer reach the client, as it would without the
// proxy, not a 502 for the writes that then fail. The client's
// "Expect: 100-continue", which the front door has answered, does not go
// on. The next request goes on a new connection.
func TestEarlyAnswer(t *testing.T) {
	var expects []string
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		expects = append(expects, r.Header.Get("Expect"))
		mu.Unlock()
		http.Error(w, "too large for me", http.StatusRequestEntityTooLarge)
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		_, _ = io.WriteString(w, "too large ")
		w.(http.Flusher).Flush() // chunked, as its length is not known
		_, _ = io.WriteString(w, "for me\n")
	})
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok "+r.Method) })
	addr := wsServer(t, mux)
	base, _ := startProxy(t, staticResolver{"a": {Addr: addr}}, proxy.Options{})
	body := strings.Repeat("u", 16<<20)
	for _, c := range []struct{ path, expect string }{
		{"/upload", ""}, {"/upload", "100-continue"}, {"/chunked", ""}, {"/chunked", "100-continue"},
	} {
		expect := c.expect
		for range 2 {
			req, _ := http.NewRequest(http.MethodPost, base+"/route/a"+c.path, strings.NewReader(body))
			if expect != "" {
				req.Header.Set("Expect", expect)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || string(b) != "too large for me\n" {
				t.Fatalf("%s, expect %q: %d %.200s, want the workspace's 413", c.path, expect, resp.StatusCode, b)
			}
			resp, err = http.Get(base + "/route/a/ok")
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "ok GET" {
				t.Fatalf("the next request: %d %s", resp.StatusCode, b)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range expects {
		if e != "" {
			t.Errorf("the workspace saw Expect: %s", e)
		}
	}
}

// TestEarlyAnswerKeptOpen: a workspace that answers before reading the
// body, then neither reads it nor closes the connection (Python's
// http.server does so), has its answer passed on within about
// writeCheckEvery, not after the upstream timeout; the connection is not
// reused. An interim 100 is not an answer: a workspace that sends one and
// pauses its reads longer than writeCheckEvery still gets the whole body.
func TestEarlyAnswerKeptOpen(t *testing.T) {
	defer proxy.SetWriteCheckEvery(500 * time.Millisecond)()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns atomic.Int32
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				switch req.URL.Path {
				case "/ok":
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				case "/slow":
					// An unasked 100, then a pause in reading.
					_, _ = io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
					time.Sleep(1500 * time.Millisecond)
					n, _ := io.Copy(io.Discard, req.Body)
					_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%d", len(strconv.FormatInt(n, 10)), n)
					return
				case "/continued":
					// An unasked 100, then the early answer.
					_, _ = io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 413 Payload Too Large\r\nContent-Length: 17\r\n\r\ntoo large for me\n")
				default:
					_, _ = io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 17\r\n\r\ntoo large for me\n")
				}
				<-hold // neither reads on nor closes
			}()
		}
	}()
	base, _ := startProxy(t, staticResolver{"a": {Addr: ln.Addr().String()}}, proxy.Options{UpstreamTimeout: 30 * time.Second})
	// A body larger than the sockets' buffers, so that its write stalls.
	for _, c := range []struct {
		path string
		size int
	}{{"/upload", 16 << 20}, {"/upload", 64 << 20}, {"/continued", 16 << 20}} {
		size := c.size
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPost, base+"/route/a"+c.path, strings.NewReader(strings.Repeat("u", size)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if took := time.Since(start); resp.StatusCode != http.StatusRequestEntityTooLarge || string(b) != "too large for me\n" || took > 10*time.Second {
			t.Errorf("%d bytes: %d %.200s after %s, want the workspace's 413 within seconds", size, resp.StatusCode, b, took)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/route/a/slow", strings.NewReader(strings.Repeat("s", 16<<20)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != strconv.Itoa(16<<20) {
		t.Errorf("after an interim 100 and a pause: %d %.200s, want the whole body read", resp.StatusCode, b)
	}

	before := conns.Load()
	resp, err = http.Get(base + "/route/a/ok")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok" || conns.Load() != before+1 {
		t.Errorf("the next request: %d %s, on a new connection: %v", resp.StatusCode, b, conns.Load() == before+1)
	}
}

// TestGarbledBody: a chunked body the client garbles is the client's
// failure, 400, with or without a ClientBodyTimeout, never the
// workspace's 502.
func TestGarbledBody(t *testing.T) {
	addr, _ := backend(t)
	for _, timeout := range []time.Duration{0, time.Minute} {
		base, _ := startProxy(t, staticResolver{"a": {Addr: addr}}, proxy.Options{ClientBodyTimeout: timeout})
		// fasthttp reads some of the body before the handler runs; the
		// garbled chunk comes after that.
		status, body := raw(t, base, "POST /route/a/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"4000\r\n"+strings.Repeat("a", 0x4000)+"\r\nzz\r\nabc\r\n0\r\n\r\n")
		if status != http.StatusBadRequest || !strings.Contains(body, "request body") {
			t.Errorf("timeout %s: %d %s", timeout, status, body)
		}
	}
}
