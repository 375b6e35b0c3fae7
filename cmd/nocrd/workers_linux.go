package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

const workersSupported = true

// listenReusePort opens the public port with SO_REUSEPORT, which lets
// every worker open it and has the kernel spread connections over them.
func listenReusePort(cfg *config, port int) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	addr := net.JoinHostPort(cfg.Serve.Host, strconv.Itoa(port))
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// workerProcAttr has the kernel stop a worker when the primary dies, so
// that none outlives it, and keeps workers out of the primary's process
// group, so that a Ctrl-C reaches the primary alone, which stops them in
// order.
func workerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
}
