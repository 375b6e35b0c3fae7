package mcp_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
	"github.com/nocrd/nocrd/mcp"
)

// TestListRegistryImages queries a real Docker Registry v2 server.
func TestListRegistryImages(t *testing.T) {
	url := testenv.Registry(t)
	testenv.PushImage(t, url, "nogoo9/mcp-server", "latest")
	testenv.PushImage(t, url, "nogoo9/workspace-node", "latest")
	testenv.PushImage(t, url, "library/alpine", "3.20")
	host := strings.TrimPrefix(url, "http://")
	ns := testenv.Namespace(t)
	for _, transport := range []string{"streamable", "stdio"} {
		t.Run(transport, func(t *testing.T) {
			cs := connect(t, transport, server{kube: k8s.Config{Namespace: ns}, mcp: mcp.Config{RegistryURL: url}})
			r := ok(t, cs, "list_registry_images", map[string]any{"repository": "nogoo9"})
			want := []string{host + "/nogoo9/mcp-server:latest", host + "/nogoo9/workspace-node:latest"}
			got := toStrings(r.structured["images"])
			slices.Sort(got)
			if !slices.Equal(got, want) || r.structured["registry"] != host || r.text != strings.Join(want, "\n") {
				t.Errorf("list_registry_images(nogoo9) = %v %v %q", got, r.structured["registry"], r.text)
			}
			r = ok(t, cs, "list_registry_images", map[string]any{})
			if n := len(toStrings(r.structured["images"])); n != 3 {
				t.Errorf("all images: %d, want 3: %s", n, r.text)
			}
			r = ok(t, cs, "list_registry_images", map[string]any{"repository": "absent"})
			if r.text != "No images found in "+host || r.structured["images"] == nil {
				t.Errorf("no match: %q %v", r.text, r.structured)
			}
		})
	}
}
