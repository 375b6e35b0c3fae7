package auth

import (
	"testing"

	"go.uber.org/goleak"
)

// The JWKS cache runs goroutines until its context ends; none may outlive
// the tests. The coarse clock's lives for the process.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/nocrd/nocrd/internal/clock.advance"))
}
