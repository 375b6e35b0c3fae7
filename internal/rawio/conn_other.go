//go:build !linux

package rawio

import "net"

// Wrap returns c: outside Linux, connections keep net's own Read and Write.
func Wrap(c net.Conn) net.Conn { return c }
