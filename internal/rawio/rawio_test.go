//go:build linux

package rawio_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nocrd/nocrd/internal/rawio"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns a wrapped connection and a plain one, connected on
// loopback; wrapped is the server's end (accepted through Listen) or the
// client's (Wrap after a dial).
func pair(t testing.TB, accepted bool) (wrapped, plain net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if accepted {
		ln = rawio.Listen(ln)
	}
	got := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		got <- c
	}()
	dialed, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server := <-got
	if server == nil {
		t.Fatal("accept failed")
	}
	wrapped, plain = rawio.Wrap(dialed), server
	if accepted {
		wrapped, plain = server, dialed
	}
	if _, ok := wrapped.(*rawio.Conn); !ok {
		t.Fatalf("wrapped is %T, want *rawio.Conn", wrapped)
	}
	t.Cleanup(func() { wrapped.Close(); plain.Close() })
	return wrapped, plain
}

// TestRoundTrip: bytes go both ways, whichever end is wrapped; a read
// waits for data that comes later; zero-length reads and writes do
// nothing.
func TestRoundTrip(t *testing.T) {
	for _, accepted := range []bool{true, false} {
		name := "dialed"
		if accepted {
			name = "accepted"
		}
		t.Run(name, func(t *testing.T) {
			w, p := pair(t, accepted)
			if n, err := w.Write(nil); n != 0 || err != nil {
				t.Fatalf("Write(nil) = %d, %v", n, err)
			}
			if n, err := w.Read(nil); n != 0 || err != nil {
				t.Fatalf("Read(nil) = %d, %v", n, err)
			}
			if _, err := w.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 16)
			if _, err := io.ReadFull(p, buf[:4]); err != nil || string(buf[:4]) != "ping" {
				t.Fatalf("plain end read %q, %v", buf[:4], err)
			}
			go func() {
				time.Sleep(50 * time.Millisecond) // the Read below waits in the poller
				_, _ = p.Write([]byte("pong"))
			}()
			n, err := w.Read(buf)
			if err != nil || string(buf[:n]) != "pong" {
				t.Fatalf("wrapped end read %q, %v", buf[:n], err)
			}
		})
	}
}

// TestEOFAndHalfClose: CloseWrite on either end is an io.EOF on the other,
// which can still send.
func TestEOFAndHalfClose(t *testing.T) {
	w, p := pair(t, true)
	if err := p.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := w.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer's CloseWrite = %d, %v; want 0, io.EOF", n, err)
	}
	if _, err := w.Write([]byte("still")); err != nil {
		t.Fatal(err)
	}
	if err := w.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(p)
	if err != nil || string(got) != "still" {
		t.Fatalf("peer read %q, %v; want the bytes then EOF", got, err)
	}
}

