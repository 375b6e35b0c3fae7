package proxy_test

import (
	"testing"

	"go.uber.org/goleak"
)

// fasthttp runs background goroutines that end on their own timers after a
// server shuts down or a client goes idle (its worker-pool and idle
// connection cleaners) or live for the process (its date updater and DNS
// cache cleaner). Anything else still running after the tests is a leak.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
	)
}
