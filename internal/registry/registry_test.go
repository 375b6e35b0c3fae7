package registry_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/nocrd/nocrd/internal/registry"
	"github.com/nocrd/nocrd/internal/testenv"
)

// TestImagesPaginates lists a real registry one entry per page, so both the
// catalog and the tag lists must follow the Link headers.
func TestImagesPaginates(t *testing.T) {
	url := testenv.Registry(t)
	for _, img := range []struct{ repo, tag string }{
		{"nogoo9/mcp-server", "latest"}, {"nogoo9/workspace-node", "latest"}, {"nogoo9/workspace-node", "20"}, {"other/tool", "v1"},
	} {
		testenv.PushImage(t, url, img.repo, img.tag)
	}
	c, err := registry.New(url)
	if err != nil {
		t.Fatal(err)
	}
	c.PageSize = 1
	host := strings.TrimPrefix(url, "http://")
	cases := []struct {
		prefix string
		want   []string
	}{
		{"", []string{host + "/nogoo9/mcp-server:latest", host + "/nogoo9/workspace-node:20", host + "/nogoo9/workspace-node:latest", host + "/other/tool:v1"}},
		{"nogoo9/", []string{host + "/nogoo9/mcp-server:latest", host + "/nogoo9/workspace-node:20", host + "/nogoo9/workspace-node:latest"}},
		{"none", []string{}},
	}
	for _, tc := range cases {
		got, err := c.Images(context.Background(), tc.prefix)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("Images(%q) = %v, want %v", tc.prefix, got, tc.want)
		}
	}
	if c.Host() != host {
		t.Errorf("Host() = %q", c.Host())
	}
}

func TestNewRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"", "localhost:5000", "ftp://x", "http://"} {
		if _, err := registry.New(u); err == nil {
			t.Errorf("New(%q) succeeded", u)
		}
	}
}

// TestUnreachableRegistry reports the registry in the error.
func TestUnreachableRegistry(t *testing.T) {
	c, err := registry.New("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Images(context.Background(), ""); err == nil || !strings.Contains(err.Error(), "registry 127.0.0.1:1") {
		t.Errorf("err = %v", err)
	}
}
