package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	sdkauth "github.com/modelcontextprotocol/go-sdk/auth"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nocrd/nocrd/internal/auth"
	"github.com/nocrd/nocrd/ui"
)

// Paths of the HTTP endpoints, under Config.BaseURL.
const (
	// PathStreamable serves the streamable HTTP transport.
	PathStreamable = "/mcp"
	// PathSSE serves the legacy HTTP+SSE transport (protocol 2024-11-05):
	// GET opens the event stream, whose first event names the URL to POST
	// messages to (PathSSE?sessionid=...).
	PathSSE = "/sse"
	// PathHealth answers 200 while the process serves.
	PathHealth = "/healthz"
	// PathUI serves the Pod Manager page when UI_ENABLED (see package ui).
	PathUI = "/ui"
)

// SessionIdleTimeout closes a streamable HTTP session that has seen no
// request for this long, so clients that vanish without ending their
// session do not hold its resources forever.
const SessionIdleTimeout = time.Hour

// Handler returns the HTTP handler for the MCP endpoints, with CORS and
// Origin checks applied. DNS-rebinding protection (a non-localhost Host on a
// loopback connection is refused) is the go-sdk's, on by default.
func (s *Server) Handler() http.Handler {
	base := s.cfg.BasePath()
	getServer := func(*http.Request) *mcpsdk.Server { return s.sdk }
	mux := http.NewServeMux()
	streamable := byProtocolVersion{
		sessions:  mcpsdk.NewStreamableHTTPHandler(getServer, &mcpsdk.StreamableHTTPOptions{Logger: s.log, SessionTimeout: SessionIdleTimeout}),
		stateless: mcpsdk.NewStreamableHTTPHandler(getServer, &mcpsdk.StreamableHTTPOptions{Logger: s.log, Stateless: true}),
	}
	var sse http.Handler = mcpsdk.NewSSEHandler(getServer, nil)
	var mcpHandler http.Handler = streamable
	if s.identity.Enabled {
		// Every MCP request carries a bearer token the verifier accepts; its
		// subject reaches the tools (see tokenInfo), and an SSE session
		// takes messages from its opener only (sseSessions).
		require := sdkauth.RequireBearerToken(s.verifyToken, &sdkauth.RequireBearerTokenOptions{})
		mcpHandler, sse = challenge(require, mcpHandler, base+PathStreamable), challenge(require, newSSESessions().wrap(sse), base+PathSSE)
	}
	mux.Handle(base+PathStreamable, mcpHandler)
	mux.Handle(base+PathSSE, sse)
	mux.HandleFunc(base+PathHealth, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	// The Pod Manager is at PathUI, and at the root for a browser (one
	// that asks for HTML); other clients get the endpoints' index there.
	var page http.Handler
	if s.cfg.UIEnabled {
		page = ui.Handler(base + PathStreamable)
		mux.Handle(base+PathUI, page)
	}
	index := base + "/"
	mux.HandleFunc(index, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != index && r.URL.Path != base {
			writeError(w, http.StatusNotFound, "not found", "no endpoint at "+r.URL.Path)
			return
		}
		if page != nil && acceptsHTML(r) {
			page.ServeHTTP(w, r)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{
			"name": "nocrd", "mcp": base + PathStreamable, "sse": base + PathSSE,
		})
	})
	return s.cors(mux)
}

// acceptsHTML reports whether r asks for an HTML page, as a browser's
// navigation does (Accept: text/html,...).
func acceptsHTML(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "text/html") {
				return true
			}
		}
	}
	return false
}

// challenge runs next behind require and makes every 401 carry the
// WWW-Authenticate challenge RFC 6750 asks for, naming the RFC 9728
// metadata of the resource at path (go-sdk adds one only when it has
// parameters to put in it). Only require's refusal writes through
// the wrapper; a request it lets through is served with the original
// writer, so streaming responses keep their Flusher.
func challenge(require func(http.Handler) http.Handler, next http.Handler, path string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pass := http.HandlerFunc(func(_ http.ResponseWriter, authed *http.Request) { next.ServeHTTP(w, authed) })
		require(pass).ServeHTTP(&challengeWriter{
			ResponseWriter: w,
			hadToken:       r.Header.Get("Authorization") != "",
			metadata:       auth.ResourceMetadataURL(auth.Origin(r), path),
		}, r)
	})
}

type challengeWriter struct {
	http.ResponseWriter
	hadToken bool
	metadata string
}

func (c *challengeWriter) WriteHeader(code int) {
	if code == http.StatusUnauthorized {
		c.Header().Set("WWW-Authenticate", auth.Challenge(c.metadata, c.hadToken))
	}
	c.ResponseWriter.WriteHeader(code)
}

// verifyToken adapts the Verifier to go-sdk's bearer-token middleware.
func (s *Server) verifyToken(ctx context.Context, token string, _ *http.Request) (*sdkauth.TokenInfo, error) {
	id, err := s.verifier.Verify(ctx, token)
	if err != nil {
		s.log.Debug("bearer token refused", "err", err)
		return nil, fmt.Errorf("%w: %v", sdkauth.ErrInvalidToken, err)
	}
	extra := map[string]any{claimsKey: id.Claims}
	if s.cfg.ResourceToolsCallerToken {
		extra[tokenKey] = token // the resource tools call Kubernetes with it
	}
	return &sdkauth.TokenInfo{UserID: id.Subject, Expiration: id.Expiry, Extra: extra}, nil
}

// statelessProtocol is the first MCP version without sessions (SEP-2575).
// go-sdk serves it only from a stateless handler, and the versions before
// it only from a stateful one.
const statelessProtocol = "2026-07-28"

// byProtocolVersion serves both generations of streamable HTTP on one path:
// a POST that declares 2026-07-28 or later in Mcp-Protocol-Version goes to
// the stateless handler; everything else (initialize, which carries no
// version header, older versions, GET event streams, DELETE) to the
// session-keeping one. Versions are dates, so they compare as strings.
type byProtocolVersion struct {
	sessions, stateless http.Handler
}

func (h byProtocolVersion) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.Header.Get("Mcp-Protocol-Version") >= statelessProtocol {
		h.stateless.ServeHTTP(w, r)
		return
	}
	h.sessions.ServeHTTP(w, r)
}

// cors answers preflight requests, sets the configured CORS headers and
// refuses requests from origins outside an explicit allow-list.
func (s *Server) cors(next http.Handler) http.Handler {
	origins := splitList(s.cfg.CORSOrigin)
	anyOrigin := slices.Contains(origins, "*")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		h := w.Header()
		if origin != "" && !anyOrigin && !slices.Contains(origins, origin) {
			writeError(w, http.StatusForbidden, "origin not allowed", "Origin "+origin+" is not in CORS_ALLOWED_ORIGIN")
			return
		}
		if anyOrigin {
			h.Set("Access-Control-Allow-Origin", "*")
		} else if origin != "" {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
		}
		h.Set("Access-Control-Allow-Methods", s.cfg.CORSMethods)
		h.Set("Access-Control-Allow-Headers", s.cfg.CORSHeaders+", Mcp-Session-Id, Last-Event-ID")
		h.Set("Access-Control-Expose-Headers", "Mcp-Session-Id, WWW-Authenticate")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes nocrd's HTTP error shape: {"error": ..., "detail": ...}.
func writeError(w http.ResponseWriter, status int, msg, detail string) {
	writeJSON(w, status, map[string]string{"error": msg, "detail": detail})
}
