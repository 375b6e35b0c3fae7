package policies

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Hooks: where a chain of policies runs.
const (
	// HookRoute runs for each /route/ request after authentication.
	HookRoute = "route"
	// HookSpawn runs before a workspace or a pod from a template is created.
	HookSpawn = "spawn"
)

// Config configures the policies nocrd loads.
type Config struct {
	// Route and Spawn are the module files of each hook, run in order.
	Route []string `env:"POLICY_ROUTE"`
	Spawn []string `env:"POLICY_SPAWN"`
	// RouteTimeout and SpawnTimeout bound one policy's decision.
	RouteTimeout time.Duration `env:"POLICY_ROUTE_TIMEOUT" envDefault:"5ms"`
	SpawnTimeout time.Duration `env:"POLICY_SPAWN_TIMEOUT" envDefault:"100ms"`
	// MemoryLimitMB bounds each instance's linear memory.
	MemoryLimitMB int `env:"POLICY_MEMORY_LIMIT_MB" envDefault:"64"`
	// CacheDir keeps compiled modules between runs (empty: no cache).
	CacheDir string `env:"POLICY_CACHE_DIR"`
	// Watch is how often module files are checked for changes, which are
	// then reloaded (0: only on SIGHUP).
	Watch time.Duration `env:"POLICY_WATCH_INTERVAL" envDefault:"2s"`
	// Configs holds each module's configuration, by module name (its file
	// name without .wasm), handed to the guest by get_config. cmd fills it
	// from POLICY_CONFIG_<NAME> (the name upper-cased, '-' and '.' as '_').
	Configs map[string]string `env:"-"`
}

// ConfigVar is the environment variable that holds a module's
// configuration.
func ConfigVar(name string) string {
	return "POLICY_CONFIG_" + strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, name)
}

// ModuleName is the name a module file is known by in logs, metrics and
// deny reasons: its base name without the extension.
func ModuleName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
}

// Enabled reports whether any policy is configured.
func (c Config) Enabled() bool { return len(c.Route)+len(c.Spawn) > 0 }

// Validate reports the first invalid field, naming its flag and variable.
func (c Config) Validate() error {
	for _, hook := range []struct {
		name  string
		paths []string
	}{{"--policy-route/POLICY_ROUTE", c.Route}, {"--policy-spawn/POLICY_SPAWN", c.Spawn}} {
		seen := map[string]bool{}
		for _, p := range hook.paths {
			if p == "" {
				return fmt.Errorf("%s: empty module path", hook.name)
			}
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("%s: %w", hook.name, err)
			}
			n := ModuleName(p)
			if seen[n] {
				return fmt.Errorf("%s: two modules are named %q; policies of one hook need distinct file names", hook.name, n)
			}
			seen[n] = true
		}
	}
	if c.RouteTimeout <= 0 {
		return fmt.Errorf("--policy-route-timeout/POLICY_ROUTE_TIMEOUT: must be positive, got %s", c.RouteTimeout)
	}
	if c.SpawnTimeout <= 0 {
		return fmt.Errorf("--policy-spawn-timeout/POLICY_SPAWN_TIMEOUT: must be positive, got %s", c.SpawnTimeout)
	}
	if c.MemoryLimitMB < 1 || c.MemoryLimitMB > 4096 {
		return fmt.Errorf("POLICY_MEMORY_LIMIT_MB: must be between 1 and 4096, got %d", c.MemoryLimitMB)
	}
	if c.Watch < 0 {
		return fmt.Errorf("POLICY_WATCH_INTERVAL: must not be negative, got %s", c.Watch)
	}
	return nil
}
