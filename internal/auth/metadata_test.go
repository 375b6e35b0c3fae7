package auth_test

import (
	"crypto/tls"
	"encoding/json"
	"net/http/httptest"
	"strings"
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

// TestMetadataBearerMethods: a token in the query is offered only where
// the proxy takes one, its route prefix, and for the server as a whole.
func TestMetadataBearerMethods(t *testing.T) {
	cases := []struct {
		base, path, resource, methods string
	}{
		{"", "/.well-known/oauth-protected-resource", "http://h", "header query"},
		{"", "/.well-known/oauth-protected-resource/mcp", "http://h/mcp", "header"},
		{"", "/.well-known/oauth-protected-resource/route", "http://h/route", "header query"},
		{"", "/.well-known/oauth-protected-resource/route/w1", "http://h/route/w1", "header query"},
		{"", "/.well-known/oauth-protected-resource/routes", "http://h/routes", "header"},
		{"/gw", "/.well-known/oauth-protected-resource/gw/route", "http://h/gw/route", "header query"},
		{"/gw", "/gw/.well-known/oauth-protected-resource/route", "http://h/gw/route", "header query"},
		{"/gw", "/gw/.well-known/oauth-protected-resource/mcp", "http://h/gw/mcp", "header"},
	}
	for _, c := range cases {
		h := auth.Config{Issuer: "https://issuer.example"}.MetadataHandler(c.base, c.base+"/route")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "http://h"+c.path, nil))
		var md auth.ProtectedResourceMetadata
		if err := json.Unmarshal(rec.Body.Bytes(), &md); err != nil || rec.Code != 200 {
			t.Errorf("%s%s: %d %s", c.base, c.path, rec.Code, rec.Body)
			continue
		}
		if md.Resource != c.resource || strings.Join(md.BearerMethodsSupported, " ") != c.methods || rec.Header().Get("Vary") == "" {
			t.Errorf("%s (base %q): resource %q methods %v vary %q, want %q [%s]", c.path, c.base, md.Resource, md.BearerMethodsSupported, rec.Header().Get("Vary"), c.resource, c.methods)
		}
	}
}
