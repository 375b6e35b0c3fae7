// Package ui is nocrd's Pod Manager: one HTML page, its script and styles
// inline, that lists workspaces and templates, spawns workspaces from
// templates, stops them, shows their logs and shows what the bearer token
// says, all by calling nocrd's MCP tools, so the page can do nothing the
// caller could not do with an MCP client.
//
// The page has two homes. Served over HTTP next to the MCP endpoint
// (Handler), it speaks streamable HTTP to that endpoint with the token the
// user enters. Read as the MCP App resource ResourceURI (Page("")), it is
// rendered by an MCP host in a sandboxed frame and asks that host, over
// postMessage, to call the tools for it.
package ui

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/http"
	"strconv"
)

const (
	// ResourceURI names the page as an MCP resource, as no-crd does.
	ResourceURI = "ui://nogoo9/app"
	// ResourceMIMEType is the MCP Apps type of an HTML page a host renders.
	ResourceMIMEType = "text/html;profile=mcp-app"
)

//go:embed app.html
var page []byte

// endpointMeta is the tag that tells the page its MCP endpoint; empty, the
// page is an MCP App and talks to its host.
var endpointMeta = []byte(`<meta name="nocrd-mcp-endpoint" content="">`)

// Page returns the page set to call the MCP endpoint at endpoint (a URL
// path such as "/mcp"), or, when endpoint is empty, to ask its MCP App
// host.
func Page(endpoint string) []byte {
	if endpoint == "" {
		return bytes.Clone(page)
	}
	meta := `<meta name="nocrd-mcp-endpoint" content="` + html.EscapeString(endpoint) + `">`
	return bytes.Replace(page, endpointMeta, []byte(meta), 1)
}

// ContentSecurityPolicy is the policy the page is served with: its inline
// script and styles by their hashes, requests to its own origin only, and
// framing by its own origin only.
var ContentSecurityPolicy = "default-src 'none'; script-src " + inlineHash("script") +
	"; style-src " + inlineHash("style") +
	"; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"

// inlineHash is the CSP source for the page's one inline element tag.
func inlineHash(tag string) string {
	_, rest, ok := bytes.Cut(page, []byte("<"+tag+">"))
	body, _, closed := bytes.Cut(rest, []byte("</"+tag+">"))
	if !ok || !closed {
		panic("ui: app.html has no <" + tag + "> element")
	}
	sum := sha256.Sum256(body)
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// Handler serves the page, set to call the MCP endpoint at endpoint, to
// GET and HEAD; other methods get 405 as JSON, as nocrd's other endpoints
// answer them.
func Handler(endpoint string) http.Handler {
	body := Page(endpoint)
	length := strconv.Itoa(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_ = json.NewEncoder(w).Encode(map[string]string{
				"error": "method not allowed", "detail": "the Pod Manager page answers GET and HEAD, not " + r.Method,
			})
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Length", length)
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(body)
	})
}
