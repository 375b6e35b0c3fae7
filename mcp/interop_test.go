package mcp_test

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
)

var npmOnce sync.Once

// tsClientDir returns the TypeScript client's directory with its npm
// dependencies installed (npm ci, once per test binary).
func tsClientDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", "ts-client"))
	if err != nil {
		t.Fatal(err)
	}
	var npmErr error
	npmOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk")); err == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			npmErr = err
			t.Logf("npm ci: %s", out)
		}
	})
	if npmErr != nil {
		t.Fatalf("npm ci in %s: %v (node and npm are installed by make deps)", dir, npmErr)
	}
	return dir
}

// TestTypeScriptClient checks interoperability with a second MCP
// implementation: the official TypeScript SDK, over streamable HTTP and the
// legacy SSE transport.
func TestTypeScriptClient(t *testing.T) {
	dir := tsClientDir(t)
	for _, kind := range []string{"streamable", "sse"} {
		t.Run(kind, func(t *testing.T) {
			ns := testenv.Namespace(t)
			hs := httptest.NewServer(newServer(t, server{kube: k8s.Config{Namespace: ns}}).Handler())
			defer hs.Close()
			cmd := exec.Command("node", "client.mjs", hs.URL, kind, ns)
			cmd.Dir = dir
			out, err := cmd.Output()
			if err != nil {
				var stderr string
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = string(ee.Stderr)
				}
				t.Fatalf("node client.mjs: %v\n%s%s", err, out, stderr)
			}
			var got struct {
				Server            struct{ Name string }
				Tools             []string
				Current           map[string]any
				CurrentText       string
				Created           map[string]any
				Pods              []string
				BadIsError        bool
				BadText           string
				ResourceTemplates []string
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("decode client output %q: %v", out, err)
			}
			if got.Server.Name != "nocrd" || !slices.Equal(got.Tools, allTools) {
				t.Errorf("server %q tools %v", got.Server.Name, got.Tools)
			}
			if got.Current["namespace"] != ns || got.CurrentText != "Namespace: "+ns+"\nMode: cluster" {
				t.Errorf("current_namespace = %v %q", got.Current, got.CurrentText)
			}
			if got.Created["name"] != "ts-pod" || !slices.Equal(got.Pods, []string{"ts-pod"}) {
				t.Errorf("create_pod = %v, list_pods = %v", got.Created, got.Pods)
			}
			if !got.BadIsError || !strings.Contains(got.BadText, "invalid name") {
				t.Errorf("bad input: isError %v text %q", got.BadIsError, got.BadText)
			}
			if !slices.Equal(got.ResourceTemplates, []string{"pod-template://{namespace}/{name}"}) {
				t.Errorf("resource templates = %v", got.ResourceTemplates)
			}
		})
	}
}
