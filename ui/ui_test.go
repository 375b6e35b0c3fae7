package ui_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nocrd/nocrd/ui"
)

func TestPage(t *testing.T) {
	for _, tc := range []struct{ endpoint, meta string }{
		{"", `<meta name="nocrd-mcp-endpoint" content="">`},
		{"/mcp", `<meta name="nocrd-mcp-endpoint" content="/mcp">`},
		{`/a"><script>x</script>/mcp`, `<meta name="nocrd-mcp-endpoint" content="/a&#34;&gt;&lt;script&gt;x&lt;/script&gt;/mcp">`},
	} {
		page := string(ui.Page(tc.endpoint))
		if strings.Count(page, `<meta name="nocrd-mcp-endpoint"`) != 1 || !strings.Contains(page, tc.meta) {
			t.Errorf("Page(%q) has no %s", tc.endpoint, tc.meta)
		}
		if strings.Count(page, "<script>") != 1 {
			t.Errorf("Page(%q) has %d scripts, want the one the policy's hash allows", tc.endpoint, strings.Count(page, "<script>"))
		}
	}
}

func TestHandler(t *testing.T) {
	hs := httptest.NewServer(ui.Handler("/base/mcp"))
	defer hs.Close()
	for _, tc := range []struct {
		method     string
		status     int
		body, ctyp string
	}{
		{http.MethodGet, 200, `content="/base/mcp"`, "text/html; charset=utf-8"},
		{http.MethodHead, 200, "", "text/html; charset=utf-8"},
		{http.MethodPost, 405, `"detail":"the Pod Manager page answers GET and HEAD, not POST"`, "application/json"},
		{http.MethodDelete, 405, `"error":"method not allowed"`, "application/json"},
	} {
		req, _ := http.NewRequest(tc.method, hs.URL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.body) || resp.Header.Get("Content-Type") != tc.ctyp {
			t.Errorf("%s: %s %q %s", tc.method, resp.Status, resp.Header.Get("Content-Type"), b)
		}
		if tc.status == 405 {
			if resp.Header.Get("Allow") != "GET, HEAD" || !json.Valid(b) {
				t.Errorf("%s: Allow %q, body %s", tc.method, resp.Header.Get("Allow"), b)
			}
			continue
		}
		if resp.Header.Get("Content-Security-Policy") != ui.ContentSecurityPolicy || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", tc.method, resp.Header)
		}
		if tc.method == http.MethodHead && (len(b) != 0 || resp.ContentLength != int64(len(ui.Page("/base/mcp")))) {
			t.Errorf("HEAD: %d bytes, Content-Length %d", len(b), resp.ContentLength)
		}
	}
	for _, want := range []string{"default-src 'none'", "script-src 'sha256-", "style-src 'sha256-", "connect-src 'self'", "frame-ancestors 'self'"} {
		if !strings.Contains(ui.ContentSecurityPolicy, want) {
			t.Errorf("the policy has no %s: %s", want, ui.ContentSecurityPolicy)
		}
	}
}
