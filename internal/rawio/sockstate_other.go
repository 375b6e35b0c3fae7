//go:build !linux || 386

package rawio

// Idle reports true: outside Linux (and on 386, which has no recvfrom
// system call of its own) a kept-alive connection is not checked before
// it is used again.
func Idle(uintptr) bool { return true }

// PeerClosed reports false: outside Linux (and on 386) a closed peer is
// noticed only when a read or write fails.
func PeerClosed(uintptr) bool { return false }
