// Package rawio wraps TCP connections so that reading and writing them does
// not enter the Go runtime's system-call state.
//
// A socket from package net is non-blocking: a read or write system call on
// it returns at once, with data or with EAGAIN, and the runtime's poller does
// the waiting. Yet net makes each such call through syscall.Syscall, which
// marks the goroutine's P as in a system call. When the machine is busy,
// the kernel often preempts a thread inside a short write (the write wakes
// the reader on the other end, which runs first), and the runtime's monitor
// thread, seeing the P stuck in a "system call" for more than 20µs, hands
// it to another thread: a thread wake-up, and later a thread parked again
// when the first one comes back without a P. It also keeps the monitor
// itself waking every 20µs instead of backing off to 10ms: 4,300 times a
// second in the proxy at 40k requests/s on a 2-core machine, 37 with this
// package (see RATIONALE.md).
//
// A Conn makes the same calls with syscall.RawSyscall from within the
// connection's syscall.RawConn, so waiting still goes through the poller
// and deadlines and Close behave as with net's own Read and Write.
//
// Peek and PeerClosed look at a socket's state the same way, without
// reading from it: what a kept-alive connection has been sent while idle
// (or whether it was closed), and whether a client has gone while its
// request is being served.
package rawio

import (
	"net"
	"syscall"
)

// Listen wraps l: the TCP connections it accepts are wrapped by Wrap.
func Listen(l net.Listener) net.Listener { return listener{l} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

// Socket finds the socket under c, through TLS and the wrappers that, as
// tls.Conn does, expose the connection they wrap with NetConn; nil when
// there is none.
func Socket(c net.Conn) syscall.RawConn {
	for c != nil {
		if sc, ok := c.(syscall.Conn); ok {
			if raw, err := sc.SyscallConn(); err == nil {
				return raw
			}
			return nil
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = w.NetConn()
	}
	return nil
}

// Gone reports whether the connection c is over: its peer has closed or
// reset it (see PeerClosed), or it has been closed on this side. It is
// false when that cannot be told (c has no socket).
func Gone(c net.Conn) bool {
	raw := Socket(c)
	if raw == nil {
		return false
	}
	closed := false
	if raw.Control(func(fd uintptr) { closed = PeerClosed(fd) }) != nil {
		return true // closed here
	}
	return closed
}
