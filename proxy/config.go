// Package proxy is nocrd's edge proxy: it routes /route/<workspace-id>/<path>
// to the workspace pod that owns it. The routing engine arrives with its own
// issue; its settings are parsed and validated now so that a bad value
// fails at start.
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
