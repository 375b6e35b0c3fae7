package auth

import (
	"testing"

	"go.uber.org/goleak"
)

// The JWKS cache runs goroutines until its context ends; none may outlive
// the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
