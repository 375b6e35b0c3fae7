package auth

import (
	"encoding/json"
	"net/http"
	"strings"
)

// WellKnownPath is where RFC 9728 protected-resource metadata is served; a
// resource with a path has its metadata at WellKnownPath + that path.
const WellKnownPath = "/.well-known/oauth-protected-resource"

// Origin returns scheme://host of a request as the client addressed it,
// honouring X-Forwarded-Proto and X-Forwarded-Host from a fronting proxy.
func Origin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	host := r.Host
	if h := r.Header.Get("X-Forwarded-Host"); plainHost(h) {
		host = h
	}
	return scheme + "://" + host
}

// plainHost reports whether h is a host[:port] made only of the characters
// of names and IP literals: one that can be put in a URL, and quoted in a
// challenge, as it is. Anything else a client sends as X-Forwarded-Host is
// ignored.
func plainHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for _, c := range []byte(h) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// ResourceMetadataURL is the metadata URL for the resource at path (such as
// the MCP endpoint or the route prefix) on origin.
func ResourceMetadataURL(origin, path string) string {
	if path == "/" {
		path = ""
	}
	return origin + WellKnownPath + path
}

// Challenge is the WWW-Authenticate value of a 401: realm, the metadata URL
// (RFC 9728 section 5.1) and, when a token was given, error=invalid_token.
func Challenge(metadataURL string, hadToken bool) string {
	v := `Bearer realm="nocrd"`
	if metadataURL != "" {
		v += `, resource_metadata="` + metadataURL + `"`
	}
	if hadToken {
		v += `, error="invalid_token"`
	}
	return v
}

// ProtectedResourceMetadata is the RFC 9728 document.
type ProtectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ScopesSupported        []string `json:"scopes_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
}

// MetadataHandler serves the metadata of the resources under base (the
// server's BASE_URL path). RFC 9728 section 3.1 puts the well-known segment
// right after the host: WellKnownPath+<path> describes the resource at
// <path>, and WellKnownPath alone the server. Behind a proxy that forwards
// only base, base+WellKnownPath+<path> describes base+<path>.
//
// A token is taken from the query too (bearer_methods_supported "query")
// only at queryPrefix (the proxy's route prefix, under base) and below, and
// for the server as a whole; elsewhere, at the MCP endpoint for one, only
// the header counts, as the MCP authorization specification requires.
// The document names the origin a request came by (X-Forwarded-Host and
// -Proto included), so caches are told it varies with them.
func (c Config) MetadataHandler(base, queryPrefix string) http.Handler {
	base = strings.TrimRight(base, "/")
	servers := []string{}
	if c.Issuer != "" {
		servers = append(servers, c.Issuer)
	}
	scopes := append([]string{}, strings.FieldsFunc(c.Scopes, func(r rune) bool { return r == ',' || r == ' ' })...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed", "detail": "use GET"})
			return
		}
		suffix, ok := strings.CutPrefix(r.URL.Path, base+WellKnownPath)
		if ok && base != "" {
			suffix = base + suffix
		} else if !ok {
			suffix, ok = strings.CutPrefix(r.URL.Path, WellKnownPath)
		}
		if !ok || (suffix != "" && !strings.HasPrefix(suffix, "/")) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found", "detail": "no metadata at " + r.URL.Path})
			return
		}
		methods := []string{"header"}
		if suffix == "" || suffix == queryPrefix || strings.HasPrefix(suffix, queryPrefix+"/") {
			methods = append(methods, "query")
		}
		w.Header().Set("Vary", "X-Forwarded-Host, X-Forwarded-Proto")
		writeJSON(w, http.StatusOK, ProtectedResourceMetadata{
			Resource:               Origin(r) + suffix,
			AuthorizationServers:   servers,
			BearerMethodsSupported: methods,
			ScopesSupported:        scopes,
			ResourceName:           "nocrd",
		})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=300")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
