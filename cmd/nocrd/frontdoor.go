package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/nocrd/nocrd/internal/auth"
	"github.com/nocrd/nocrd/internal/certfile"
	"github.com/nocrd/nocrd/internal/clock"
	"github.com/nocrd/nocrd/internal/httpadapt"
	"github.com/nocrd/nocrd/internal/lazydeadline"
	"github.com/nocrd/nocrd/internal/metrics"
	"github.com/nocrd/nocrd/internal/rawio"
	"github.com/nocrd/nocrd/k8s"
	"github.com/nocrd/nocrd/proxy"
	policies "github.com/nocrd/nocrd/wasm-policies"
)

// Paths the front door serves itself, under BASE_URL.
const (
	pathReady   = "/readyz"
	pathMetrics = "/metrics"
)

// frontDoor is the one public listener: fasthttp serves /route/ natively
// through the edge proxy and hands every other path to the net/http
// handlers (MCP, health, readiness, metrics, OAuth metadata) through a
// streaming adapter.
type frontDoor struct {
	cfg     *config
	log     *slog.Logger
	cache   *k8s.EndpointCache
	proxy   *proxy.Proxy
	adapter *httpadapt.Adapter
	route   []byte
	worker  bool // a proxy worker: the primary says where it serves
	// bodyDeadline is the read deadline of a request body's first bytes
	// (see serve): CLIENT_BODY_TIMEOUT, or none.
	bodyDeadline time.Duration
}

// routeResolver answers the proxy from the endpoint cache.
type routeResolver struct{ cache *k8s.EndpointCache }

var (
	errNoWorkspace = &proxy.Error{Status: http.StatusNotFound, Detail: "no workspace with this id"}
	errNotReady    = &proxy.Error{Status: http.StatusServiceUnavailable, Detail: "the workspace is not ready yet"}
	errBadID       = &proxy.Error{Status: http.StatusBadRequest, Detail: "not a valid workspace id"}
	errHostNetwork = &proxy.Error{Status: http.StatusBadGateway, Detail: "the workspace uses its node's network (hostNetwork), whose address other pods share: it is not routed"}
)

func (r routeResolver) Resolve(ctx context.Context, id string) (proxy.Endpoint, error) {
	ep, err := r.cache.Lookup(ctx, id)
	if err != nil {
		if errors.Is(err, k8s.ErrWorkspaceID) {
			return proxy.Endpoint{}, errBadID
		}
		return proxy.Endpoint{}, err
	}
	switch ep.State {
	case k8s.EndpointAbsent:
		return proxy.Endpoint{}, errNoWorkspace
	case k8s.EndpointNotReady:
		return proxy.Endpoint{}, errNotReady
	case k8s.EndpointHostNetwork:
		return proxy.Endpoint{}, errHostNetwork
	}
	return proxy.Endpoint{Addr: ep.Addr, Owner: ep.Owner}, nil
}

