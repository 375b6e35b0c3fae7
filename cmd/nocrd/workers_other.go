//go:build !linux

package main

import (
	"errors"
	"net"
	"syscall"
)

// Proxy workers need SO_REUSEPORT and a parent-death signal; config
// validation refuses PROXY_WORKERS > 1 elsewhere.
const workersSupported = false

func listenReusePort(*config, int) (net.Listener, error) {
	return nil, errors.New("proxy workers need Linux")
}

func workerProcAttr() *syscall.SysProcAttr { return nil }
