package auth_test

import (
	"crypto/tls"
	"net/http/httptest"
	"testing"

	"github.com/nocrd/nocrd/internal/auth"
)

// TestOrigin: the origin named in metadata and challenges follows the
// X-Forwarded-* an ingress sets, and ignores a host that is not plain.
func TestOrigin(t *testing.T) {
	cases := []struct {
		name        string
		tls         bool
		proto, host string
		want        string
	}{
		{"direct", false, "", "", "http://nocrd.local:8080"},
		{"tls", true, "", "", "https://nocrd.local:8080"},
		{"behind an ingress", false, "https", "mcp.example.com", "https://mcp.example.com"},
		{"ingress with a port", false, "", "mcp.example.com:8443", "http://mcp.example.com:8443"},
		{"ipv6", false, "", "[::1]:9", "http://[::1]:9"},
		{"unknown proto", false, "gopher", "", "http://nocrd.local:8080"},
		{"quote", false, "", `evil", error="x`, "http://nocrd.local:8080"},
		{"path", false, "", "evil.example/x", "http://nocrd.local:8080"},
		{"list", false, "", "a.example, b.example", "http://nocrd.local:8080"},
		{"userinfo", false, "", "user@evil.example", "http://nocrd.local:8080"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "http://nocrd.local:8080/mcp", nil)
		if c.tls {
			r.TLS = &tls.ConnectionState{}
		}
		if c.proto != "" {
			r.Header.Set("X-Forwarded-Proto", c.proto)
		}
		if c.host != "" {
			r.Header.Set("X-Forwarded-Host", c.host)
		}
		if got := auth.Origin(r); got != c.want {
			t.Errorf("%s: Origin = %q, want %q", c.name, got, c.want)
		}
	}
}
