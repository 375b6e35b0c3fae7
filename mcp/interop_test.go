package mcp_test

import (
	"encoding/json"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
)

// tsClientDir returns the TypeScript client's directory with its npm
// dependencies installed.
func tsClientDir(t *testing.T) string {
	return testenv.NPMInstall(t, filepath.Join("testdata", "ts-client"))
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
