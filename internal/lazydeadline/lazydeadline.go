// Package lazydeadline wraps a listener so that moving a connection's read
// deadline later, or clearing it, costs an atomic store instead of a
// runtime timer update.
//
// A client timeout moves a keep-alive connection's read deadline two or
// three times per request (nocrd's when a request begins and ends, and
// out of reach for a body): runtime timer updates that cost about a third
// of a microsecond for two (BenchmarkKeepAliveDeadlines, with the clock
// reads), on a path that costs a few microseconds in all. Here a
// connection remembers the deadline asked for and leaves the one set on
// the socket alone unless the new one is earlier. When the socket's
// deadline passes before the one asked for (or after it was cleared), Read
// sets the one asked for and reads again, which happens about once per
// timeout on a busy connection instead of twice per request.
//
// Writes can be given a send timeout the same lazy way (nginx's
// send_timeout): a write may wait that long for the client to read, and
// the socket's write deadline moves only once less than the timeout minus
// a slack is left, so a busy connection pays an atomic load per write.
package lazydeadline

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/nocrd/nocrd/internal/clock"
)

// Listen wraps l: the connections it accepts have lazy read deadlines and,
// when sendTimeout is positive, a send timeout: each write may wait
// between sendTimeout less a slack (a second at most) and sendTimeout for
// the client to take its bytes, then fails, so a client that stops reading
// does not hold its connection for ever. The timeout bounds one Write, not
// the silence between the client's reads: a blocked write resumes once the
// kernel has freed about a third of the socket's send buffer, so a client
// that reads less than that per timeout is cut too. A deadline set with
// SetWriteDeadline or SetDeadline stands until the next write.
func Listen(l net.Listener, sendTimeout time.Duration) net.Listener {
	return listener{l, sendTimeout, min(time.Second, sendTimeout/4)}
}

type listener struct {
	net.Listener
	send, slack time.Duration
}

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: c, send: l.send, slack: l.slack}, nil
}

// Conn is a connection whose read deadline is set lazily. Deadlines are
// kept in Unix nanoseconds; 0 is none.
type Conn struct {
	net.Conn
	want  atomic.Int64 // the deadline asked for
	armed atomic.Int64 // the deadline set on Conn
	// send is the send timeout (0: none), slack how stale its deadline
	// may get; sendBy is the write deadline set on Conn (0: none).
	send, slack time.Duration
	sendBy      atomic.Int64
}

// NetConn returns the wrapped connection, as tls.Conn's NetConn does.
func (c *Conn) NetConn() net.Conn { return c.Conn }

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func (c *Conn) SetReadDeadline(t time.Time) error {
	w := nanos(t)
	c.want.Store(w)
	if a := c.armed.Load(); w != 0 && (a == 0 || w < a) {
		// Earlier than what is set: it must fire on time.
		return c.arm(w)
	}
	return nil // later, or none: Read catches up if the set one passes
}

func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.sendBy.Store(nanos(t))
	return c.Conn.SetWriteDeadline(t)
}

// Write writes b, first moving the write deadline to the send timeout
// from now when less than the timeout less its slack is left of it.
func (c *Conn) Write(b []byte) (int, error) {
	if c.send > 0 {
		now := clock.CoarseUnixNano()
		if by := c.sendBy.Load(); by == 0 || by-now < int64(c.send-c.slack) {
			by = now + int64(c.send)
			c.sendBy.Store(by)
			if err := c.Conn.SetWriteDeadline(time.Unix(0, by)); err != nil {
				return 0, err
			}
		}
	}
	return c.Conn.Write(b)
}

func (c *Conn) arm(w int64) error {
	c.armed.Store(w)
	if w == 0 {
		return c.Conn.SetReadDeadline(time.Time{})
	}
	return c.Conn.SetReadDeadline(time.Unix(0, w))
}

func (c *Conn) Read(b []byte) (int, error) {
	for {
		n, err := c.Conn.Read(b)
		if n > 0 || err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		// The socket's deadline passed. It stands unless the one asked
		// for is later (or none); then set that and read again. A
		// deadline asked for meanwhile makes the loop look again.
		for {
			w := c.want.Load()
			if w != 0 && time.Now().UnixNano() >= w {
				return n, err
			}
			if aerr := c.arm(w); aerr != nil {
				return n, err
			}
			if c.want.Load() == w {
				break
			}
		}
	}
}

// CloseWrite half-closes the connection when it can, as *net.TCPConn
// does, and closes it otherwise.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
