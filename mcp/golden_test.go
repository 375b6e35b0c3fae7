package mcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
)

// TestToolsListGolden pins every tool's name, description, schemas and
// annotations, as a client sees them, to testdata/tools.golden.json. Run
// with UPDATE_GOLDEN=1 to accept a deliberate change.
func TestToolsListGolden(t *testing.T) {
	ns := testenv.Namespace(t)
	cs := connect(t, "streamable", server{kube: k8s.Config{Namespace: ns}})
	var tools []*mcpsdk.Tool
	for tool, err := range cs.Tools(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		tools = append(tools, tool)
	}
	got, err := json.MarshalIndent(tools, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "tools.golden.json")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("tools/list differs from %s; run with UPDATE_GOLDEN=1 if the change is deliberate.\ngot:\n%s", path, got)
	}
}
