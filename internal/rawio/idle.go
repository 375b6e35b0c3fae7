//go:build linux && !386

package rawio

import (
	"syscall"
	"unsafe"
)

// Idle reports whether fd, the socket of a kept-alive connection between
// two exchanges, is still fit to carry a request: nothing has arrived on
// it since, neither bytes, an end of stream (the peer closed it) nor an
// error. It peeks without waiting and without consuming anything: one
// system call. Call it from a syscall.RawConn's Control callback.
func Idle(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e != syscall.EINTR {
			return e == syscall.EAGAIN
		}
	}
}