// newFrontDoor builds the proxy and its route cache. Every path other than
// /route/ goes to fallback when it is set (a proxy worker hands them to the
// primary process), else to the net/http side: readiness, metrics, RFC 9728
// metadata and app.
func newFrontDoor(cfg *config, kube *k8s.Client, verifier *auth.Verifier, app, fallback http.Handler, reg *metrics.Registry, pset *policies.Set, log *slog.Logger) (*frontDoor, error) {
	base := cfg.MCP.BasePath()
	f := &frontDoor{cfg: cfg, log: log, route: []byte(base + proxy.RoutePrefix), bodyDeadline: cfg.Serve.ClientBodyTimeout}
	if f.bodyDeadline == 0 {
		f.bodyDeadline = noReadTimeout
	}
	var err error
	f.cache, err = kube.NewEndpointCache("", k8s.EndpointCacheOptions{
		Size: cfg.Proxy.RouteCacheSize, DefaultPort: cfg.Proxy.DefaultWorkspacePort, Logger: log,
		OnGone: func(addr string) { f.proxy.Forget(addr) },
	})
	if err != nil {
		return nil, err
	}
	opts := proxy.Options{
		BaseURL: base, KeepPrefix: cfg.Proxy.KeepPrefix, PassAuthorization: cfg.Proxy.PassAuthorization, TokenCookie: cfg.Proxy.TokenCookie,
		SubjectHeader: cfg.Proxy.SubjectHeader, UpstreamTimeout: cfg.Proxy.UpstreamTimeout,
		ClientBodyTimeout: cfg.Serve.ClientBodyTimeout, Metrics: reg, Logger: log,
	}
	// Validate has parsed it already.
	opts.TrustedProxies, _ = cfg.Proxy.TrustedPrefixes()
	if verifier != nil {
		opts.Authorizer = verifier // the MCP endpoint's verifier: one notion of identity
		opts.ResourceMetadataPath = auth.WellKnownPath + base + "/route"
	}
	if pset != nil && pset.Chain(policies.HookRoute).Len() > 0 {
		opts.Policy = newRoutePolicy(pset.Chain(policies.HookRoute))
	}
	f.proxy = proxy.New(routeResolver{f.cache}, opts)

	stats := func(pick func(k8s.EndpointCacheStats) uint64) func() float64 {
		return func() float64 { return float64(pick(f.cache.Stats())) }
	}
	reg.CounterFunc("nocrd_route_cache_hits_total", "Workspace lookups answered from the route cache.", stats(func(s k8s.EndpointCacheStats) uint64 { return s.Hits }))
	reg.CounterFunc("nocrd_route_cache_misses_total", "Workspace lookups that asked the API server.", stats(func(s k8s.EndpointCacheStats) uint64 { return s.Misses }))
	reg.CounterFunc("nocrd_route_cache_evictions_total", "Route cache entries evicted to make room.", stats(func(s k8s.EndpointCacheStats) uint64 { return s.Evictions }))
	reg.CounterFunc("nocrd_route_cache_invalidations_total", "Route cache entries dropped because the watch saw their pod change.", stats(func(s k8s.EndpointCacheStats) uint64 { return s.Invalidations }))
	reg.GaugeFunc("nocrd_route_cache_entries", "Workspace ids in the route cache.", func() float64 { return float64(f.cache.Stats().Len) })
	reg.GaugeFunc("nocrd_route_watch_synced", "1 while the workspace watch runs.", func() float64 {
		if f.cache.Synced() {
			return 1
		}
		return 0
	})
	if fallback == nil {
		fallback = appMux(cfg, f.ready(), reg.Handler(), app)
	} else {
		f.worker = true
	}
	f.adapter = httpadapt.New(fallback, log, cfg.Serve.ClientBodyTimeout)
	return f, nil
}

// ready answers /readyz: ready once the workspace watch has synced.
func (f *frontDoor) ready() http.Handler {
	return readiness(func() string {
		if !f.cache.Synced() {
			return "the workspace watch has not synced yet"
		}
		return ""
	})
}

// readiness serves /readyz from check, which says what is not ready, or
// "" when everything is.
func readiness(check func() string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if detail := check(); detail != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			b, _ := json.Marshal(struct {
				Error  string `json:"error"`
				Detail string `json:"detail"`
			}{"Service Unavailable", detail})
			_, _ = w.Write(append(b, '\n'))
			return
		}
		fmt.Fprint(w, `{"status":"ready"}`+"\n")
	})
}

// appMux is the net/http side of the public port: readiness, metrics,
// RFC 9728 metadata, and app (MCP, the UI, /healthz) for everything else.
func appMux(cfg *config, ready, metricsHandler, app http.Handler) *http.ServeMux {
	base := cfg.MCP.BasePath()
	mux := http.NewServeMux()
	mux.Handle(base+pathReady, ready)
	mux.Handle(base+pathMetrics, metricsHandler)
	meta := cfg.Auth.MetadataHandler(base, base+strings.TrimSuffix(proxy.RoutePrefix, "/"))
	mux.Handle(auth.WellKnownPath, meta)
	mux.Handle(auth.WellKnownPath+"/", meta)
	if base != "" {
		mux.Handle(base+auth.WellKnownPath, meta)
		mux.Handle(base+auth.WellKnownPath+"/", meta)
	}
	mux.Handle("/", app)
	return mux
}

