package proxy_test

import (
	"testing"

	"go.uber.org/goleak"
)

// fasthttp runs background goroutines that end on their own timer after a
// server shuts down (its worker-pool cleaner) or live for the process (its
// date updater, like the coarse clock's). Anything else still running after
// the tests, the proxy's idle-connection sweeper included, is a leak.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/nocrd/nocrd/internal/clock.advance"),
	)
}
