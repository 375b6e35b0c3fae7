package lazydeadline

import (
	"io"
	"net"
	"time"

	"github.com/nocrd/nocrd/internal/clock"
)

// IdleReader reads a request body, R, from the connection Conn, giving
// each read Timeout for the client's next bytes, as nginx's
// client_body_timeout does: a client that stops sending in the middle of
// a body is cut off, while an upload that keeps moving never is, however
// long it takes. The deadline is set before each read, so the time the
// reader's consumer spends elsewhere (sending the bytes on) is not counted
// against the client. On a Conn of this package, moving the deadline later
// costs an atomic store. A Timeout of 0 sets no deadline: the reader then
// only tells the client's failures (Err) from its consumer's.
type IdleReader struct {
	R       io.Reader
	Conn    net.Conn
	Timeout time.Duration
	// Err is the read error, other than io.EOF, that ended the body, if
	// one did: the failure is the client's.
	Err error
}

func (r *IdleReader) Read(p []byte) (int, error) {
	if r.Timeout > 0 {
		if err := r.Conn.SetReadDeadline(clock.Coarse().Add(r.Timeout)); err != nil {
			r.Err = err
			return 0, err
		}
	}
	n, err := r.R.Read(p)
	if err != nil && err != io.EOF {
		r.Err = err
	}
	return n, err
}
