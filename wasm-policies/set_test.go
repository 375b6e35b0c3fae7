package policies_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nocrd/nocrd/internal/metrics"
	policies "github.com/nocrd/nocrd/wasm-policies"
)

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	// Write beside and rename, as a deployment would, so a reader never
	// sees half a file.
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

func decide(t *testing.T, c *policies.Chain, method string) (bool, string) {
	t.Helper()
	var resp policies.Response
	next, _, err := c.Handle(request(method, "/"), &resp)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return next, string(resp.Body)
}

// TestSetReload: a changed module file replaces the policy in force only
// when the new module loads; a bad one leaves the old one and says why;
// decisions are counted by policy, hook and outcome throughout.
func TestSetReload(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "gate.wasm")
	copyFile(t, wat(t, "readonly"), policy)
	reg := metrics.NewRegistry()
	set, err := policies.Open(context.Background(), policies.Config{
		Route: []string{policy}, RouteTimeout: time.Second, SpawnTimeout: time.Second, MemoryLimitMB: 16,
	}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close(context.Background())
	route := set.Chain(policies.HookRoute)
	if set.Chain(policies.HookSpawn).Len() != 0 {
		t.Fatal("the spawn chain is not empty")
	}
	if next, _ := decide(t, route, "POST"); next {
		t.Fatal("readonly let POST through")
	}

	// Unchanged files: nothing is reloaded.
	if changed, err := set.Reload(context.Background()); changed || err != nil {
		t.Fatalf("reload without change: changed=%v %v", changed, err)
	}

	// A bad module: the old one stays in force, the error names the file.
	if err := os.WriteFile(policy, []byte("\x00asm garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = set.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), policy) || !strings.Contains(err.Error(), "not a valid WebAssembly module") {
		t.Fatalf("bad module: %v", err)
	}
	if next, _ := decide(t, route, "POST"); next {
		t.Fatal("after a failed reload the old policy is no longer in force")
	}

	// A good new module replaces it.
	copyFile(t, wat(t, "inject"), policy)
	if changed, err := set.Reload(context.Background()); !changed || err != nil {
		t.Fatalf("good module: changed=%v %v", changed, err)
	}
	if next, _ := decide(t, route, "POST"); !next {
		t.Fatal("the new policy is not in force")
	}

	var out bytes.Buffer
	if _, err := reg.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`nocrd_policy_decisions_total{policy="gate",hook="route",outcome="deny"} 2`,
		`nocrd_policy_decisions_total{policy="gate",hook="route",outcome="allow"} 1`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, out.String())
		}
	}
}

// TestSetWatch: a module file replaced on disk is picked up without a
// signal.
func TestSetWatch(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "gate.wasm")
	copyFile(t, wat(t, "readonly"), policy)
	set, err := policies.Open(context.Background(), policies.Config{
		Route: []string{policy}, RouteTimeout: time.Second, SpawnTimeout: time.Second, MemoryLimitMB: 16,
		Watch: 20 * time.Millisecond,
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); set.Watch(ctx) }()
	defer func() { cancel(); <-done }()

	copyFile(t, wat(t, "inject"), policy)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if next, _ := decide(t, set.Chain(policies.HookRoute), "POST"); next {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the changed module was not loaded within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := wat(t, "readonly")
	base := policies.Config{RouteTimeout: time.Millisecond, SpawnTimeout: time.Millisecond, MemoryLimitMB: 64}
	cases := []struct {
		name string
		edit func(*policies.Config)
		want string // "" is valid
	}{
		{"defaults", func(*policies.Config) {}, ""},
		{"a module", func(c *policies.Config) { c.Route = []string{ok} }, ""},
		{"missing file", func(c *policies.Config) { c.Spawn = []string{"/nope.wasm"} }, "--policy-spawn/POLICY_SPAWN"},
		{"same name twice", func(c *policies.Config) { c.Route = []string{ok, ok} }, "two modules are named"},
		{"zero route timeout", func(c *policies.Config) { c.RouteTimeout = 0 }, "POLICY_ROUTE_TIMEOUT"},
		{"negative spawn timeout", func(c *policies.Config) { c.SpawnTimeout = -1 }, "POLICY_SPAWN_TIMEOUT"},
		{"no memory", func(c *policies.Config) { c.MemoryLimitMB = 0 }, "POLICY_MEMORY_LIMIT_MB"},
	}
	for _, c := range cases {
		cfg := base
		c.edit(&cfg)
		err := cfg.Validate()
		if (c.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if got := policies.ConfigVar("quota-v2.1"); got != "POLICY_CONFIG_QUOTA_V2_1" {
		t.Errorf("ConfigVar = %s", got)
	}
}
