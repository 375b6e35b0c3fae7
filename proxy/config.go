// Package proxy is nocrd's edge proxy: it routes /route/<workspace-id>/<path>
// to the pod of that workspace, over fasthttp.
//
// It parses the route from the raw request target and refuses path tricks
// (route.go), checks the caller's bearer token and workspace ownership
// through its Authorizer, finds the pod through its Resolver, and forwards
// with one keep-alive client per upstream, hop-by-hop headers and the
// credentials it consumed removed (proxy.go). Its callers supply the
// Resolver and Authorizer.
package proxy

import "fmt"

// Config configures the proxy.
type Config struct {
	// DefaultWorkspacePort is the pod port traffic goes to when the pod has
	// no nogoo9/workspace-port annotation.
	DefaultWorkspacePort int `env:"DEFAULT_WORKSPACE_PORT" envDefault:"3000"`
}

// Validate reports the first invalid field, naming its flag and variable.
func (c Config) Validate() error {
	if c.DefaultWorkspacePort < 1 || c.DefaultWorkspacePort > 65535 {
		return fmt.Errorf("--default-workspace-port/DEFAULT_WORKSPACE_PORT: must be a port between 1 and 65535, got %d", c.DefaultWorkspacePort)
	}
	return nil
}
