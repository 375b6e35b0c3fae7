package mcp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
	"github.com/nocrd/nocrd/mcp"
	"github.com/nocrd/nocrd/ui"
)

const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}`

func post(t *testing.T, url string, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(initBody))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range header {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestHTTPEndpoints checks the HTTP surface around the MCP transports:
// BASE_URL, CORS, the Origin allow-list, DNS-rebinding protection and JSON
// errors.
func TestHTTPEndpoints(t *testing.T) {
	ns := testenv.Namespace(t)
	srv := newServer(t, server{kube: k8s.Config{Namespace: ns}, mcp: mcp.Config{
		BaseURL: "/gateway/no-crd/", CORSOrigin: "https://app.example", CORSMethods: "GET, POST, OPTIONS", CORSHeaders: "Content-Type",
	}})
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	base := hs.URL + "/gateway/no-crd"

	// The MCP endpoint answers under BASE_URL, with CORS headers for an
	// allowed origin.
	resp := post(t, base+mcp.PathStreamable, map[string]string{"Origin": "https://app.example"})
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("initialize under BASE_URL: %s %s", resp.Status, b)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
		t.Errorf("Access-Control-Allow-Origin = %q", got)
	}
	if resp.Header.Get("Mcp-Session-Id") == "" || !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Mcp-Session-Id") {
		t.Errorf("session header not exposed: %v", resp.Header)
	}

	// Not served outside BASE_URL.
	if resp := post(t, hs.URL+mcp.PathStreamable, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /mcp outside BASE_URL = %s", resp.Status)
	}

	// A foreign origin is refused with a JSON error.
	resp = post(t, base+mcp.PathStreamable, map[string]string{"Origin": "https://evil.example"})
	var e struct{ Error, Detail string }
	if resp.StatusCode != http.StatusForbidden || json.NewDecoder(resp.Body).Decode(&e) != nil || e.Error != "origin not allowed" || !strings.Contains(e.Detail, "evil.example") {
		t.Errorf("foreign origin: %s %+v", resp.Status, e)
	}

	// DNS rebinding: a loopback connection naming another host is refused.
	for _, path := range []string{mcp.PathStreamable, mcp.PathSSE} {
		resp = post(t, base+path, map[string]string{"Host": "attacker.example"})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("rebinding Host on %s = %s", path, resp.Status)
		}
	}

	// Preflight.
	req, _ := http.NewRequest(http.MethodOptions, base+mcp.PathStreamable, nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	pre, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pre.Body.Close()
	if pre.StatusCode != http.StatusNoContent || pre.Header.Get("Access-Control-Allow-Methods") != "GET, POST, OPTIONS" ||
		!strings.Contains(pre.Header.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Errorf("preflight: %s %v", pre.Status, pre.Header)
	}

	// Health and unknown paths.
	for path, want := range map[string]int{"/healthz": 200, "/": 200, "/nope": 404} {
		r, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.StatusCode != want {
			t.Errorf("GET %s = %s (%v), want %d with a JSON body", path, r.Status, err, want)
		}
		r.Body.Close()
	}
}

// TestPodManagerRoutes: with UI_ENABLED the Pod Manager is at /ui, at the
// root for a browser, and the ui://nogoo9/app resource; without, none of
// them, and the root stays the JSON index.
func TestPodManagerRoutes(t *testing.T) {
	ns := testenv.Namespace(t)
	for _, enabled := range []bool{true, false} {
		t.Run(fmt.Sprintf("UI_ENABLED=%v", enabled), func(t *testing.T) {
			s := server{kube: k8s.Config{Namespace: ns}, mcp: mcp.Config{BaseURL: "/gw", UIEnabled: enabled}}
			hs := httptest.NewServer(newServer(t, s).Handler())
			defer hs.Close()
			for _, tc := range []struct {
				path, accept string
				html         bool
				status       int
			}{
				{"/gw/ui", "", enabled, map[bool]int{true: 200, false: 404}[enabled]},
				{"/gw/", "text/html,application/xhtml+xml,*/*;q=0.8", enabled, 200},
				{"/gw", "text/html", enabled, 200},
				{"/gw/", "application/json", false, 200},
				{"/gw/", "", false, 200},
				{"/gw/ui/x", "text/html", false, 404},
			} {
				req, _ := http.NewRequest(http.MethodGet, hs.URL+tc.path, nil)
				if tc.accept != "" {
					req.Header.Set("Accept", tc.accept)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				isHTML := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") &&
					strings.Contains(string(b), `<meta name="nocrd-mcp-endpoint" content="/gw/mcp">`) &&
					resp.Header.Get("Content-Security-Policy") == ui.ContentSecurityPolicy
				if resp.StatusCode != tc.status || isHTML != tc.html || (!tc.html && !json.Valid(b)) {
					t.Errorf("GET %s (Accept %q) = %s, %q, page %v, want %d, page %v: %.200s", tc.path, tc.accept, resp.Status, resp.Header.Get("Content-Type"), isHTML, tc.status, tc.html, b)
				}
			}

			cs := connect(t, "streamable", s)
			ctx := context.Background()
			var listed []*mcpsdk.Resource
			for r, err := range cs.Resources(ctx, nil) {
				if err != nil {
					t.Fatal(err)
				}
				listed = append(listed, r)
			}
			rr, err := cs.ReadResource(ctx, readParams(ui.ResourceURI))
			if !enabled {
				if len(listed) != 0 || err == nil {
					t.Errorf("UI disabled: resources %v, read error %v", listed, err)
				}
				return
			}
			if len(listed) != 1 || listed[0].URI != ui.ResourceURI || listed[0].MIMEType != ui.ResourceMIMEType || listed[0].Size != int64(len(ui.Page(""))) {
				t.Errorf("resources: %+v", listed)
			}
			if err != nil || len(rr.Contents) != 1 || rr.Contents[0].MIMEType != ui.ResourceMIMEType || rr.Contents[0].Text != string(ui.Page("")) ||
				!strings.Contains(rr.Contents[0].Text, `<meta name="nocrd-mcp-endpoint" content="">`) {
				t.Errorf("read %s: %v %+v", ui.ResourceURI, err, rr)
			}
		})
	}
}