func (f *frontDoor) handle(ctx *fasthttp.RequestCtx) {
	uri := proxy.OriginForm(ctx.Request.Header.RequestURI())
	if bytes.HasPrefix(uri, f.route) || bytes.Equal(uri, f.route[:len(f.route)-1]) {
		f.proxy.ServeFastHTTP(ctx)
		return
	}
	f.adapter.ServeFastHTTP(ctx)
}

// noReadTimeout is a read deadline that never comes: a century.
const noReadTimeout = 100 * 365 * 24 * time.Hour

// fasthttp's own answers, to requests it could not read.
var (
	errMalformed     = &proxy.Error{Status: http.StatusBadRequest, Detail: "malformed request"}
	errHeadTooLarge  = &proxy.Error{Status: http.StatusRequestHeaderFieldsTooLarge, Detail: "the request head is too large"}
	errBodyTooLarge  = &proxy.Error{Status: http.StatusRequestEntityTooLarge, Detail: "the request body is too large"}
	errClientTimeout = &proxy.Error{Status: http.StatusRequestTimeout, Detail: "the client stopped sending the request"}
)

// serverError answers a request fasthttp could not read, in the JSON
// {error, detail} of every other error; fasthttp closes the connection
// after it.
func serverError(ctx *fasthttp.RequestCtx, err error) {
	e := errMalformed
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		e = errHeadTooLarge
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		e = errBodyTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		e = errClientTimeout
	}
	ctx.Response.Reset()
	e.Answer(ctx)
}

// clientDeadline is the server's ConnState hook: a connection that is new,
// has just begun a request head, or has finished a request must see a
// head through within CLIENT_TIMEOUT. The deadline is read from the
// coarse clock, so it may come up to clock.CoarseResolution early.
func (f *frontDoor) clientDeadline(c net.Conn, s fasthttp.ConnState) {
	switch s {
	case fasthttp.StateNew, fasthttp.StateActive, fasthttp.StateIdle:
		// An error means the connection is closed; its next read says so.
		_ = c.SetReadDeadline(clock.Coarse().Add(f.cfg.Serve.ClientTimeout))
	}
}

// readsOn reports whether the server goes on reading a request's
// connection once its head is in, for a body: fasthttp reads one when
// Content-Length is positive or the body is chunked, whatever the method.
// (An upgraded connection needs nothing here: fasthttp clears its
// deadlines before handing it over.)
func readsOn(h *fasthttp.RequestHeader) bool {
	cl := h.ContentLength()
	return cl > 0 || cl == -1
}

