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
package lazydeadline

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// Listen wraps l: the connections it accepts have lazy read deadlines.
func Listen(l net.Listener) net.Listener { return listener{l} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: c}, nil
}

// Conn is a connection whose read deadline is set lazily. Deadlines are
// kept in Unix nanoseconds; 0 is none.
type Conn struct {
	net.Conn
	want  atomic.Int64 // the deadline asked for
	armed atomic.Int64 // the deadline set on Conn
}

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
	return c.Conn.SetWriteDeadline(t)
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
