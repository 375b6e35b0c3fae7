package lazydeadline_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"

	"github.com/nocrd/nocrd/internal/lazydeadline"
)

// fasthttp's worker-pool cleaner ends on its own timer after a server
// shuts down, and its date updater lives for the process, as does the
// coarse clock's ticker.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/nocrd/nocrd/internal/clock.advance"),
	)
}

// serve runs a fasthttp server with an idle timeout on a lazy listener.
func serve(t *testing.T, idle time.Duration, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h, IdleTimeout: idle, StreamRequestBody: true}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lazydeadline.Listen(ln, 0)) }()
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	return ln.Addr().String()
}

func get(t *testing.T, br *bufio.Reader, c net.Conn, path string) {
	t.Helper()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// TestIdleTimeout: a keep-alive connection that stays idle is still closed
// after about the idle timeout, however many requests it served before.
func TestIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	addr := serve(t, idle, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for range 5 {
		get(t, br, c, "/")
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read %v, want EOF (closed by the server)", err)
	}
	if took := time.Since(start); took < idle*8/10 || took > idle+time.Second {
		t.Errorf("closed after %s idle, want about %s", took, idle)
	}
}

// TestLongRequestNotCut: a request whose body keeps coming for several
// idle timeouts is not cut by a deadline that was set while the
// connection was idle and cleared (lazily) when the request began.
func TestLongRequestNotCut(t *testing.T) {
	const idle = 200 * time.Millisecond
	addr := serve(t, idle, func(ctx *fasthttp.RequestCtx) {
		s := ctx.RequestBodyStream()
		if s == nil {
			return // the first, bodiless request
		}
		b, err := io.ReadAll(s)
		if err != nil {
			ctx.Error(err.Error(), http.StatusBadRequest)
			return
		}
		ctx.SetBody(b)
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	get(t, br, c, "/first") // the next wait sets the idle deadline
	time.Sleep(idle / 2)
	if _, err := fmt.Fprintf(c, "POST /slow HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	for i := range 6 { // 6 × 150 ms: far past the idle deadline
		time.Sleep(150 * time.Millisecond)
		if _, err := fmt.Fprintf(c, "1\r\n%d\r\n", i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := io.WriteString(c, "0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "012345" {
		t.Fatalf("slow upload: %d %q", resp.StatusCode, b)
	}
}

// TestEarlierDeadlineFires: a deadline earlier than the one set (as a
// shutdown sets to interrupt a read) takes effect at once, and a later one
// is honoured in full although the socket's fires first.
func TestEarlierDeadlineFires(t *testing.T) {
	ln, peer := dialed(t)
	c, err := lazydeadline.Listen(ln, 0).Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	_ = c.SetReadDeadline(time.Now().Add(time.Hour))
	errc := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 1)); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	_ = c.SetReadDeadline(time.Now())
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("interrupted read: %v, want a deadline error", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a deadline in the past did not interrupt the read")
	}

	// Set 100 ms, then move it to 400 ms: the socket's fires at 100 ms,
	// and Read waits on until 400.
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(100 * time.Millisecond))
	_ = c.SetReadDeadline(start.Add(400 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	if took := time.Since(start); !errors.Is(err, os.ErrDeadlineExceeded) || took < 390*time.Millisecond {
		t.Fatalf("read: %v after %s, want a deadline error after 400ms", err, took)
	}

	// Cleared: data that comes after the old deadline is read.
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_ = c.SetReadDeadline(time.Time{})
	go func() { time.Sleep(200 * time.Millisecond); _, _ = io.WriteString(peer, "x") }()
	b := make([]byte, 1)
	if n, err := c.Read(b); n != 1 || err != nil || !strings.EqualFold(string(b), "x") {
		t.Fatalf("read after a cleared deadline: %d %v", n, err)
	}
}

// BenchmarkKeepAliveDeadlines is what fasthttp does to a connection's read
// deadline for each request on a keep-alive connection with an idle
// timeout: set it before waiting, clear it once the request begins.
func BenchmarkKeepAliveDeadlines(b *testing.B) {
	ln, _ := dialed(b)
	plain, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Close()
	for _, c := range []struct {
		name string
		conn net.Conn
	}{{"net.Conn", plain}, {"lazy", &lazydeadline.Conn{Conn: plain}}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = c.conn.SetReadDeadline(time.Now().Add(90 * time.Second))
				_ = c.conn.SetReadDeadline(time.Time{})
			}
		})
	}
}

// dialed is a loopback listener with one connection dialled to it and not
// yet accepted; both close when the test ends.
func dialed(tb testing.TB) (net.Listener, net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = peer.Close() })
	return ln, peer
}

// TestSendTimeout: a write to a client that has stopped reading fails once
// the send timeout has passed; a client that reads slowly but keeps
// reading is never cut, however long it takes.
func TestSendTimeout(t *testing.T) {
	const timeout = 400 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l := lazydeadline.Listen(ln, timeout)
	pair := func() (server, client net.Conn) {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		server, err = l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { server.Close(); client.Close() })
		return server, client
	}
	chunk := make([]byte, 64<<10)

	t.Run("a client that stops reading", func(t *testing.T) {
		server, _ := pair()
		start := time.Now()
		var err error
		for err == nil && time.Since(start) < 10*time.Second {
			_, err = server.Write(chunk)
		}
		if took := time.Since(start); !errors.Is(err, os.ErrDeadlineExceeded) || took > 3*time.Second {
			t.Fatalf("writes ended after %s with %v, want a deadline error within about %s", took, err, timeout)
		}
	})

	t.Run("a client that reads slowly", func(t *testing.T) {
		server, client := pair()
		// Small buffers, so that a write waits for the client's reads and
		// not for the kernel to free a third of a large send buffer (the
		// wait a send timeout must outlast).
		_ = server.(*lazydeadline.Conn).Conn.(*net.TCPConn).SetWriteBuffer(64 << 10)
		_ = client.(*net.TCPConn).SetReadBuffer(64 << 10)
		done := make(chan struct{})
		go func() {
			defer close(done)
			b := make([]byte, 64<<10)
			for {
				time.Sleep(50 * time.Millisecond)
				if _, err := client.Read(b); err != nil {
					return
				}
			}
		}()
		start := time.Now()
		for time.Since(start) < 4*timeout {
			if _, err := server.Write(chunk); err != nil {
				t.Fatalf("a write to a reading client failed after %s: %v", time.Since(start), err)
			}
		}
		server.Close()
		<-done
	})
}
