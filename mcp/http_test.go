package mcp_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
	"github.com/nocrd/nocrd/mcp"
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
