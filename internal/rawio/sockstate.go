//go:build linux && !386

package rawio

import (
	"syscall"
	"unsafe"
)

// Peek copies into b the first bytes that have arrived on fd without
// consuming them or waiting, and returns how many: 0 when nothing has
// arrived, -1 when the peer has closed its end (with nothing left
// unread) or reset it, or the socket failed. 0 is how a kept-alive
// connection between two exchanges shows it is still fit to carry a
// request. One system call; call it from a syscall.RawConn's Control
// callback.
func Peek(fd uintptr, b []byte) int {
	if len(b) == 0 {
		return 0
	}
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			return 0
		case e != 0 || n == 0:
			return -1
		}
		return int(n)
	}
}

// PeerClosed reports whether the peer of fd, a TCP socket, has closed or
// reset the connection, whatever is still unread on it (a TLS
// close_notify, say): the socket is in CLOSE_WAIT or CLOSE. It neither
// waits nor reads: one system call. Call it from a syscall.RawConn's
// Control callback.
func PeerClosed(fd uintptr) bool {
	const (
		tcpClose     = 7 // TCP_CLOSE: reset, or both ends closed
		tcpCloseWait = 8 // TCP_CLOSE_WAIT: the peer sent its FIN
	)
	var state [1]byte // tcp_info's first field, tcpi_state
	n := uint32(len(state))
	_, _, e := syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&state[0])), uintptr(unsafe.Pointer(&n)), 0)
	return e == 0 && n == 1 && (state[0] == tcpClose || state[0] == tcpCloseWait)
}
