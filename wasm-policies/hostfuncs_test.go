package policies

import (
	"strings"
	"testing"
)

// TestIsToken checks the token table against RFC 9110's tchar, byte by
// byte, and on whole names.
func TestIsToken(t *testing.T) {
	const tchar = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	for c := range 256 {
		want := strings.IndexByte(tchar, byte(c)) >= 0
		if got := isToken([]byte{byte(c)}); got != want {
			t.Errorf("isToken(%q) = %v, want %v", byte(c), got, want)
		}
	}
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"X-Nocrd-Subject", true},
		{"GET", true},
		{"x_custom.header~1", true},
		{"", true}, // callers reject empty names themselves
		{"Bad Name", false},
		{"Host:", false},
		{"X-A\r\nX-B", false},
		{"caf\xc3\xa9", false},
		{"a/b", false},
	} {
		if got := isToken([]byte(tc.name)); got != tc.want {
			t.Errorf("isToken(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
