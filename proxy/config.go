// Package proxy is nocrd's edge proxy: it routes /route/<workspace-id>/<path>
// to the pod of that workspace, over fasthttp.
//
// It parses the route from the raw request target and refuses path tricks
// (route.go), checks the caller's bearer token and workspace ownership
// through its Authorizer (a browser keeps its token in a cookie,
// cookie.go), finds the pod through its Resolver, and forwards
// with hop-by-hop headers and the credentials it consumed removed and
// bodies streamed both ways (proxy.go) over its own keep-alive connection
// pool per upstream (upstream.go); WebSocket upgrades are piped both ways
// (upgrade.go), a route Policy may decide on and change the request on
// terms the proxy enforces (policy.go), and every outcome is counted
// without allocating (metrics.go). Its callers supply the Resolver,
// Authorizer and Policy.
package proxy

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/nocrd/nocrd/internal/httpsyntax"
)

// Config configures the proxy and its route cache.
type Config struct {
	// DefaultWorkspacePort is the pod port traffic goes to when the pod has
	// no nogoo9/workspace-port annotation.
	DefaultWorkspacePort int `env:"DEFAULT_WORKSPACE_PORT" envDefault:"3000"`
	// RouteCacheSize bounds how many workspace ids the route cache holds.
	RouteCacheSize int `env:"ROUTE_CACHE_SIZE" envDefault:"4096"`
	// UpstreamTimeout is how long a workspace may stay silent.
	UpstreamTimeout time.Duration `env:"PROXY_UPSTREAM_TIMEOUT" envDefault:"60s"`
	// PassAuthorization gives workspaces the caller's verified token as
	// an Authorization header (see Options.PassAuthorization).
	PassAuthorization bool `env:"PROXY_PASS_AUTHORIZATION" envDefault:"false"`
	// SubjectHeader, when set, carries the verified subject to workspaces.
	SubjectHeader string `env:"PROXY_SUBJECT_HEADER"`
	// KeepPrefix forwards /route/<id> as part of the path.
	KeepPrefix bool `env:"PROXY_KEEP_PREFIX" envDefault:"false"`
	// TrustedProxies lists the addresses (CIDRs or IPs, comma-separated)
	// of the proxies in front of nocrd whose X-Forwarded-Proto and -Host
	// go on to workspaces (Options.TrustedProxies).
	TrustedProxies string `env:"PROXY_TRUSTED_PROXIES"`
	// TokenCookie moves a browser's ?token= into a cookie for the
	// workspace's route (Options.TokenCookie).
	TokenCookie bool `env:"PROXY_TOKEN_COOKIE" envDefault:"true"`
}

// Validate reports the first invalid field, naming its flag and variable.
func (c Config) Validate() error {
	if c.DefaultWorkspacePort < 1 || c.DefaultWorkspacePort > 65535 {
		return fmt.Errorf("--default-workspace-port/DEFAULT_WORKSPACE_PORT: must be a port between 1 and 65535, got %d", c.DefaultWorkspacePort)
	}
	if c.RouteCacheSize < 1 {
		return fmt.Errorf("--route-cache-size/ROUTE_CACHE_SIZE: must be at least 1, got %d", c.RouteCacheSize)
	}
	if c.UpstreamTimeout <= 0 {
		return fmt.Errorf("--proxy-upstream-timeout/PROXY_UPSTREAM_TIMEOUT: must be positive, got %s", c.UpstreamTimeout)
	}
	if _, err := c.TrustedPrefixes(); err != nil {
		return fmt.Errorf("--proxy-trusted-proxies/PROXY_TRUSTED_PROXIES: %w", err)
	}
	if h := c.SubjectHeader; h != "" && !subjectHeaderOK([]byte(h)) {
		return fmt.Errorf("--proxy-subject-header/PROXY_SUBJECT_HEADER: must be a header name other than Authorization, Host, Content-Length, the hop-by-hop headers and those the proxy sets (X-Forwarded-*, %s*), got %q", HeaderPrefix, h)
	}
	return nil
}

// TrustedPrefixes parses TrustedProxies: a comma-separated list of CIDRs
// (10.0.0.0/8, fd00::/8) and addresses (one host each).
func (c Config) TrustedPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(c.TrustedProxies, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			pr, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR: %w", f, err)
			}
			out = append(out, pr.Masked())
			continue
		}
		ip, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address or a CIDR", f)
		}
		ip = ip.Unmap()
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}

// subjectHeaderOK reports whether name may carry the verified subject: a
// header name no one else gives a meaning on the way to the workspace. The
// credentials, the message's framing and routing, the hop-by-hop headers
// and the proxy's own headers are refused, in any spelling sameName takes
// for them.
func subjectHeaderOK(name []byte) bool {
	if len(name) == 0 || !httpsyntax.IsToken(name) || IsReserved(name) || isHopByHop(name) || isForwarded(name) {
		return false
	}
	for _, taken := range []string{"Authorization", "Host", "Content-Length"} {
		if sameName(name, taken) {
			return false
		}
	}
	return true
}
