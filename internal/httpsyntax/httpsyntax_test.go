package httpsyntax

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
		if got := IsToken([]byte{byte(c)}); got != want {
			t.Errorf("IsToken(%q) = %v, want %v", byte(c), got, want)
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
		if got := IsToken([]byte(tc.name)); got != tc.want {
			t.Errorf("IsToken(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestIsFieldValueAndVisibleASCII(t *testing.T) {
	for _, tc := range []struct {
		in             string
		value, visible bool
	}{
		{"", true, true},
		{"/api?x=1", true, true},
		{"a b", true, false},
		{"1\r\nX-B: 2", false, false},
		{"1\nX", false, false},
		{"1\x00", false, false},
		{"caf\xc3\xa9", true, false},
		{"\x7f", true, false},
	} {
		if got := IsFieldValue([]byte(tc.in)); got != tc.value {
			t.Errorf("IsFieldValue(%q) = %v, want %v", tc.in, got, tc.value)
		}
		if got := IsVisibleASCII([]byte(tc.in)); got != tc.visible {
			t.Errorf("IsVisibleASCII(%q) = %v, want %v", tc.in, got, tc.visible)
		}
	}
}