// listen opens the public port.
func listen(cfg *config) (net.Listener, error) {
	addr := net.JoinHostPort(cfg.Serve.Host, strconv.Itoa(cfg.Serve.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// serve runs the workspace watch and serves ln until ctx ends, then calls
// beforeShutdown, stops accepting, ends streams and upgraded connections,
// and returns once everything has stopped.
func (f *frontDoor) serve(ctx context.Context, ln net.Listener, beforeShutdown func()) error {
	wctx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); _ = f.cache.Run(wctx) }()

	srv := &fasthttp.Server{
		Handler:           f.handle,
		Name:              "nocrd",
		StreamRequestBody: true,
		ReadBufferSize:    16 << 10, // the largest request head accepted; more is 431
		// Header names are canonicalised as they are read (the default), so
		// that the proxy's lookups and deletions of Authorization, the
		// hop-by-hop headers and its own X-Nocrd-* names match whatever
		// case the client used.
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		// fasthttp would parse a multipart body before the handler (its
		// files spilled to temporary files) and hand the proxy the form
		// serialised again, values first: the workspace got its parts
		// reordered. Bodies go on as they came.
		DisablePreParseMultipartForm: true,
		// CLIENT_TIMEOUT bounds a connection's wait for a request head
		// (from the connection's start, the end of the previous request,
		// or the head's first byte) and nothing else, as nginx's
		// client_header_timeout and keepalive_timeout do: a client that
		// connects and sends nothing, or half a head, is closed. fasthttp's
		// ReadTimeout and IdleTimeout would do the same but read the clock
		// (about 100 ns) three times a request; clientDeadline sets the
		// same deadlines on the coarse clock instead, and lazydeadline
		// touches the socket only when one is earlier than the one set.
		// Once a head is in, a request body may be silent for
		// CLIENT_BODY_TIMEOUT at a time, as with nginx's
		// client_body_timeout, and is never cut while it keeps coming:
		// fasthttp reads up to 8 KiB of it before the handler runs, under
		// a deadline of CLIENT_BODY_TIMEOUT set here, and the handlers (the
		// proxy and the net/http adapter) move the deadline before each
		// read of the rest (lazydeadline.IdleReader).
		ConnState: f.clientDeadline,
		HeaderReceived: func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			if readsOn(h) {
				return fasthttp.RequestConfig{ReadTimeout: f.bodyDeadline}
			}
			return fasthttp.RequestConfig{}
		},
		ErrorHandler: serverError,
		// Nothing reads ctx.Time, so the clock is not read for it.
		LazyRequestTime: true,
		Logger:          slogPrinter{f.log},
	}
	scheme := "http"
	if f.cfg.Serve.TLSCert != "" {
		scheme = "https"
		// The pair is read again when its files change (a renewed
		// Secret), so a renewal needs no restart.
		pair, err := certfile.Load(f.cfg.Serve.TLSCert, f.cfg.Serve.TLSKey, f.log)
		if err != nil {
			stopWatch()
			<-watchDone
			return err
		}
		srv.TLSConfig = &tls.Config{GetCertificate: pair.GetCertificate}
	}
	base := f.cfg.MCP.BasePath()
	level := slog.LevelInfo
	if f.worker {
		level = slog.LevelDebug
	}
	f.log.Log(ctx, level, "serving HTTP", "addr", ln.Addr().String(),
		"streamable", fmt.Sprintf("%s://%s%s/mcp", scheme, ln.Addr(), base),
		"sse", fmt.Sprintf("%s://%s%s/sse", scheme, ln.Addr(), base),
		"route", fmt.Sprintf("%s://%s%s/route/<workspace-id>/", scheme, ln.Addr(), base))
	served := make(chan error, 1)
	go func() {
		// The client timeout moves each connection's read deadline two or
		// three times per request (clientDeadline, HeaderReceived);
		// lazydeadline spares the runtime timer updates, and gives each
		// write CLIENT_SEND_TIMEOUT for the client to read. rawio
		// keeps short socket reads and writes out of the runtime's
		// system-call handoffs.
		lazy := lazydeadline.Listen(rawio.Listen(ln), f.cfg.Serve.ClientSendTimeout)
		if scheme == "https" {
			served <- srv.ServeTLS(lazy, "", "") // the certificate is TLSConfig's
		} else {
			served <- srv.Serve(lazy)
		}
	}()
	var serveErr error
	select {
	case serveErr = <-served:
	case <-ctx.Done():
	}
	beforeShutdown()
	f.adapter.Close() // ends event streams still open
	f.proxy.Close()   // ends upgraded connections
	sctx, cancel := context.WithTimeout(context.Background(), f.cfg.Serve.ShutdownTimeout)
	defer cancel()
	if err := srv.ShutdownWithContext(sctx); err != nil {
		f.log.Warn("HTTP shutdown timed out", "err", err)
	}
	if serveErr == nil {
		serveErr = <-served
	}
	stopWatch()
	<-watchDone
	return serveErr
}

// slogPrinter routes fasthttp's log lines to slog at debug level.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, args ...any) {
	p.log.Debug("fasthttp: " + fmt.Sprintf(format, args...))
}
