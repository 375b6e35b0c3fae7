package proxy

import (
	"errors"
	"strconv"
	"sync/atomic"

	"github.com/nocrd/nocrd/internal/metrics"
)

// outcome is how the proxy disposed of a request.
type outcome uint8

const (
	outcomeProxied outcome = iota
	outcomeUpgraded
	outcomeBadRequest
	outcomeUnauthorized
	outcomeForbidden
	outcomeNotFound
	outcomeNotReady
	outcomeBadGateway
	outcomeTimeout
	outcomePolicyDenied
	outcomePolicyFailed
	outcomeClientTimeout
	outcomeClientClosed
	outcomeSignIn
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	"proxied", "upgraded", "bad_request", "unauthorized", "forbidden",
	"not_found", "not_ready", "bad_gateway", "timeout", "policy_denied",
	"policy_failed", "client_timeout", "client_closed", "sign_in",
}

// Reasons authentication failed, as counted in metrics.
const (
	reasonMissing    = "missing_token"
	reasonInvalid    = "invalid_token"
	reasonWrongOwner = "wrong_owner"
)

func reasonOf(err error) string {
	var r interface{ Reason() string }
	if errors.As(err, &r) {
		return r.Reason()
	}
	return reasonInvalid
}

// proxyMetrics are counted with atomics in fixed arrays, so the hot path
// never allocates or locks.
type proxyMetrics struct {
	requests [numOutcomes][600]atomic.Uint64
	upstream *metrics.Histogram
	auth     map[string]*metrics.Counter // auth failures by reason
	ws       *metrics.Gauge
}

// latencyBounds are upstream latency buckets in seconds.
var latencyBounds = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

func (m *proxyMetrics) register(r *metrics.Registry) {
	if r == nil {
		r = metrics.NewRegistry() // counted but not exported
	}
	r.CounterCollector("nocrd_proxy_requests_total", "Requests to /route/, by HTTP status and route outcome.",
		func(emit func(metrics.Labels, float64)) {
			for o := range numOutcomes {
				for s := range m.requests[o] {
					if n := m.requests[o][s].Load(); n > 0 {
						emit(metrics.Labels{"outcome", outcomeNames[o], "status", strconv.Itoa(s)}, float64(n))
					}
				}
			}
		})
	m.upstream = r.Histogram("nocrd_proxy_upstream_seconds", "Time from sending a request to the workspace to its response headers.", latencyBounds)
	m.auth = map[string]*metrics.Counter{}
	for _, reason := range []string{reasonMissing, reasonInvalid, "expired", "not_yet_valid", "bad_signature", "wrong_issuer", "wrong_audience", reasonWrongOwner} {
		m.auth[reason] = r.Counter("nocrd_proxy_auth_failures_total", "Requests refused by authentication or ownership, by reason.", "reason", reason)
	}
	m.ws = r.Gauge("nocrd_proxy_websocket_connections", "Upgraded (WebSocket) connections open now.")
}

func (m *proxyMetrics) request(o outcome, status int) {
	if status < 0 || status >= 600 {
		status = 0
	}
	m.requests[o][status].Add(1)
}

func (m *proxyMetrics) authFailure(reason string) {
	c := m.auth[reason]
	if c == nil {
		c = m.auth[reasonInvalid]
	}
	c.Inc()
}