// TestDeadlines: read and write deadlines stop a Read and a Write that
// wait, with the error net itself returns (a timeout that is
// os.ErrDeadlineExceeded), and the connection works again once they are
// cleared.
func TestDeadlines(t *testing.T) {
	w, p := pair(t, true)
	start := time.Now()
	_ = w.SetReadDeadline(start.Add(50 * time.Millisecond))
	_, err := w.Read(make([]byte, 8))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v; want a timeout", err)
	}
	if op, ok := err.(*net.OpError); !ok || op.Op != "read" {
		t.Fatalf("read past the deadline: %#v; want a read *net.OpError, as net's", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("read returned after %v", d)
	}

	// Nobody reads the plain end: the socket buffers fill, and the write
	// waits until its deadline.
	_ = w.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := w.Write(make([]byte, 64<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n == 0 || n == 64<<20 {
		t.Fatalf("write into full buffers = %d, %v; want part written then a timeout", n, err)
	}
	if op, ok := err.(*net.OpError); !ok || op.Op != "write" {
		t.Fatalf("write past the deadline: %#v; want a write *net.OpError", err)
	}

	_ = w.SetDeadline(time.Time{})
	go func() { _, _ = io.Copy(io.Discard, p) }()
	if _, err := w.Write([]byte("again")); err != nil {
		t.Fatalf("write after clearing the deadline: %v", err)
	}
}

// TestLargeWrite: a write larger than the socket buffers waits for the
// reader (EAGAIN, then the poller) and delivers every byte in order.
func TestLargeWrite(t *testing.T) {
	w, p := pair(t, false)
	data := make([]byte, 32<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(p)
		got <- b
	}()
	if n, err := w.Write(data); n != len(data) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	_ = w.(interface{ CloseWrite() error }).CloseWrite()
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("peer got %d bytes, not the %d written", len(b), len(data))
	}
}

// TestClosedAndReset: a Read or Write on a closed Conn, or a Read blocked
// when Close comes, fails with net.ErrClosed; writing to a peer that is
// gone fails with the reset, as with net's own Write.
func TestClosedAndReset(t *testing.T) {
	w, _ := pair(t, true)
	blocked := make(chan error, 1)
	go func() {
		_, err := w.Read(make([]byte, 8))
		blocked <- err
	}()
	time.Sleep(50 * time.Millisecond)
	_ = w.Close()
	if err := <-blocked; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("blocked read after Close: %v; want net.ErrClosed", err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v; want net.ErrClosed", err)
	}

	w, p := pair(t, false)
	_ = p.(*net.TCPConn).SetLinger(0) // Close sends a reset
	_ = p.Close()
	var err error
	for range 100 {
		if _, err = w.Write([]byte("into the void")); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write to a reset peer: %v; want ECONNRESET or EPIPE", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "write" {
		t.Fatalf("error %#v is not a write *net.OpError", err)
	}
}

// TestConcurrent: a Read and a Write may run at once, as a WebSocket
// relay does, and so may two Writes (net.Conn allows it); every byte gets
// through once.
func TestConcurrent(t *testing.T) {
	w, p := pair(t, true)
	const rounds, size = 200, 1000
	var wg sync.WaitGroup
	echo := make(chan int, 1)
	go func() { // the plain end echoes
		n, _ := io.Copy(p, p)
		echo <- int(n)
	}()
	got := 0
	wg.Add(3)
	for range 2 {
		go func() {
			defer wg.Done()
			for range rounds {
				if _, err := w.Write(bytes.Repeat([]byte{'a'}, size)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		for got < 2*rounds*size {
			n, err := w.Read(buf)
			if err != nil {
				t.Error(err)
				return
			}
			if bytes.Count(buf[:n], []byte{'a'}) != n {
				t.Error("read bytes that were not written")
				return
			}
			got += n
		}
	}()
	wg.Wait()
	_ = w.(interface{ CloseWrite() error }).CloseWrite()
	if n := <-echo; n != 2*rounds*size || got != n {
		t.Fatalf("echoed %d, read back %d; want %d", n, got, 2*rounds*size)
	}
}

// TestWrapOnlyTCP: anything but a TCP connection is returned as it is.
func TestWrapOnlyTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if c := rawio.Wrap(a); c != a {
		t.Fatalf("Wrap(pipe) = %T, want the pipe", c)
	}
}

// BenchmarkPingPong is one small write and one read each way through a
// loopback pair, with net's own Read and Write and with a rawio.Conn at
// both ends.
func BenchmarkPingPong(b *testing.B) {
	for _, raw := range []bool{false, true} {
		name := "net"
		if raw {
			name = "rawio"
		}
		b.Run(name, func(b *testing.B) {
			w, p := pair(b, false)
			if raw {
				p = rawio.Wrap(p)
			} else {
				w = w.(*rawio.Conn).Conn
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				buf := make([]byte, 64)
				for {
					n, err := p.Read(buf)
					if err != nil {
						return
					}
					if _, err := p.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
			msg, buf := []byte("0123456789abcdef0123456789abcdef"), make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := w.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(w, buf[:len(msg)]); err != nil {
					b.Fatal(err)
				}
			}
			_ = w.Close()
			<-done
		})
	}
}

// TestPeek: Peek shows what has arrived without consuming it, 0 while
// nothing has (a kept-alive connection fit for a request), -1 once the
// peer has closed with nothing left unread, or reset the connection.
func TestPeek(t *testing.T) {
	var buf [16]byte
	var n int
	peek := func(c net.Conn) int {
		onSocket(t, c, func(fd uintptr) bool { n = rawio.Peek(fd, buf[:]); return true })
		return n
	}
	w, p := pair(t, false)
	if got := peek(w); got != 0 {
		t.Fatalf("a fresh connection: %d", got)
	}
	if _, err := p.Write([]byte("HTTP/1.1 100 Continue")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "16 bytes peeked", func() bool { return peek(w) == 16 })
	if string(buf[:n]) != "HTTP/1.1 100 Con" {
		t.Fatalf("peeked %q", buf[:n])
	}
	b := make([]byte, 64)
	if n, err := w.Read(b); err != nil || string(b[:n]) != "HTTP/1.1 100 Continue" {
		t.Fatalf("read after Peek: %q %v; want all it peeked at", b[:n], err)
	}
	if got := peek(w); got != 0 {
		t.Fatalf("once what was peeked was read: %d", got)
	}
	_ = p.Close()
	eventually(t, "-1 after the peer closed", func() bool { return peek(w) == -1 })

	w, p = pair(t, false)
	_ = p.(*net.TCPConn).SetLinger(0) // Close sends a reset
	_ = p.Close()
	eventually(t, "-1 after the peer reset the connection", func() bool { return peek(w) == -1 })
}

// TestPeerClosed: PeerClosed sees the peer's close or reset, even with
// bytes still unread (a TLS close_notify comes before the FIN), and
// nothing else.
func TestPeerClosed(t *testing.T) {
	closed := func(c net.Conn) bool { return onSocket(t, c, rawio.PeerClosed) }
	gone := func(c net.Conn, what string) {
		t.Helper()
		eventually(t, "closed after "+what, func() bool { return closed(c) })
	}

	w, p := pair(t, true)
	if closed(w) {
		t.Fatal("a fresh connection is closed")
	}
	if _, err := p.Write([]byte("unread")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if closed(w) {
		t.Fatal("bytes from the peer are not a close")
	}
	_ = p.Close()
	gone(w, "the peer closed with bytes unread")

	w, p = pair(t, true)
	_ = p.(*net.TCPConn).SetLinger(0) // Close sends a reset
	_ = p.Close()
	gone(w, "the peer reset the connection")
}

// onSocket runs f on c's socket, as Peek and PeerClosed are run.
func onSocket(t *testing.T, c net.Conn, f func(fd uintptr) bool) bool {
	t.Helper()
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ok bool
	if err := raw.Control(func(fd uintptr) { ok = f(fd) }); err != nil {
		t.Fatal(err)
	}
	return ok
}

// eventually fails the test unless cond comes true within a second;
// want says what was waited for.
func eventually(t *testing.T, want string, cond func() bool) {
	t.Helper()
	for range 200 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("want %s within a second", want)
}

// netConnOf wraps a connection the way tls.Conn does, exposing it only
// through NetConn.
type netConnOf struct{ net.Conn }

func (w netConnOf) NetConn() net.Conn { return w.Conn }

// TestGone: Gone finds the socket under wrappers that expose NetConn,
// tells a live connection from one its peer closed or this side closed,
// and says false for a connection without a socket.
func TestGone(t *testing.T) {
	w, p := pair(t, true)
	wrapped := netConnOf{netConnOf{w}}
	if rawio.Gone(wrapped) {
		t.Fatal("a live connection is gone")
	}
	_ = p.Close()
	eventually(t, "gone after the peer closed", func() bool { return rawio.Gone(wrapped) })
	w, _ = pair(t, false)
	_ = w.Close()
	if !rawio.Gone(w) {
		t.Fatal("not gone after this side closed")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if rawio.Gone(a) || rawio.Socket(a) != nil {
		t.Fatal("a pipe has no socket to look at")
	}
}
