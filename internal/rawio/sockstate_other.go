//go:build !linux || 386

package rawio

// PeerClosed reports false: outside Linux (and on 386) a closed peer is
// noticed only when a read or write fails.
func PeerClosed(uintptr) bool { return false }

// Peek reports 0, nothing arrived: outside Linux (and on 386, which has no
// recvfrom system call of its own) a socket is not looked at without
// reading it, so a kept-alive connection is not checked before it is used
// again.
func Peek(uintptr, []byte) int { return 0 }
