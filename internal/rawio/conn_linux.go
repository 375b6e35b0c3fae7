//go:build linux

package rawio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a net.Conn whose Read and Write bypass the runtime's system-call
// bookkeeping. Everything else is the wrapped connection's.
type Conn struct {
	net.Conn
	raw syscall.RawConn

	// The state of the one Read and the one Write in flight, and the
	// callbacks, bound once, that use it: a closure per call would be an
	// allocation per call.
	rmu     sync.Mutex
	rbuf    []byte
	rn      int
	rerr    syscall.Errno
	readFn  func(uintptr) bool
	wmu     sync.Mutex
	wbuf    []byte
	wn      int
	werr    syscall.Errno
	writeFn func(uintptr) bool
}

// Wrap returns c as a *Conn when it is a TCP connection, and c itself
// otherwise.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rc := &Conn{Conn: c, raw: raw}
	rc.readFn, rc.writeFn = rc.read, rc.write
	return rc
}

// SyscallConn is the wrapped connection's, so callers that use it directly
// still can.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.raw, nil }

func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	c.rbuf, c.rn, c.rerr = b, 0, 0
	err := c.raw.Read(c.readFn)
	n, errno := c.rn, c.rerr
	c.rbuf = nil
	c.rmu.Unlock()
	switch {
	case errno != 0:
		return 0, c.opError("read", errno)
	case err != nil:
		return 0, renamed(err, "read") // closed, or the deadline passed
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// read is the RawConn callback of Read: false means "wait until readable".
func (c *Conn) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case 0:
			c.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rerr = e
		return true
	}
}

func (c *Conn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	c.wbuf, c.wn, c.werr = b, 0, 0
	err := c.raw.Write(c.writeFn)
	n, errno := c.wn, c.werr
	c.wbuf = nil
	c.wmu.Unlock()
	switch {
	case errno != 0:
		return n, c.opError("write", errno)
	case err != nil:
		return n, renamed(err, "write")
	}
	return n, nil
}

// renamed gives an error of the RawConn ("raw-read", "raw-write") the
// operation net's own Read or Write would name; the error is new to this
// call, so changing it in place is safe.
func renamed(err error, op string) error {
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = op
	}
	return err
}

// write is the RawConn callback of Write: it writes until all of wbuf is
// out, returning false to wait while the socket's buffer is full.
func (c *Conn) write(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		rest := c.wbuf[c.wn:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch {
		case e == 0 && n == 0:
			// A socket never takes nothing; stop rather than spin, as
			// net's own Write does.
			c.werr = syscall.EIO
			return true
		case e == 0:
			c.wn += int(n)
		case e == syscall.EINTR:
		case e == syscall.EAGAIN:
			return false
		default:
			c.werr = e
			return true
		}
	}
	return true
}

// opError is the error net's own Read and Write would return.
func (c *Conn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}

// CloseWrite half-closes the connection, as *net.TCPConn does.
func (c *Conn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }
